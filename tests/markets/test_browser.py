"""Whole journeys in Debian's Chromium: a newcomer trades from a story; an editor and a resolver run a market."""

from __future__ import annotations

import datetime as dt
import re

import pytest
from django.utils import timezone

from bellwether.ledger.models import Account
from bellwether.markets import services
from bellwether.markets.models import Market, Position
from tests.news.factories import make_article

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]
M = services.MICRO
PASSWORD = "correct horse battery staple 42"


def credits_shown(page) -> str:
    return page.locator("#nav-balance").inner_text().strip()


DETAIL_JS = "e => JSON.stringify(e && e.detail ? {error: String(e.detail.error || ''), elt: e.detail.elt ? e.detail.elt.outerHTML.slice(0, 200) : ''} : String(e))"


def watch_console(page) -> list[str]:
    """Collect console errors and CSP violations, which a working page must not produce."""
    problems: list[str] = []

    def on_console(msg) -> None:
        # A quote still in flight when the trade is sent is aborted on purpose
        # (hx-sync replace); htmx reports that abort as an error.
        if msg.type != "error" or msg.text.startswith(("htmx:sendAbort", "htmx:afterRequest")):
            return
        detail = msg.args[-1].evaluate(DETAIL_JS) if msg.args else ""
        problems.append(f"{msg.text} {detail}")

    page.on("console", on_console)
    page.on("pageerror", lambda exc: problems.append(str(exc)))
    return problems


@pytest.fixture
def story_with_market(live_server, home):
    article = make_article(headline="Harbour talks resume", published_at=timezone.now() - dt.timedelta(hours=3))
    market = services.create_market(
        question="Will the harbour talks yield substantive progress?",
        liquidity_b_micro=100 * M,
        close_at=timezone.now() + dt.timedelta(days=30),
        articles=[article],
    )
    return live_server.url, article, market


def sign_up(page, base: str, username: str) -> None:
    page.goto(base + "/accounts/signup/")
    page.fill("#id_email", f"{username}@example.org")
    page.fill("#id_username", username)
    page.fill("#id_password1", PASSWORD)
    page.locator("main form button[type=submit]").click()
    page.wait_for_selector("#nav-balance")


def test_newcomer_signs_up_trades_from_a_story_and_sees_the_portfolio(page, story_with_market):
    """Sign up, open the market from the article, quote, buy and sell without a reload, then the portfolio."""
    base, article, market = story_with_market
    problems = watch_console(page)
    sign_up(page, base, "newcomer")
    assert credits_shown(page) == "1,000.00 cr"

    # From the story's market panel into the market page.
    page.goto(base + article.url)
    panel = page.locator("#article-markets")
    panel.get_by_text("Will the harbour talks yield substantive progress?").wait_for()
    panel.get_by_role("link", name=re.compile("Trade")).first.click()
    page.wait_for_url(f"**/markets/{market.slug}/**")
    assert page.locator("#trade-ticket input[name=outcome][value=yes]").is_checked()
    assert page.locator("#market-probabilities [data-outcome=yes]").inner_text().find("50%") >= 0
    page.evaluate("window.__sameDocument = true")  # survives only if nothing reloads the page

    # A live quote as the amount is typed, then the confirm.
    page.fill("#ticket-value", "25")
    confirm = page.locator("#ticket-confirm")
    confirm.wait_for()
    expected = services.quote(market=market, request=services.TradeRequest(outcome="yes", side="buy", amount_micro=25 * M))
    assert page.locator("[data-quote=amount]").get_attribute("data-value") == "25.000000"
    assert page.locator("[data-quote=shares]").get_attribute("data-value") == f"{expected.shares_micro / M:.6f}"
    confirm.click()
    page.locator("#ticket-message").get_by_text(re.compile("Bought")).wait_for()
    assert credits_shown(page) == "975.00 cr"
    position = Position.objects.get(user__username="newcomer", outcome__slug="yes")
    assert position.shares_micro == expected.shares_micro
    assert page.locator("#your-position").inner_text().find(f"{expected.shares_micro / M:,.2f}") >= 0
    yes_after = round(expected.probabilities_after[0] * 100)
    page.locator("#market-probabilities [data-outcome=yes]").get_by_text(f"{yes_after}%").wait_for()
    assert page.evaluate("window.__sameDocument === true")

    # Sell everything back, still in place.
    page.locator("#trade-ticket input[name=side][value=sell]").check()
    page.locator("#ticket-sell-all").check()
    page.locator("#ticket-confirm").wait_for()
    page.locator("#ticket-confirm").click()
    page.locator("#ticket-message").get_by_text(re.compile("Sold")).wait_for()
    cash = Account.objects.get(user__username="newcomer").balance_micro
    assert cash < 1000 * M  # the round trip costs the rounding, in the house's favour
    shown = credits_shown(page).removesuffix(" cr").replace(",", "")
    assert abs(float(shown) * M - cash) <= 5_000
    assert page.evaluate("window.__sameDocument === true")

    # The portfolio lists the closed position's ledger lines: the grant, the buy and the sell.
    page.locator("#nav-balance").click()
    page.wait_for_url("**/portfolio/")
    ledger = page.locator("#ledger").inner_text()
    for word in ("grant", "Buy", "Sell"):
        assert re.search(word, ledger, re.I), word
    assert problems == [], problems


