"""Shared fixtures: the database in use, a home page, a browser."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from django.db import connection

SEEDS = Path(__file__).resolve().parents[1].parent / "shared" / "seeds"
CHROMIUM = "/usr/bin/chromium"
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]


def pytest_collection_modifyitems(config, items):
    """Leave tests marked ``postgres`` out of the SQLite pass (deselected, not skipped: they run in the PostgreSQL pass)."""
    from django.conf import settings

    if settings.DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql":
        return
    dropped = [item for item in items if item.get_closest_marker("postgres")]
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = [item for item in items if not item.get_closest_marker("postgres")]


def pytest_report_header(config):
    from django.conf import settings

    db = settings.DATABASES["default"]
    return f"database: {db['ENGINE'].rsplit('.', 1)[-1]} {db.get('HOST') or ''}{db['NAME']}"


@pytest.fixture
def home(db):
    from bellwether.news.services import ensure_home_page

    return ensure_home_page()


@pytest.fixture
def announced():
    """Collect the trade events the markets app announces after each commit (what every listener sees)."""
    from bellwether.markets.events import trade_committed

    events: list[dict] = []

    def listener(sender, event, **kwargs):
        events.append(event)

    trade_committed.connect(listener, weak=False)
    yield events
    trade_committed.disconnect(listener)


@pytest.fixture
def seeds_dir() -> Path:
    if not SEEDS.is_dir():
        if IN_CI:
            pytest.fail(f"seed articles missing at {SEEDS}")
        pytest.skip(f"seed articles not present at {SEEDS}")
    return SEEDS


@pytest.fixture(scope="session")
def browser():
    """Debian's Chromium driven by Playwright; missing Chromium fails in CI."""
    if not Path(CHROMIUM).exists() or shutil.which("chromium") is None:
        message = f"Chromium not installed at {CHROMIUM} (apt-get install -y chromium)"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    from playwright.sync_api import sync_playwright

    os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield browser
        browser.close()


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.set_default_timeout(10_000)
    yield page
    context.close()


def is_postgres() -> bool:
    return connection.vendor == "postgresql"
