"""The admin's Content Security Policy in Chromium: Wagtail keeps working under it, and a hostile source link cannot run."""

from __future__ import annotations

import datetime as dt

import pytest
from django.contrib.auth.models import Group, Permission
from django.utils import timezone
from playwright.sync_api import expect
from wagtail.models import GroupPagePermission, Page

from bellwether.accounts.services import ROLE_GROUPS, create_user
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


def restore_editors_group() -> None:
    """Give the Editors group the rights its data migrations grant: pages (wagtailcore 0002), expert forecasts (markets 0003).

    An earlier transactional test's flush empties those migrations' rows, and
    grant_role recreates the group with admin access only; Wagtail would then
    send the page editor and the snippets back to the dashboard.
    """
    editors = Group.objects.get(name=ROLE_GROUPS["editor"])
    root = Page.get_first_root_node()
    for codename in ("add_page", "change_page"):
        permission = Permission.objects.get(content_type__app_label="wagtailcore", codename=codename)
        GroupPagePermission.objects.get_or_create(group=editors, page=root, permission=permission)
    forecasts = Permission.objects.filter(content_type__app_label="markets", codename__endswith="_expertforecast")
    editors.permissions.add(*forecasts)


@pytest.fixture
def admin_page(browser, live_server, home):
    create_user(username="chief", email="chief@example.org", password=PASSWORD, roles=("editor", "resolver"))
    restore_editors_group()
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
        assert page.url == base + path, path  # not sent back to the dashboard for want of a permission
        assert response.headers["content-security-policy"] == ADMIN_POLICY
        page.wait_for_load_state("networkidle")
        assert page.evaluate("window.__violations") == [], path
    # The page editor's own scripts ran: the header's actions menu is server-rendered
    # hidden, and only Wagtail's dropdown controller (Stimulus and Tippy) opens it.
    page.goto(base + f"/admin/pages/{article.pk}/edit/")
    header_actions = page.locator("#w-slim-header-buttons")
    actions = header_actions.get_by_role("button", name="Actions")
    expect(actions).to_have_attribute("aria-expanded", "false")  # set when the controller connects; the server sends none
    actions.click()
    expect(actions).to_have_attribute("aria-expanded", "true")
    expect(header_actions.get_by_role("link", name="History")).to_be_visible()
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
