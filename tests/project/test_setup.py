"""The `bellwether` command, settings from the environment, production checks."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from bellwether.settings.env import database_config

ROOT = Path(__file__).resolve().parents[2]
BELLWETHER = str(Path(sys.executable).with_name("bellwether"))


def run(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    # The browser tests set DJANGO_ALLOW_ASYNC_UNSAFE in this process; a child must not inherit it.
    full_env = {k: v for k, v in os.environ.items() if k not in ("DJANGO_SETTINGS_MODULE", "DJANGO_ALLOW_ASYNC_UNSAFE")}
    full_env.update(env or {})
    return subprocess.run([BELLWETHER, *args], cwd=ROOT, env=full_env, capture_output=True, text=True, timeout=120)


def test_help_lists_bellwether_commands():
    """`bellwether --help` explains the project's own commands first."""
    result = run("--help")
    assert result.returncode == 0
    for command in ("demo", "serve", "ingest", "migrate"):
        assert f"\n  {command}" in result.stdout
    assert "docs/operations.md" in result.stdout


def test_ingest_help_names_every_format():
    """`bellwether ingest --help` says which formats it reads and what the exit code means."""
    result = run("ingest", "--help")
    assert result.returncode == 0
    text = " ".join(result.stdout.split())
    for word in (".txt", ".md", "RSS/Atom", "HTML", "--section", "--region", "exit code is 1"):
        assert word in text


def test_production_settings_pass_check_deploy():
    """`bellwether check --deploy` under production settings reports nothing."""
    result = run(
        "check",
        "--deploy",
        "--fail-level",
        "WARNING",
        env={
            "DJANGO_SETTINGS_MODULE": "bellwether.settings.production",
            "SECRET_KEY": "k" * 20 + "x7!Qz9@Lm#4Rt$8Vb%2Nc^6Hd&1Fg*5Jp(3Ws)0Ye" + "u" * 10,
            "ALLOWED_HOSTS": "news.example.org",
        },
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "System check identified no issues" in result.stdout


def test_production_settings_refuse_a_weak_secret_key():
    """Production settings will not start with the development key."""
    result = run("check", env={"DJANGO_SETTINGS_MODULE": "bellwether.settings.production", "SECRET_KEY": "short"})
    assert result.returncode != 0
    assert "Set SECRET_KEY" in result.stderr


def test_sqlite_is_the_default_with_wal_and_immediate_transactions(tmp_path, monkeypatch):
    """Without DATABASE_URL, SQLite in var/ with the settings PITFALLS.md measured."""
    monkeypatch.delenv("DATABASE_URL", raising=False)
    config = database_config()
    assert config["ENGINE"] == "django.db.backends.sqlite3"
    assert str(config["NAME"]).endswith("bellwether.sqlite3")
    assert config["OPTIONS"]["transaction_mode"] == "IMMEDIATE"
    assert "journal_mode=WAL" in config["OPTIONS"]["init_command"]
    assert "busy_timeout" in config["OPTIONS"]["init_command"]


def test_database_url_selects_postgres_with_a_pool():
    """A postgres:// URL gives psycopg 3 with Django's built-in pool."""
    config = database_config("postgres://bell:pw@db.internal:5433/news")
    assert config["ENGINE"] == "django.db.backends.postgresql"
    assert (config["HOST"], config["PORT"], config["NAME"], config["USER"]) == ("db.internal", 5433, "news", "bell")
    assert config["OPTIONS"]["pool"]["max_size"] == 8
    assert config["OPTIONS"]["server_side_binding"] is True


@pytest.mark.django_db
def test_live_connection_has_the_configured_options():
    """SQLite runs with WAL and a busy timeout (OPTIONS sit in the right dict); PostgreSQL is pooled."""
    from django.db import connection

    if connection.vendor == "sqlite":
        with connection.cursor() as cursor:
            assert cursor.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
            assert cursor.execute("PRAGMA busy_timeout").fetchone()[0] == 20000
    else:
        assert connection.vendor == "postgresql"
        assert connection.pool is not None


def test_demo_sets_up_a_newsroom(tmp_path):
    """`bellwether demo --no-serve` migrates, loads the demo and seed articles and prints the editor login."""
    env = {"BELLWETHER_VAR_DIR": str(tmp_path), "DATABASE_URL": ""}
    result = run("demo", "--no-serve", env=env)
    assert result.returncode == 0, result.stderr
    assert "Demo editor login: editor / bellwether-demo" in result.stdout
    assert "/accounts/signup/ to trade with 1,000 credits" in result.stdout
    assert "weekly highlights issue #1 built" in result.stdout
    count = run("shell", "-c", "from bellwether.news.models import ArticlePage as A; print(A.objects.live().count(), A.objects.filter(featured=True).count())", env=env)
    live, featured = map(int, count.stdout.split()[-2:])
    seeds = len(list((ROOT.parent / "shared" / "seeds").glob("*.txt")))
    assert live == 14 + seeds
    assert featured >= 1
    again = run("demo", "--no-serve", env=env)
    assert "0 articles created" in again.stdout


@pytest.mark.django_db
def test_api_docs_load_nothing_from_other_hosts(client):
    """The OpenAPI docs page uses the vendored Swagger UI, not a CDN (the machines have no internet)."""
    html = client.get("/api/v1/docs").content.decode()
    assert "/static/ninja/swagger-ui-bundle.js" in html
    assert "https://" not in html and "http://" not in html.replace("http://testserver", "")