def test_reader_who_is_not_logged_in_sees_prices_and_is_asked_to_log_in(page, story_with_market):
    """Prices and the chart show; the ticket is a call to log in that returns to the market."""
    base, _, market = story_with_market
    problems = watch_console(page)
    page.goto(base + market.get_absolute_url())
    assert "50%" in page.locator("#market-probabilities").inner_text()
    page.locator("#market-chart canvas, #chart-empty").first.wait_for()
    page.locator("#trade-ticket").get_by_role("link", name="Log in to trade").click()
    page.wait_for_url("**/accounts/login/**")
    assert f"next=/markets/{market.slug}/" in page.url
    assert problems == [], problems


def test_phone_sized_market_page_has_no_sideways_scroll(browser, story_with_market):
    """The market page, ticket and chart fit a 375 px screen."""
    base, _, market = story_with_market
    context = browser.new_context(viewport={"width": 375, "height": 800})
    page = context.new_page()
    page.goto(base + market.get_absolute_url())
    page.locator("#market-chart canvas, #chart-empty").first.wait_for()
    assert page.evaluate("document.documentElement.scrollWidth") <= 375
    context.close()


def test_editor_creates_and_links_a_market_and_a_resolver_pays_the_holder(browser, live_server, home):
    """The whole life of a market from the admin: create, link to a story, trade, resolve with the preview."""
    from bellwether.accounts.services import create_user

    article = make_article(headline="Council budget vote next week")
    create_user(username="editor1", email="editor1@example.org", password=PASSWORD, roles=("editor",))
    create_user(username="resolver1", email="resolver1@example.org", password=PASSWORD, roles=("resolver",))
    holder = create_user(username="holder", password=PASSWORD)
    base = live_server.url

    def admin_login(username):
        context = browser.new_context(viewport={"width": 1280, "height": 900})
        page = context.new_page()
        page.set_default_timeout(15_000)
        page.goto(base + "/admin/login/")
        page.fill("#id_username", username)
        page.fill("#id_password", PASSWORD)
        page.locator("form button[type=submit]").click()
        page.wait_for_url(base + "/admin/")
        return context, page

    context, page = admin_login("editor1")
    page.goto(base + "/admin/markets/")
    page.get_by_role("link", name="Add market").click()
    page.fill("#id_question", "Will the council pass the budget?")
    page.fill("#id_liquidity_b", "50")
    close = (timezone.now() + dt.timedelta(days=10)).strftime("%Y-%m-%d %H:%M")
    page.fill("#id_close_at", close)
    page.fill("#id_resolution_criteria", "Yes if the council's published minutes record the budget as passed.")
    page.locator("#market-create-submit").click()
    page.locator("#market-summary").wait_for()
    market = Market.objects.get(question="Will the council pass the budget?")
    assert market.status == Market.Status.OPEN and market.liquidity_b_micro == 50 * M

    # Link it from the article's side.
    page.goto(base + f"/admin/markets/article/{article.pk}/")
    page.select_option("#id_market", str(market.pk))
    page.get_by_role("button", name="Link market").click()
    page.get_by_text("Will the council pass the budget?").first.wait_for()
    assert list(market.articles.values_list("pk", flat=True)) == [article.pk]
    context.close()

    services.place_trade(user=holder, market_slug=market.slug, request=services.TradeRequest(outcome="yes", side="buy", shares_micro=20 * M))
    before = Account.objects.get(user=holder).balance_micro

    context, page = admin_login("resolver1")
    page.goto(base + f"/admin/markets/resolve/{market.pk}/")
    page.locator("#resolve-form input[name=action][value=outcome]").check()
    page.locator("#resolve-form input[name=outcome][value=yes]").check()
    page.fill("#id_note", "The minutes record the budget as passed.")
    page.locator("#preview-payouts").click()
    preview = page.locator("#payout-table")
    preview.wait_for()
    assert preview.locator("td.payout-holder").all_inner_texts() == ["holder"]
    assert preview.locator("td.payout-amount").all_inner_texts()[0].startswith("20.000000")
    page.locator("#confirm-resolution").click()
    page.locator("#resolution-record").wait_for()
    context.close()

    assert Account.objects.get(user=holder).balance_micro == before + 20 * M
    # The holder sees the payout on the market page.
    reader = browser.new_context()
    page = reader.new_page()
    page.goto(base + "/accounts/login/")
    page.fill("#id_login", "holder")
    page.fill("#id_password", PASSWORD)
    page.locator("main form button[type=submit]").click()
    page.wait_for_selector("#nav-balance")
    page.goto(base + market.get_absolute_url())
    assert "holder" in page.locator("#payouts").inner_text()
    assert "20.00" in page.locator("#payouts").inner_text()
    reader.close()
