"""Live pages in Debian's Chromium against a real `bellwether serve` (two worker processes).

The server runs as a subprocess on the test database: granian WSGI for the
pages and the API on one port, the ASGI live server on the next. Trades come
through the JSON API (from outside any browser) or through a browser's
ticket, and the other pages must show them within two seconds without a
reload: on SQLite through the live server's poller, on PostgreSQL through
NOTIFY.
"""

from __future__ import annotations

import datetime as dt
import http.client
import json
import os
import re
import subprocess
import sys
import urllib.parse
from decimal import Decimal
from pathlib import Path

import pytest
from django.conf import settings
from django.test import Client
from django.utils import timezone

from bellwether.accounts.services import create_token, create_user
from bellwether.markets import services
from bellwether.markets.models import Market, Trade
from bellwether.markets.templatetags.market_format import credits, percent
from tests.news.factories import make_article
from tests.servers import HOST, database_url, free_port_pair, health_ok, log_tail, status_of, stop, wait_until_up

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

REPO = Path(__file__).resolve().parents[2]
M = services.MICRO
LIVE_MS = 2000  # the issue: a trade shows on other pages within two seconds
SETTLE_MS = 5000  # page loads, quotes and the stream's first connection
START_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 15.0


# --- the server --------------------------------------------------------------


def _stream_answers(port: int) -> bool:
    """Return whether the live server answers the site-wide stream with event-stream headers."""
    conn = http.client.HTTPConnection(HOST, port, timeout=2)
    try:
        conn.request("GET", "/live/markets/")
        response = conn.getresponse()
        return response.status == 200 and response.getheader("Content-Type", "").startswith("text/event-stream")
    finally:
        conn.close()


