"""The admin's Content Security Policy in Chromium: Wagtail keeps working under it, and a hostile source link cannot run."""

from __future__ import annotations

import datetime as dt

import pytest
from django.utils import timezone

from bellwether.accounts.services import create_user
from bellwether.markets import services
from bellwether.markets.models import Market
from bellwether.security import ADMIN_POLICY
from tests.news.factories import make_article

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]
PASSWORD = "correct horse battery staple 42"
# Record every policy violation the page reports, from before its first script runs.
WATCH_VIOLATIONS = """
window.__violations = [];
document.addEventListener('securitypolicyviolation', e => {
  window.__violations.push(e.violatedDirective + ' ' + (e.blockedURI || 'inline') + ' ' + (e.sourceFile || '') + ':' + e.lineNumber);
});
"""


@pytest.fixture
def admin_page(browser, live_server, home):
    create_user(username="chief", email="chief@example.org", password=PASSWORD, roles=("editor", "resolver"))
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    context.add_init_script(WATCH_VIOLATIONS)
    page = context.new_page()
    page.set_default_timeout(15_000)
    errors: list[str] = []
    page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(live_server.url + "/admin/login/")
    page.fill("#id_username", "chief")
    page.fill("#id_password", PASSWORD)
    page.locator("form button[type=submit]").click()
    page.wait_for_url(live_server.url + "/admin/")
    yield live_server.url, page, errors
    context.close()


def test_wagtail_admin_pages_work_under_the_admin_policy(admin_page):
    """Dashboard, page editor (date pickers, inline panels), snippets and the markets screens load with no violation."""
    base, page, errors = admin_page
    article = make_article(headline="Harbour talks resume")
    market = services.create_market(
        question="Will the harbour talks yield substantive progress?", liquidity_b_micro=100_000_000,
        close_at=timezone.now() + dt.timedelta(days=30), articles=[article],
    )
    paths = [
        "/admin/", "/admin/pages/", f"/admin/pages/{article.pk}/edit/", "/admin/snippets/",
        "/admin/markets/", "/admin/markets/new/", f"/admin/markets/resolve/{market.pk}/",
        f"/admin/markets/article/{article.pk}/",
    ]
    for path in paths:
        response = page.goto(base + path)
        assert response.status == 200, path
        assert response.headers["content-security-policy"] == ADMIN_POLICY
        page.wait_for_load_state("networkidle")
        assert page.evaluate("window.__violations") == [], path
    # The page editor's own scripts ran: its Stimulus controllers connected the publish menu.
    page.goto(base + f"/admin/pages/{article.pk}/edit/")
    page.locator("[data-controller~='w-dropdown']").first.wait_for()
    assert [e for e in errors if "Content Security Policy" in e] == []


def test_a_javascript_source_stored_before_the_rule_is_neither_a_link_nor_runnable(admin_page):
    """A resolution source stored before the service's http(s) rule shows as plain text in the admin, not as a link.

    The admin policy must allow inline scripts for Wagtail, so it cannot stop a
    javascript: link; the service and the template keep such links out.
    """
    base, page, errors = admin_page
    market = services.create_market(
        question="Will the port reopen?", liquidity_b_micro=100_000_000, close_at=timezone.now() + dt.timedelta(days=3),
    )
    services.resolve_market(market_slug=market.slug, by=None, outcome="yes", sources=["https://example.org/notice"])
    Market.objects.filter(pk=market.pk).update(resolution_sources=["https://example.org/notice", "javascript:window.__ran=1"])
    page.goto(base + f"/admin/markets/resolve/{market.pk}/")
    assert page.locator("a[href^='javascript']").count() == 0
    assert page.locator("a[href='https://example.org/notice']").count() == 1
    assert page.get_by_text("javascript:window.__ran=1").count() == 1