@pytest.fixture(scope="module")
def server(django_db_setup, django_db_blocker, tmp_path_factory):
    """Run `bellwether serve --workers 2` on the test database; yield the pages' base URL."""
    with django_db_blocker.unblock():
        url = database_url()
    var_dir = tmp_path_factory.mktemp("serve-var")
    env = {k: v for k, v in os.environ.items() if k not in ("DEBUG", "LIVE_URL", "LIVE_PORT", "ALLOWED_HOSTS", "PAGE_CACHE_TTL_S")}
    env.update({
        "DJANGO_SETTINGS_MODULE": "bellwether.settings.base",
        "DATABASE_URL": url,
        "PAGE_CACHE_TTL_S": "0",
        "BELLWETHER_VAR_DIR": str(var_dir),
        "SECRET_KEY": settings.SECRET_KEY,  # sessions made here must be valid there
    })
    port = free_port_pair()
    script = Path(sys.executable).parent / "bellwether"
    argv = [str(script)] if script.exists() else [sys.executable, "-m", "bellwether.cli"]
    argv += ["serve", "--host", HOST, "--port", str(port), "--workers", "2"]
    log_path = var_dir / "serve.log"
    with open(log_path, "wb") as log:
        # A session of its own, so stopping it reaches every worker.
        process = subprocess.Popen(argv, env=env, cwd=REPO, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        checks = {"/health/ 200": lambda: health_ok(port), "the live stream": lambda: _stream_answers(port + 1)}
        wait_until_up(process, log=log_path, checks=checks, timeout_s=START_TIMEOUT_S, tail_chars=3000)
        for _ in range(4):  # load the page and API code in the workers before anything is timed
            for path in ("/markets/", "/api/v1/markets"):
                assert status_of(port, path, timeout_s=30) is not None, log_tail(log_path, chars=3000)
        yield f"http://{HOST}:{port}"
    finally:
        stop(process, timeout_s=STOP_TIMEOUT_S, process_group=True)


# --- data and helpers --------------------------------------------------------


@pytest.fixture
def market(server):
    return services.create_market(
        question="Will the night trams run all winter?",
        liquidity_b_micro=100 * M,
        close_at=timezone.now() + dt.timedelta(days=30),
    )


@pytest.fixture
def alice(server):
    """A reader who trades through the ticket in a browser."""
    return create_user(username="alice", email="alice@example.org", password="correct horse battery staple 42")


@pytest.fixture
def bot(server):
    """A trader who trades through the JSON API with a bearer token."""
    user = create_user(username="bot", email="bot@example.org", password="correct horse battery staple 43")
    _token, raw = create_token(user=user, name="live test")
    return raw


def micro(text: str) -> int:
    """Return an API decimal string as micro-units."""
    return int(Decimal(text) * M)


def api_trade(base: str, token: str, slug: str, **body) -> dict:
    """Trade through the API of the running server; return the 201 body."""
    parts = urllib.parse.urlsplit(base)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
    try:
        conn.request(
            "POST", f"/api/v1/markets/{slug}/trades", body=json.dumps(body),
            headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
        )
        response = conn.getresponse()
        payload = json.loads(response.read())
    finally:
        conn.close()
    assert response.status == 201, payload
    return payload


def open_context(browser, base: str, user=None, **options):
    """Return a browser context, logged in as ``user`` through a session cookie when given."""
    context = browser.new_context(viewport={"width": 1280, "height": 900}, **options)
    context.set_default_timeout(SETTLE_MS * 2)
    context.set_default_navigation_timeout(30_000)  # a loaded machine; live waits stay tight
    if user is not None:
        client = Client()
        client.force_login(user)
        cookie = client.cookies[settings.SESSION_COOKIE_NAME]
        context.add_cookies([{"name": settings.SESSION_COOKIE_NAME, "value": cookie.value, "url": base}])
    return context


def watch_console(page) -> list[str]:
    """Collect console errors (CSP violations among them) and page errors."""
    problems: list[str] = []

    def on_console(msg) -> None:
        # A quote replaced by a newer request is aborted on purpose (hx-sync).
        if msg.type == "error" and not msg.text.startswith(("htmx:sendAbort", "htmx:afterRequest")):
            problems.append(msg.text)

    page.on("console", on_console)
    page.on("pageerror", lambda exc: problems.append(str(exc)))
    return problems


def open_live(context, url: str):
    """Open ``url`` and wait until its live stream is connected."""
    page = context.new_page()
    problems = watch_console(page)
    page.goto(url)
    page.wait_for_selector("body[data-live-state=open]", timeout=SETTLE_MS, state="attached")
    page.evaluate("window.__sameDocument = true")  # survives only if nothing reloads the page
    return page, problems


def odds(page, outcome: str):
    return page.locator(f"#market-probabilities [data-outcome={outcome}] .odds__pct")


def shown_within(locator, text: str, timeout_ms: int = LIVE_MS) -> None:
    from playwright.sync_api import expect

    expect(locator).to_have_text(text, timeout=timeout_ms)


# --- tests -------------------------------------------------------------------


def test_trades_from_the_api_and_from_another_browser_show_live(browser, server, market, alice, bot):
    """A watcher's market page shows an API trade and another browser's ticket trade within two seconds, without a reload."""
    from playwright.sync_api import expect

    url = f"{server}/markets/{market.slug}/"
    watcher_context = open_context(browser, server)
    trader_context = open_context(browser, server, user=alice)
    try:
        watcher, watcher_problems = open_live(watcher_context, url)
        trader, trader_problems = open_live(trader_context, url)
        shown_within(odds(watcher, "yes"), "50%", SETTLE_MS)
        expect(watcher.locator("#recent-trades tr[data-trade]")).to_have_count(0)

        watcher.wait_for_function("window.BellwetherChart && window.BellwetherChart.chart.data", timeout=SETTLE_MS)
        points_before = watcher.evaluate("window.BellwetherChart.chart.data.t.length")

        # 1. Through the API, from outside any browser.
        first = api_trade(server, bot, market.slug, outcome="yes", side="buy", shares="40")
        yes_after_first = percent(float(first["probabilities"]["yes"]))
        assert yes_after_first == "60%"
        for page in (watcher, trader):
            shown_within(odds(page, "yes"), yes_after_first)
            shown_within(odds(page, "no"), percent(float(first["probabilities"]["no"])))
        expect(watcher.locator("#market-probabilities [data-outcome=yes] .odds__change")).to_have_text("\u25b2 +10 pts 24h")
        expect(watcher.locator("#market-probabilities [data-outcome=no] .odds__change")).to_have_text("\u25bc \u221210 pts 24h")
        row = watcher.locator(f"#recent-trades tr[data-trade='{first['trade_id']}']")
        expect(row).to_have_count(1, timeout=LIVE_MS)
        assert re.sub(r"\s+", " ", row.inner_text()).strip().startswith("bot Buy Yes 40.00 " + credits(micro(first["amount"])) + " cr")
        expect(watcher.locator("[data-live=trades]")).to_have_text("1 trade", timeout=LIVE_MS)
        expect(watcher.locator("[data-live=volume]")).to_have_text(credits(micro(first["amount"])) + " cr")
        # The chart gains the point, at the new price.
        watcher.wait_for_function(f"window.BellwetherChart.chart.data.t.length === {points_before + 1}", timeout=LIVE_MS)
        last_yes = watcher.evaluate("(d => d.series[0][d.series[0].length - 1])(window.BellwetherChart.chart.data)")
        assert f"{last_yes:.6f}" == first["probabilities"]["yes"]
        # The ticket's outcome prices follow.
        expect(trader.locator("#trade-ticket input[value=yes] ~ .choice__price")).to_have_text(yes_after_first)

        # 2. Through the second browser's ticket.
        trader.locator("#trade-ticket input[name=side][value=buy]").check()
        trader.locator("#trade-ticket input[name=outcome][value=no]").check()
        trader.locator("#trade-ticket input[name=mode][value=shares]").check()
        trader.fill("#ticket-value", "80")
        trader.locator("#ticket-confirm").wait_for(timeout=SETTLE_MS)
        trader.locator("#ticket-confirm").click()
        trader.locator("#ticket-message").get_by_text(re.compile("Bought")).wait_for(timeout=SETTLE_MS)
        second = Trade.objects.filter(user=alice).get()
        assert second.shares_micro == 80 * M
        yes_after_second = percent(second.probabilities_after[0])
        assert yes_after_second != yes_after_first
        shown_within(odds(watcher, "yes"), yes_after_second)
        expect(watcher.locator(f"#recent-trades tr[data-trade='{second.pk}']")).to_contain_text("alice", timeout=LIVE_MS)
        # Newest first, each trade once: the trader's own page got it twice (its answer and the stream).
        assert watcher.locator("#recent-trades tr[data-trade]").evaluate_all("rows => rows.map(r => r.dataset.trade)") == [str(second.pk), str(first["trade_id"])]
        expect(trader.locator("#recent-trades tr[data-trade]")).to_have_count(2)
        expect(watcher.locator("[data-live=trades]")).to_have_text("2 trades")
        # The trader's answer re-rendered the odds and trades; its own event brought the counts.
        expect(trader.locator("[data-live=trades]")).to_have_text("2 trades", timeout=LIVE_MS)
        expect(trader.locator("[data-live=volume]")).to_have_text(credits(micro(first["amount"]) + second.amount_micro) + " cr")

        assert watcher.evaluate("window.__sameDocument === true")
        assert trader.evaluate("window.__sameDocument === true")
        assert watcher_problems == [] and trader_problems == [], watcher_problems + trader_problems
    finally:
        watcher_context.close()
        trader_context.close()


def test_a_stale_quote_is_requoted_and_confirms_at_the_new_price(browser, server, market, alice, bot):
    """A quote on screen is re-asked when another trade moves the price; confirming it trades at the new quote."""
    from playwright.sync_api import expect

    context = open_context(browser, server, user=alice)
    try:
        page, problems = open_live(context, f"{server}/markets/{market.slug}/")
        page.locator("#trade-ticket input[name=mode][value=shares]").check()
        page.fill("#ticket-value", "10")
        page.locator("#ticket-confirm").wait_for(timeout=SETTLE_MS)
        stale = page.locator("[data-quote=amount]").get_attribute("data-value")
        fresh_market = Market.objects.get(pk=market.pk)
        before = services.quote(market=fresh_market, request=services.TradeRequest(outcome="yes", side="buy", shares_micro=10 * M))
        assert stale == f"{before.amount_micro / M:.6f}"

        api_trade(server, bot, market.slug, outcome="yes", side="buy", shares="50")
        fresh_market = Market.objects.get(pk=market.pk)
        after = services.quote(market=fresh_market, request=services.TradeRequest(outcome="yes", side="buy", shares_micro=10 * M))
        assert after.amount_micro > before.amount_micro

        expect(page.locator("#ticket-quote .ticket-requoted")).to_have_text("Price moved — quote updated", timeout=LIVE_MS + 1000)
        expect(page.locator("[data-quote=amount]")).to_have_attribute("data-value", f"{after.amount_micro / M:.6f}")
        expect(page.locator("#ticket-confirm")).to_contain_text(f"for {credits(after.amount_micro)} cr")

        page.locator("#ticket-confirm").click()
        page.locator("#ticket-message").get_by_text(re.compile("Bought")).wait_for(timeout=SETTLE_MS)
        mine = Trade.objects.filter(user=alice).get()
        assert (mine.shares_micro, mine.amount_micro) == (10 * M, after.amount_micro)
        expect(page.locator("#ticket-message")).not_to_contain_text("moved")  # no slippage refusal
        assert problems == [], problems
    finally:
        context.close()


def test_the_markets_index_row_ticks_on_a_trade(browser, server, market, bot):
    """The markets index row's probability, change, volume and trade count follow a trade without a reload."""
    from playwright.sync_api import expect

    context = open_context(browser, server)
    try:
        page, problems = open_live(context, f"{server}/markets/")
        row = page.locator(f"li[data-market='{market.slug}']")
        expect(row.locator(".mi-prob__value")).to_have_text("50%")
        expect(row.locator("[data-live=trades]")).to_have_text("0 trades")

        body = api_trade(server, bot, market.slug, outcome="no", side="buy", shares="40")
        no_yes = percent(float(body["probabilities"]["yes"]))
        assert no_yes == "40%"
        shown_within(row.locator(".mi-prob__value"), no_yes)
        expect(row.locator("[data-live=trades]")).to_have_text("1 trade", timeout=LIVE_MS)
        expect(row.locator("[data-live=volume]")).to_have_text(credits(micro(body["amount"])) + " cr traded")
        expect(row.locator(".change")).to_have_text("24-hour change: \u221210 pts 24h")
        expect(row.locator(".change")).to_have_class(re.compile(r"\bchange--down\b"))
        assert page.evaluate("window.__sameDocument === true")
        assert problems == [], problems
    finally:
        context.close()


def test_the_home_strip_attaches_after_htmx_loads_it_and_ticks(browser, server, market, bot, home):
    """The home page's lazy markets strip, once htmx has loaded it, follows the site-wide stream."""
    from playwright.sync_api import expect

    make_article(headline="Night trams under review", published_at=timezone.now() - dt.timedelta(hours=1))
    api_trade(server, bot, market.slug, outcome="yes", side="buy", shares="40")  # active and a mover
    context = open_context(browser, server)
    try:
        page, problems = open_live(context, f"{server}/")
        values = page.locator(f"#markets-strip li[data-market='{market.slug}'] .mp-row__odds strong")
        expect(values).to_have_count(2)  # most active and biggest movers
        expect(values.first).to_have_text("60%")

        body = api_trade(server, bot, market.slug, outcome="no", side="buy", shares="80")
        now_yes = percent(float(body["probabilities"]["yes"]))
        assert now_yes == "40%"
        shown_within(values.first, now_yes)
        shown_within(values.last, now_yes)
        expect(page.locator(f"#markets-strip li[data-market='{market.slug}'] .change").first).to_have_text("24-hour change: \u221210 pts 24h")
        assert page.evaluate("window.__sameDocument === true")
        assert problems == [], problems
    finally:
        context.close()


def test_without_javascript_the_market_page_is_plain_and_correct(browser, server, market, bot):
    """With JavaScript off the market page shows the current probabilities and trades as served."""
    body = api_trade(server, bot, market.slug, outcome="yes", side="buy", shares="40")
    context = open_context(browser, server, java_script_enabled=False)
    try:
        page = context.new_page()
        page.goto(f"{server}/markets/{market.slug}/")
        assert odds(page, "yes").inner_text() == percent(float(body["probabilities"]["yes"])) == "60%"
        assert odds(page, "no").inner_text() == "40%"
        assert page.locator(f"#recent-trades tr[data-trade='{body['trade_id']}']").count() == 1
        assert page.locator("body").get_attribute("data-live-state") is None  # no script ran

        # A later trade shows on the next load.
        again = api_trade(server, bot, market.slug, outcome="no", side="buy", shares="80")
        page.reload()
        assert odds(page, "yes").inner_text() == percent(float(again["probabilities"]["yes"]))
        assert page.locator("#recent-trades tr[data-trade]").count() == 2
    finally:
        context.close()
