"""The market page, its chart JSON, the htmx trade ticket and the portfolio, through Django's test client.

Trades made through the ticket are checked against the services they call
(``markets.services.quote`` and ``place_trade``); every refused request is
followed by a check that nothing in the database moved.
"""

from __future__ import annotations

import datetime as dt
import html
import json
import re
from html.parser import HTMLParser

import pytest
from django.conf import settings
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from bellwether.accounts.services import create_user
from bellwether.ledger.models import Account, Transfer
from bellwether.markets import selectors, services
from bellwether.markets.models import IdempotencyKey, Market, Outcome, Position, Trade
from bellwether.markets.services import TradeRequest
from tests.news.factories import make_article

pytestmark = pytest.mark.django_db

M = 1_000_000
START = settings.STARTING_BALANCE_MICRO
HX = {"HTTP_HX_REQUEST": "true"}


# --- helpers ---------------------------------------------------------------


class _Finder(HTMLParser):
    """Collect the outer HTML of the first element with a given id."""

    VOID = {"input", "br", "img", "meta", "link", "hr", "source", "col", "area", "base", "wbr"}

    def __init__(self, source: str, wanted: str) -> None:
        super().__init__(convert_charrefs=False)
        self.source, self.wanted = source, wanted
        self.depth, self.start, self.end, self.tag = 0, None, None, None
        self.lines = [0]
        for line in source.splitlines(keepends=True):
            self.lines.append(self.lines[-1] + len(line))

    def _offset(self) -> int:
        line, col = self.getpos()
        return self.lines[line - 1] + col

    def handle_starttag(self, tag, attrs):
        if self.end is not None:
            return
        if self.start is None:
            if dict(attrs).get("id") == self.wanted:
                self.start, self.tag, self.depth = self._offset(), tag, 1
                if tag in self.VOID:
                    self.end = self.start + len(self.get_starttag_text())
            return
        if tag == self.tag:
            self.depth += 1

    def handle_endtag(self, tag):
        if self.start is None or self.end is not None or tag != self.tag:
            return
        self.depth -= 1
        if self.depth == 0:
            offset = self._offset()
            self.end = offset + self.source[offset:].index(">") + 1


def by_id(source: str, element_id: str) -> str:
    """Return the outer HTML of the element with ``element_id``; fail if absent."""
    finder = _Finder(source, element_id)
    finder.feed(source)
    assert finder.start is not None, f"no element with id {element_id!r}"
    assert finder.end is not None, f"element {element_id!r} never closes"
    return source[finder.start:finder.end]


def has_id(source: str, element_id: str) -> bool:
    return f'id="{element_id}"' in source


def text(fragment: str) -> str:
    """Return the fragment's visible text with whitespace collapsed."""
    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", fragment)).split())


def hidden(source: str) -> dict[str, str]:
    """Return the hidden inputs' values by name."""
    return {
        name: html.unescape(value)
        for name, value in re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)"', source)
    }


def quoted(source: str) -> dict[str, str]:
    """Return the quote's exact values by their data-quote name."""
    return dict(re.findall(r'data-quote="([^"]+)" data-value="([^"]*)"', source))


def fmt(micro: int) -> str:
    sign = "-" if micro < 0 else ""
    whole, frac = divmod(abs(micro), M)
    return f"{sign}{whole}.{frac:06d}"


def cr(micro: int) -> str:
    """Return micro-credits as the pages show them (two decimals, a real minus sign)."""
    from bellwether.markets.templatetags.market_format import credits

    return credits(micro)


def make_market(question="Will the harbour strike end by Friday?", outcomes=None, b=100, **fields) -> Market:
    fields.setdefault("close_at", timezone.now() + dt.timedelta(days=7))
    return services.create_market(question=question, outcomes=outcomes, liquidity_b_micro=b * M, **fields)


def user(name: str, **extra):
    u = create_user(username=name, password="pw")
    for key, value in extra.items():
        setattr(u, key, value)
    if extra:
        u.save()
    return u


def client_for(u, **kwargs) -> Client:
    c = Client(**kwargs)
    c.force_login(u)
    return c


def service_buy(u, market: Market, outcome="yes", shares=10) -> dict:
    return services.place_trade(user=u, market_slug=market.slug, request=TradeRequest(outcome=outcome, side="buy", shares_micro=shares * M))


def balance(u) -> int:
    return Account.objects.get(user=u).balance_micro


def snapshot() -> dict:
    """Everything a refused request must leave alone."""
    return {
        "balances": dict(Account.objects.values_list("pk", "balance_micro")),
        "transfers": Transfer.objects.count(),
        "trades": Trade.objects.count(),
        "shares": dict(Outcome.objects.values_list("pk", "shares_micro")),
        "positions": sorted(Position.objects.values_list("pk", "shares_micro", "cost_basis_micro", "spent_micro", "received_micro")),
        "keys": IdempotencyKey.objects.count(),
        "markets": sorted(Market.objects.values_list("pk", "status", "volume_micro", "trade_count")),
    }


def form(outcome="yes", side="buy", mode="amount", value="5", key="key-1", **extra) -> dict:
    data = {"outcome": outcome, "side": side, "mode": mode, "value": value, "idempotency_key": key}
    data.update(extra)
    return data


def post_quote(c: Client, market: Market, data: dict, htmx=True):
    return c.post(f"/markets/{market.slug}/quote/", data, **(HX if htmx else {}))


def post_trade(c: Client, market: Market, data: dict, htmx=True):
    return c.post(f"/markets/{market.slug}/trade/", data, **(HX if htmx else {}))


def quote_then_fields(c: Client, market: Market, data: dict) -> dict:
    """Quote through the ticket and return the form as it would be confirmed (choices plus the quote's hidden inputs)."""
    response = post_quote(c, market, data)
    assert response.status_code == 200
    fields = hidden(response.content.decode())
    assert {"quote_for", "quoted_shares"} <= set(fields), response.content
    return {**data, **fields}


def message(source: str) -> str:
    return text(by_id(source, "ticket-message"))


# --- the market page ----------------------------------------------------------


def test_open_market_page_shows_question_odds_chart_ticket_and_empty_states(home):
    """Show an open market's question, texts, close time, b, odds per outcome, chart, ticket and empty states, never cached."""
    alice = user("alice")
    market = make_market(description="Dockers walked out on Monday.", resolution_criteria="Yes if the union calls it off.")
    response = client_for(alice).get(f"/markets/{market.slug}/")
    assert response.status_code == 200
    assert "no-store" in response["Cache-Control"] and "private" in response["Cache-Control"]
    page = response.content.decode()
    assert "Will the harbour strike end by Friday?" in page
    assert "Dockers walked out on Monday." in page and "Yes if the union calls it off." in page
    assert text(by_id(page, "market-status")) == "Open"
    assert market.close_at.strftime("%-d %b %Y, %H:%M") in page
    assert re.search(r"Liquidity .*b</abbr> = <span class=\"num\">100.00</span>", page)
    odds = by_id(page, "market-probabilities")
    assert re.findall(r'data-outcome="([^"]+)" data-probability="([^"]+)"', odds) == [("yes", "0.500000"), ("no", "0.500000")]
    assert text(odds).startswith("Yes 50% 0 pts 24h No 50%")
    assert f'data-src="/markets/{market.slug}/chart.json"' in page
    assert "uplot-1.6.32/uPlot.iife.min.js" in page and "js/market-chart.js" in page
    assert text(by_id(page, "chart-empty")) == "No trades yet — the odds are where the market opened."
    ticket = by_id(page, "trade-ticket")
    assert re.findall(r'type="radio" name="outcome" value="([^"]+)"', ticket) == ["yes", "no"]
    assert 'name="outcome" value="yes" checked' in ticket
    assert re.findall(r'name="side" value="([^"]+)"', ticket) == ["buy", "sell"]
    assert re.findall(r'name="mode" value="([^"]+)"', ticket) == ["amount", "shares"]
    assert 'id="ticket-value" name="value" type="number"' in ticket
    assert f'hx-post="/markets/{market.slug}/quote/" hx-trigger="input changed delay:250ms, change from:.ticket-choice"' in ticket
    assert re.fullmatch(r"ticket-[\w-]{24}", hidden(ticket)["idempotency_key"])
    assert has_id(ticket, "ticket-quote") and has_id(ticket, "ticket-message")
    assert text(by_id(page, "your-position")).startswith("Your position You hold no shares in this market.")
    assert "No trades yet." in text(by_id(page, "recent-trades"))
    assert "No stories are linked" in page
    assert not has_id(page, "resolution") and not has_id(page, "payouts")


def test_outcome_preselected_from_query_string_and_each_render_gets_a_new_key(home):
    """Preselect ?outcome= when the market has it; every rendered ticket carries a different idempotency key."""
    alice = user("alice")
    market = make_market()
    c = client_for(alice)
    first = c.get(f"/markets/{market.slug}/?outcome=no").content.decode()
    second = c.get(f"/markets/{market.slug}/?outcome=bogus").content.decode()
    assert 'name="outcome" value="no" checked' in first
    assert 'name="outcome" value="yes" checked' in second
    assert hidden(first)["idempotency_key"] != hidden(second)["idempotency_key"]


def test_unknown_and_draft_markets_are_404_except_drafts_for_staff(home):
    """Answer 404 for an unknown slug, and for a draft unless the reader is staff (page and chart)."""
    draft = make_market(status=Market.Status.DRAFT)
    alice, editor = user("alice"), user("eddie", is_staff=True)
    assert Client().get("/markets/no-such-market/").status_code == 404
    assert Client().get("/markets/no-such-market/chart.json").status_code == 404
    assert Client().get(f"/markets/{draft.slug}/").status_code == 404
    assert client_for(alice).get(f"/markets/{draft.slug}/").status_code == 404
    assert client_for(alice).get(f"/markets/{draft.slug}/chart.json").status_code == 404
    response = client_for(editor).get(f"/markets/{draft.slug}/")
    assert response.status_code == 200
    assert "not open for trading yet" in text(by_id(response.content.decode(), "trade-ticket"))


def test_anonymous_reader_sees_prices_and_trades_and_a_call_to_log_in(home):
    """Show anonymous readers the odds, chart and trades, and log-in / sign-up links back to the market instead of a ticket."""
    alice = user("alice")
    market = make_market()
    service_buy(alice, market, "yes", 10)
    response = Client().get(f"/markets/{market.slug}/")
    assert response.status_code == 200
    assert "no-store" in response["Cache-Control"]
    page = response.content.decode()
    ticket = by_id(page, "trade-ticket")
    assert "<form" not in ticket
    assert f'href="/accounts/login/?next=/markets/{market.slug}/">Log in to trade</a>' in ticket
    assert f'href="/accounts/signup/?next=/markets/{market.slug}/">Sign up</a>' in ticket
    assert "alice" in text(by_id(page, "recent-trades"))
    assert has_id(page, "market-probabilities") and has_id(page, "market-chart")
    assert "Log in to see your shares" in text(by_id(page, "your-position"))


def test_closed_market_shows_no_ticket_and_a_notice(home):
    """Show a market past its close time as closed, with a notice and no ticket form."""
    alice = user("alice")
    market = make_market()
    Market.objects.filter(pk=market.pk).update(close_at=timezone.now() - dt.timedelta(hours=1))
    page = client_for(alice).get(f"/markets/{market.slug}/").content.decode()
    assert text(by_id(page, "market-status")) == "Closed"
    ticket = by_id(page, "trade-ticket")
    assert "<form" not in ticket
    assert "Trading closed" in text(ticket) and "awaits resolution" in text(ticket)


def test_resolved_market_shows_the_resolution_record_and_payouts(home):
    """Show who resolved, when, the winning outcome, the note, sources (web links only as links) and each holder's payout."""
    alice, bob, rosa = user("alice"), user("bob"), user("rosa")
    market = make_market()
    service_buy(alice, market, "yes", 10)
    service_buy(bob, market, "no", 4)
    services.resolve_market(
        market_slug=market.slug, by=rosa, outcome="yes", note="The union called it off.",
        sources=["https://example.org/strike-ends"],
    )
    # The service refuses other schemes now; a row stored before that rule still renders safely.
    Market.objects.filter(pk=market.pk).update(resolution_sources=["https://example.org/strike-ends", "javascript:alert(1)"])
    page = client_for(alice).get(f"/markets/{market.slug}/").content.decode()
    assert text(by_id(page, "market-status")) == "Resolved"
    record = by_id(page, "resolution")
    assert "Resolved Yes : each Yes share paid 1 credit." in text(record)
    resolved_at = Market.objects.get(pk=market.pk).resolved_at
    assert f"By rosa, {resolved_at.strftime('%-d %b %Y, %H:%M')} UTC" in text(record)
    assert "The union called it off." in record
    assert '<a href="https://example.org/strike-ends" rel="noopener nofollow">' in record
    assert "javascript:alert(1)" in text(record) and 'href="javascript' not in record
    payouts = by_id(page, "payouts")
    assert re.findall(r"<td>(\w+)</td><td class=\"num\">([^<]+)</td>", payouts) == [("alice", "10.00 cr"), ("bob", "0.00 cr")]
    assert "<form" not in by_id(page, "trade-ticket")
    assert "This market is resolved" in text(by_id(page, "trade-ticket"))
    position = by_id(page, "your-position")
    assert 'data-field="value">10.00 cr' in position


def test_cancelled_market_shows_refunds(home):
    """Show a cancelled market's record and each trader's refund (what they spent)."""
    alice, rosa = user("alice"), user("rosa")
    market = make_market()
    spent = service_buy(alice, market, "yes", 10)
    amount = Trade.objects.get(pk=spent["trade_id"]).amount_micro
    services.resolve_market(market_slug=market.slug, by=rosa, cancel=True, note="The question was void.")
    page = Client().get(f"/markets/{market.slug}/").content.decode()
    assert text(by_id(page, "market-status")) == "Cancelled"
    record = by_id(page, "resolution")
    assert "Cancelled (N/A)" in text(record) and "The question was void." in record
    assert re.findall(r"<td>(\w+)</td><td class=\"num\">([^<]+)</td>", by_id(page, "payouts")) == [("alice", f"{cr(amount)} cr")]


def test_probability_resolution_is_listed_per_outcome(home):
    """Show a resolution to probabilities as each outcome's share of a credit."""
    rosa = user("rosa")
    market = make_market()
    services.resolve_market(market_slug=market.slug, by=rosa, probabilities={"yes": "0.7", "no": "0.3"})
    record = by_id(Client().get(f"/markets/{market.slug}/").content.decode(), "resolution")
    assert "Resolved to probabilities: Yes 70% (each share paid 0.7000 cr) No 30% (each share paid 0.3000 cr)" in text(record)


def test_multi_outcome_market_page_and_ticket(home):
    """Show every outcome of a multiple-choice market and quote and trade its third outcome."""
    alice = user("alice")
    market = make_market(question="Who wins the port election?", outcomes=["Ada Quill", "Bo Lind", "Cy Marr"])
    c = client_for(alice)
    page = c.get(f"/markets/{market.slug}/").content.decode()
    assert re.findall(r'data-outcome="([^"]+)" data-probability="([^"]+)"', by_id(page, "market-probabilities")) == [
        ("ada-quill", "0.333333"), ("bo-lind", "0.333333"), ("cy-marr", "0.333333"),
    ]
    assert re.findall(r'type="radio" name="outcome" value="([^"]+)"', by_id(page, "trade-ticket")) == ["ada-quill", "bo-lind", "cy-marr"]
    fields = quote_then_fields(c, market, form(outcome="cy-marr", mode="shares", value="10"))
    response = post_trade(c, market, fields)
    assert response.status_code == 200
    assert Position.objects.get(user=alice).outcome.slug == "cy-marr"
    assert message(response.content.decode()) == f"Bought 10.00 Cy Marr for {cr(Trade.objects.get().amount_micro)} cr."


def test_top_holders_list_ten_per_outcome_largest_first(home):
    """List at most ten holders per outcome, most shares first."""
    market = make_market(b=1000)
    for i in range(12):
        service_buy(user(f"y{i:02d}"), market, "yes", i + 1)
    service_buy(user("nora"), market, "no", 3)
    page = Client().get(f"/markets/{market.slug}/").content.decode()
    holders = by_id(page, "top-holders")
    yes_names = re.findall(r"<li><span>(\w+)</span>", holders.split('data-outcome="no"')[0])
    assert yes_names == [f"y{i:02d}" for i in range(11, 1, -1)]
    assert re.findall(r"<li><span>(\w+)</span> <span class=\"num\">([^<]+)</span>", holders.split('data-outcome="no"')[1]) == [("nora", "3.00")]


def test_recent_trades_show_the_last_twenty_newest_first(home):
    """List the last 20 trades with who, side, outcome, shares and amount, newest first."""
    alice = user("alice")
    market = make_market(b=1000)
    for i in range(22):
        service_buy(alice, market, "yes" if i % 2 else "no", i + 1)
    page = Client().get(f"/markets/{market.slug}/").content.decode()
    rows = re.findall(r'<tr data-trade="(\d+)">', by_id(page, "recent-trades"))
    newest = list(Trade.objects.order_by("-created_at", "-id").values_list("pk", flat=True)[:20])
    assert [int(r) for r in rows] == newest
    first = Trade.objects.get(pk=newest[0])
    row = text(by_id(page, "recent-trades").split(f'data-trade="{first.pk}"')[1].split("</tr>")[0])
    assert row.startswith(f"> alice Buy Yes 22.00 {cr(first.amount_micro)} cr")


def test_linked_articles_are_listed_with_their_dates(home):
    """List linked live articles, newest first, with links and publication dates."""
    market = make_market()
    older = make_article(headline="Dockers vote to strike", published_at=dt.datetime(2026, 10, 1, 9, tzinfo=dt.timezone.utc))
    newer = make_article(headline="Talks resume at the port", published_at=dt.datetime(2026, 10, 3, 9, tzinfo=dt.timezone.utc))
    services.link_article(market=market, article=older)
    services.link_article(market=market, article=newer)
    articles = by_id(Client().get(f"/markets/{market.slug}/").content.decode(), "linked-articles")
    assert re.findall(r'<a href="([^"]+)">([^<]+)</a> <time class="meta" datetime="[^"]+">([^<]+)</time>', articles) == [
        (newer.url, "Talks resume at the port", "3 Oct 2026"),
        (older.url, "Dockers vote to strike", "1 Oct 2026"),
    ]


# --- chart data ---------------------------------------------------------------


def _place_at(u, market, when, outcome="yes", shares=10) -> Trade:
    body = service_buy(u, market, outcome, shares)
    Trade.objects.filter(pk=body["trade_id"]).update(created_at=when)
    return Trade.objects.get(pk=body["trade_id"])


def test_chart_json_has_exact_step_points_and_article_markers(home):
    """Return the opening odds at created_at, the odds after each trade, a last point at resolution, and article markers."""
    alice, rosa = user("alice"), user("rosa")
    t0 = timezone.now() - dt.timedelta(days=3)
    market = make_market()
    Market.objects.filter(pk=market.pk).update(created_at=t0)
    first = _place_at(alice, market, t0 + dt.timedelta(hours=1), "yes", 10)
    second = _place_at(alice, market, t0 + dt.timedelta(hours=2), "no", 30)
    article = make_article(headline="Strike talks collapse", published_at=t0 + dt.timedelta(minutes=90))
    services.link_article(market=market, article=article)
    services.resolve_market(market_slug=market.slug, by=rosa, outcome="no")
    end = t0 + dt.timedelta(hours=5)
    Market.objects.filter(pk=market.pk).update(resolved_at=end)
    response = Client().get(f"/markets/{market.slug}/chart.json")
    assert response.status_code == 200
    assert "no-store" in response["Cache-Control"]
    data = response.json()
    ts = lambda at: round(at.timestamp(), 3)  # noqa: E731
    assert data["outcomes"] == [{"slug": "yes", "name": "Yes"}, {"slug": "no", "name": "No"}]
    assert data["t"] == [ts(t0), ts(first.created_at), ts(second.created_at), ts(end)]
    assert data["series"] == [
        [0.5, round(first.probabilities_after[0], 6), round(second.probabilities_after[0], 6), round(second.probabilities_after[0], 6)],
        [0.5, round(first.probabilities_after[1], 6), round(second.probabilities_after[1], 6), round(second.probabilities_after[1], 6)],
    ]
    assert data["markers"] == [{"t": ts(t0 + dt.timedelta(minutes=90)), "title": "Strike talks collapse", "url": article.url}]
    assert data["range"] == "all" and data["empty"] is False and data["trade_count"] == 2


def test_chart_ranges_start_from_the_odds_in_force_and_end_now(home):
    """Start a 1D range at the odds in force a day ago, include only later trades, and end at now; unknown ranges mean all."""
    alice = user("alice")
    market = make_market()
    now = timezone.now()
    Market.objects.filter(pk=market.pk).update(created_at=now - dt.timedelta(days=10))
    old = _place_at(alice, market, now - dt.timedelta(days=3), "yes", 10)
    recent = _place_at(alice, market, now - dt.timedelta(hours=2), "yes", 10)
    before = timezone.now().timestamp()
    day = Client().get(f"/markets/{market.slug}/chart.json?range=1d").json()
    after = timezone.now().timestamp()
    assert day["range"] == "1d"
    assert len(day["t"]) == 3
    assert before - 86400 - 1 <= day["t"][0] <= after - 86400
    assert day["t"][1] == round(recent.created_at.timestamp(), 3)
    assert before - 1 <= day["t"][2] <= after + 1
    assert [s[0] for s in day["series"]] == [round(p, 6) for p in old.probabilities_after]
    assert [s[1] for s in day["series"]] == [round(p, 6) for p in recent.probabilities_after]
    week = Client().get(f"/markets/{market.slug}/chart.json?range=1w").json()
    assert week["t"][1:3] == [round(old.created_at.timestamp(), 3), round(recent.created_at.timestamp(), 3)]
    assert [s[0] for s in week["series"]] == [0.5, 0.5]
    everything = Client().get(f"/markets/{market.slug}/chart.json?range=nonsense").json()
    assert everything["range"] == "all" and len(everything["t"]) == 4


def test_chart_of_an_untraded_market_is_flat_and_flagged_empty(home):
    """Return the opening odds and a point now, flagged empty, before any trade."""
    market = make_market(outcomes=["North", "South", "East"])
    data = Client().get(f"/markets/{market.slug}/chart.json").json()
    assert data["empty"] is True and len(data["t"]) == 2
    assert data["series"] == [[0.333333, 0.333333]] * 3
    assert data["markers"] == []


def test_chart_history_is_thinned_keeping_first_and_last(home):
    """Thin long histories to the point limit, always keeping the first and the last point."""
    alice = user("alice")
    market = make_market(b=1000)
    for i in range(9):
        service_buy(alice, market, "yes", 1)
    now = timezone.now()
    full = selectors.chart_series(market=market, range_key="all", now=now)
    thin = selectors.chart_series(market=market, range_key="all", now=now, max_points=4)
    assert len(full["times"]) == 11
    assert thin["times"] == [full["times"][i] for i in (0, 3, 7, 10)]
    assert thin["series"][0] == [full["series"][0][i] for i in (0, 3, 7, 10)]


def test_long_histories_are_thinned_by_the_database(home):
    """Thin a long history in SQL: the same points as thinning the full list, from a query that numbers the rows."""
    alice = user("alice")
    market = make_market(b=1000)
    for _ in range(40):
        service_buy(alice, market, "yes", 1)
    now = timezone.now()
    full = selectors.chart_series(market=market, range_key="all", now=now)
    assert len(full["times"]) == 42
    with CaptureQueriesContext(connection) as ctx:
        thin = selectors.chart_series(market=market, range_key="all", now=now, max_points=7)
    picks = [0, 7, 14, 20, 27, 34, 41]
    assert thin["times"] == [full["times"][i] for i in picks]
    assert thin["series"] == [[series[i] for i in picks] for series in full["series"]]
    trade_reads = [q["sql"] for q in ctx.captured_queries if "probabilities_after" in q["sql"] and "markets_trade" in q["sql"]]
    assert len(trade_reads) == 1 and "ROW_NUMBER" in trade_reads[0].upper()


# --- quotes -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "request_kwargs"),
    [
        (dict(side="buy", mode="amount", value="25"), dict(side="buy", amount_micro=25 * M)),
        (dict(side="buy", mode="shares", value="12.5"), dict(side="buy", shares_micro=12_500_000)),
        (dict(side="sell", mode="shares", value="3"), dict(side="sell", shares_micro=3 * M)),
        (dict(side="sell", mode="amount", value="3"), dict(side="sell", shares_micro=3 * M)),
        (dict(side="sell", mode="shares", value="", sell_all="1"), dict(side="sell", sell_all=True)),
    ],
)
def test_quote_fragment_matches_the_quote_service(home, fields, request_kwargs):
    """Show the same cost or proceeds, shares, average price and probability after as services.quote, and pin them in hidden inputs."""
    alice = user("alice")
    market = make_market()
    service_buy(alice, market, "yes", 8)
    fill = services.quote(market=market, request=TradeRequest(outcome="yes", **request_kwargs), user=alice)
    response = post_quote(client_for(alice), market, form(**fields))
    assert response.status_code == 200
    body = response.content.decode()
    assert quoted(body)["amount"] == fmt(fill.amount_micro)
    assert quoted(body)["shares"] == fmt(fill.shares_micro)
    assert quoted(body)["average-price"] == f"{fill.average_price:.4f}"
    assert quoted(body)["probability-after"] == f"{fill.probabilities_after[0]:.6f}"
    bound = "max_cost" if fill.side == "buy" else "min_proceeds"
    assert hidden(body)[bound] == fmt(fill.amount_micro)
    assert hidden(body)["quoted_shares"] == fmt(fill.shares_micro)
    verb = "Buy" if fill.side == "buy" else "Sell"
    assert text(by_id(body, "ticket-confirm")) == f"{verb} {cr(fill.shares_micro)} Yes for {cr(fill.amount_micro)} cr"
    if fill.side == "buy":
        assert quoted(body)["max-payout"] == fmt(fill.shares_micro)
    assert '<div id="ticket-message" class="ticket__message" aria-live="polite" hx-swap-oob="true"></div>' in body


def test_quote_with_no_value_asks_for_one_without_error(home):
    """Answer an empty value with the prompt and the review button, not a quote."""
    alice = user("alice")
    market = make_market()
    body = post_quote(client_for(alice), market, form(value="")).content.decode()
    assert "Enter an amount to see the price" in body and has_id(body, "ticket-review")
    assert not has_id(body, "ticket-confirm")


# --- trading through the ticket -----------------------------------------------


def test_buying_through_the_ticket_matches_the_service_and_updates_the_page_out_of_band(home):
    """Buy the quoted shares at the quoted cost, and return a fresh ticket plus out-of-band balance, odds, position and trades."""
    alice = user("alice")
    market = make_market()
    c = client_for(alice)
    fill = services.quote(market=market, request=TradeRequest(outcome="yes", side="buy", amount_micro=25 * M), user=alice)
    fields = quote_then_fields(c, market, form(value="25", key="ticket-abc"))
    response = post_trade(c, market, fields)
    assert response.status_code == 200
    assert json.loads(response["HX-Trigger"]) == {"bellwether:traded": {"trade_id": Trade.objects.get().pk}}
    assert balance(alice) == START - fill.amount_micro
    position = Position.objects.get(user=alice)
    assert (position.shares_micro, position.cost_basis_micro) == (fill.shares_micro, fill.amount_micro)
    assert Outcome.objects.get(market=market, slug="yes").shares_micro == fill.shares_micro
    assert IdempotencyKey.objects.get().key == "ticket-abc"
    body = response.content.decode()
    assert message(body) == f"Bought {cr(fill.shares_micro)} Yes for {cr(fill.amount_micro)} cr."
    ticket = by_id(body, "trade-ticket")
    assert hidden(ticket)["idempotency_key"] not in ("", "ticket-abc")
    assert 'id="ticket-value" name="value" type="number" inputmode="decimal" min="0" step="any" autocomplete="off"\n               placeholder="0.00" value=""' in ticket
    chip = by_id(body, "nav-balance")
    assert 'hx-swap-oob="true"' in chip and 'class="balance-chip"' in chip and 'href="/portfolio/"' in chip
    assert text(chip) == f"{cr(START - fill.amount_micro)} cr"
    odds = by_id(body, "market-probabilities")
    assert 'hx-swap-oob="true"' in odds
    assert f'data-outcome="yes" data-probability="{fill.probabilities_after[0]:.6f}"' in odds
    mine = by_id(body, "your-position")
    assert 'hx-swap-oob="true"' in mine and f'data-field="shares">{cr(fill.shares_micro)}<' in mine
    trades = by_id(body, "recent-trades")
    assert 'hx-swap-oob="true"' in trades and f"alice Buy Yes {cr(fill.shares_micro)} {cr(fill.amount_micro)} cr" in text(trades)


def test_selling_all_through_the_ticket(home):
    """Sell every share held for the quoted proceeds, credited exactly."""
    alice = user("alice")
    market = make_market()
    service_buy(alice, market, "no", 10)
    c = client_for(alice)
    cash = balance(alice)
    fill = services.quote(market=market, request=TradeRequest(outcome="no", side="sell", sell_all=True), user=alice)
    fields = quote_then_fields(c, market, form(outcome="no", side="sell", mode="shares", value="", sell_all="1"))
    assert fields["min_proceeds"] == fmt(fill.amount_micro)
    response = post_trade(c, market, fields)
    assert message(response.content.decode()) == f"Sold 10.00 No for {cr(fill.amount_micro)} cr."
    assert balance(alice) == cash + fill.amount_micro
    assert Position.objects.get(user=alice).shares_micro == 0


def test_a_price_move_between_quote_and_confirm_refuses_and_requotes(home):
    """Refuse a confirm after another trader moved the price (max_cost), change nothing, and show the new quote."""
    alice, bob = user("alice"), user("bob")
    market = make_market()
    c = client_for(alice)
    fields = quote_then_fields(c, market, form(mode="shares", value="10"))
    service_buy(bob, market, "yes", 40)
    before = snapshot()
    response = post_trade(c, market, fields)
    assert response.status_code == 200
    assert snapshot() == before
    body = response.content.decode()
    assert message(body) == "The price moved since your quote, so nothing was traded. Here is the new quote: confirm again if it still suits you."
    fresh = services.quote(market=market, request=TradeRequest(outcome="yes", side="buy", shares_micro=10 * M), user=alice)
    assert hidden(body)["max_cost"] == fmt(fresh.amount_micro) != fields["max_cost"]
    assert hidden(body)["idempotency_key"] == fields["idempotency_key"]
    again = post_trade(c, market, {**fields, **hidden(body)})
    assert message(again.content.decode()).startswith("Bought 10.00 Yes")
    assert balance(alice) == START - fresh.amount_micro


def test_a_price_move_on_a_sell_is_refused_by_min_proceeds(home):
    """Refuse a sell whose proceeds fell below the quote, changing nothing."""
    alice, bob = user("alice"), user("bob")
    market = make_market()
    service_buy(alice, market, "yes", 10)
    c = client_for(alice)
    fields = quote_then_fields(c, market, form(side="sell", mode="shares", value="10"))
    service_buy(bob, market, "no", 40)
    before = snapshot()
    body = post_trade(c, market, fields).content.decode()
    assert snapshot() == before
    assert message(body).startswith("The price moved since your quote")


def test_an_amount_buy_is_pinned_to_the_quoted_shares(home):
    """Confirm an amount buy as the quoted number of shares, so a price rise is refused rather than filled with fewer shares."""
    alice, bob = user("alice"), user("bob")
    market = make_market()
    c = client_for(alice)
    fields = quote_then_fields(c, market, form(mode="amount", value="20"))
    service_buy(bob, market, "yes", 30)
    before = snapshot()
    assert message(post_trade(c, market, fields).content.decode()).startswith("The price moved")
    assert snapshot() == before


def test_double_submit_with_one_key_trades_once(home):
    """Trade once when the same confirmed ticket is posted twice; the second answer says it was already done."""
    alice = user("alice")
    market = make_market()
    c = client_for(alice)
    fields = quote_then_fields(c, market, form(mode="shares", value="10", key="ticket-double"))
    first = post_trade(c, market, fields)
    after_first = snapshot()
    second = post_trade(c, market, fields)
    assert snapshot() == after_first
    assert Trade.objects.count() == 1
    amount = Trade.objects.get().amount_micro
    assert message(first.content.decode()) == f"Bought 10.00 Yes for {cr(amount)} cr."
    assert message(second.content.decode()) == f"Already done: bought 10.00 Yes for {cr(amount)} cr. That ticket was sent twice and traded once."


def test_one_key_replays_the_same_trade_through_the_api_and_the_ticket(home):
    """Answer a key used by the API through the ticket, and a key used by the ticket through the API, as the one trade it made."""
    from bellwether.accounts.services import create_token

    alice = user("alice")
    market = make_market()
    c = client_for(alice)
    _, token = create_token(user=alice, name="bot")
    fields = quote_then_fields(c, market, form(mode="shares", value="10", key="shared-1"))
    body = {"outcome": "yes", "side": "buy", "shares": fields["quoted_shares"], "max_cost": fields["max_cost"]}
    api = c.post(
        f"/api/v1/markets/{market.slug}/trades", body, content_type="application/json",
        HTTP_AUTHORIZATION=f"Bearer {token}", HTTP_IDEMPOTENCY_KEY="shared-1",
    )
    assert api.status_code == 201
    after = snapshot()
    amount = Trade.objects.get().amount_micro
    replayed = post_trade(c, market, fields)
    assert replayed.status_code == 200
    assert message(replayed.content.decode()) == f"Already done: bought 10.00 Yes for {cr(amount)} cr. That ticket was sent twice and traded once."
    fields = quote_then_fields(c, market, form(mode="shares", value="4", key="shared-2"))
    assert "Bought 4.00 Yes" in message(post_trade(c, market, fields).content.decode())
    second = Trade.objects.order_by("-id").first()
    body = {"outcome": "yes", "side": "buy", "shares": fields["quoted_shares"], "max_cost": fields["max_cost"]}
    again = c.post(
        f"/api/v1/markets/{market.slug}/trades", body, content_type="application/json",
        HTTP_AUTHORIZATION=f"Bearer {token}", HTTP_IDEMPOTENCY_KEY="shared-2",
    )
    assert again.status_code == 201 and again["Idempotent-Replayed"] == "true"
    data = again.json()
    assert (data["trade_id"], data["shares"], data["amount"]) == (second.pk, "4.000000", fmt(second.amount_micro))
    assert "replayed" not in data
    assert data["position"] == {"shares": "14.000000", "cost_basis": fmt(amount + second.amount_micro)}
    assert Trade.objects.count() == 2 and snapshot()["trades"] == after["trades"] + 1


def test_a_reused_key_for_a_different_trade_is_refused(home):
    """Refuse a different trade under a used key, change nothing, and hand out a fresh key."""
    alice = user("alice")
    market = make_market()
    c = client_for(alice)
    post_trade(c, market, quote_then_fields(c, market, form(mode="shares", value="10", key="ticket-reuse")))
    before = snapshot()
    other = quote_then_fields(c, market, form(mode="shares", value="3", key="ticket-reuse"))
    body = post_trade(c, market, other).content.decode()
    assert snapshot() == before
    assert message(body) == "This ticket was already used for a different trade, so nothing was traded. The ticket is fresh now: check the quote and confirm again."
    assert hidden(body)["idempotency_key"] not in ("", "ticket-reuse")


def test_a_trade_without_a_matching_quote_is_quoted_for_review_not_traded(home):
    """Answer a trade post without a quote, or with a quote for other choices, with a quote to confirm; nothing trades."""
    alice = user("alice")
    market = make_market()
    c = client_for(alice)
    before = snapshot()
    body = post_trade(c, market, form(mode="shares", value="10")).content.decode()
    assert message(body) == "Check the quote, then confirm."
    assert hidden(body)["quote_for"] == "yes|buy|shares|10" and has_id(body, "ticket-confirm")
    stale = quote_then_fields(c, market, form(mode="shares", value="10"))
    body = post_trade(c, market, {**stale, "value": "11"}).content.decode()
    assert hidden(body)["quote_for"] == "yes|buy|shares|11"
    assert snapshot() == before


def test_without_javascript_the_form_reviews_then_trades_and_redirects_with_a_message(home):
    """Without htmx: a first post re-renders the page with the quote; the confirm redirects back and shows the message there."""
    alice = user("alice")
    market = make_market()
    c = client_for(alice)
    review = post_trade(c, market, form(mode="shares", value="10"), htmx=False)
    assert review.status_code == 200 and Trade.objects.count() == 0
    page = review.content.decode()
    assert has_id(page, "market-probabilities") and has_id(page, "ticket-confirm")
    fields = {**form(mode="shares", value="10"), **hidden(by_id(page, "trade-ticket"))}
    done = post_trade(c, market, fields, htmx=False)
    assert done.status_code == 302 and done["Location"] == f"/markets/{market.slug}/?outcome=yes"
    amount = Trade.objects.get().amount_micro
    shown = c.get(done["Location"]).content.decode()
    assert text(by_id(shown, "messages")) == f"Bought 10.00 Yes for {cr(amount)} cr."


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        (dict(value=""), "Enter an amount in credits."),
        (dict(mode="shares", value=""), "Enter a number of shares."),
        (dict(value="-5"), "Amount must be greater than zero."),
        (dict(value="0"), "Amount must be greater than zero."),
        (dict(value="1.1234567"), "Amount has more than 6 decimal places."),
        (dict(value="ten"), 'Amount must be a decimal string such as "12.5".'),
        (dict(mode="shares", value="1e400"), 'Shares must be a decimal string such as "12.5".'),
        (dict(mode="shares", value="10000000000"), "Shares is too large (at most 1000000000)."),
        (dict(side="sell", mode="shares", value="5"), "You hold 0.000000 shares, cannot sell 5.000000."),
        (dict(side="sell", value="", sell_all="1"), "You hold no shares of this outcome."),
        (dict(mode="shares", value="5000"), None),
    ],
)
def test_invalid_input_is_explained_in_the_ticket(home, fields, expected):
    """Explain invalid input, over-selling and insufficient funds in #ticket-message, for quotes and trades, changing nothing."""
    alice = user("alice")
    market = make_market()
    c = client_for(alice)
    if expected is None:
        cost = services.quote(market=market, request=TradeRequest(outcome="yes", side="buy", shares_micro=5000 * M)).amount_micro
        expected = f"Not enough credits: this costs {fmt(cost)} credits and you have {fmt(START)}."
    before = snapshot()
    quote_body = post_quote(c, market, form(**fields)).content.decode()
    if fields.get("value") == "" and not fields.get("sell_all"):
        assert "Enter an amount to see the price" in quote_body  # typing nothing yet is not an error
    elif "5000" not in fields.get("value", ""):
        assert message(quote_body) == expected
        assert not has_id(quote_body, "ticket-confirm")
    trade_fields = form(**fields)
    if "5000" in fields.get("value", ""):
        # The quote is fine; the trade is refused when the money is checked.
        trade_fields = quote_then_fields(c, market, form(**fields))
    response = post_trade(c, market, trade_fields)
    assert response.status_code == 200
    assert message(response.content.decode()) == expected
    assert 'role="alert"' in by_id(response.content.decode(), "ticket-message")
    assert snapshot() == before


def test_a_market_closed_between_quote_and_confirm_refuses(home):
    """Refuse a confirm once the market has closed, say so, and show the closed notice instead of the form."""
    alice = user("alice")
    market = make_market()
    c = client_for(alice)
    fields = quote_then_fields(c, market, form(mode="shares", value="10"))
    Market.objects.filter(pk=market.pk).update(close_at=timezone.now() - dt.timedelta(seconds=1))
    before = snapshot()
    body = post_trade(c, market, fields).content.decode()
    assert snapshot() == before
    assert message(body) == "Trading is closed: the market closed for trading."
    assert "<form" not in by_id(body, "trade-ticket")
    assert message(post_quote(c, market, form()).content.decode()) == "Trading is closed: the market closed for trading."


def test_a_market_that_vanished_is_not_found(home):
    """Answer quotes and trades on an unknown market with a message for htmx and 404 otherwise."""
    alice = user("alice")
    c = client_for(alice)
    ghost = Market(slug="gone-market")
    assert message(post_quote(c, ghost, form()).content.decode()) == "This market no longer exists."
    assert message(post_trade(c, ghost, form()).content.decode()) == "This market no longer exists."
    assert post_trade(c, ghost, form(), htmx=False).status_code == 404
    assert post_quote(c, ghost, form(), htmx=False).status_code == 404


def test_anonymous_quotes_and_trades_are_refused(home):
    """Refuse anonymous quotes and trades: 403 for htmx, a redirect to log in otherwise; nothing changes."""
    market = make_market()
    before = snapshot()
    anonymous = Client()
    for post in (post_quote, post_trade):
        assert post(anonymous, market, form()).status_code == 403
        response = post(anonymous, market, form(), htmx=False)
        assert response.status_code == 302 and response["Location"] == f"/accounts/login/?next=%2Fmarkets%2F{market.slug}%2F"
    assert snapshot() == before


def test_csrf_is_enforced_on_quote_and_trade(home):
    """Refuse quote and trade posts without a CSRF token (403), changing nothing."""
    alice = user("alice")
    market = make_market()
    c = client_for(alice, enforce_csrf_checks=True)
    before = snapshot()
    fields = {**form(mode="shares", value="10"), "quote_for": "yes|buy|shares|10", "quoted_shares": "10", "max_cost": "100"}
    assert post_quote(c, market, fields).status_code == 403
    assert post_trade(c, market, fields).status_code == 403
    assert post_trade(c, market, fields, htmx=False).status_code == 403
    assert snapshot() == before


def test_get_is_not_allowed_on_quote_and_trade(home):
    """Answer GET on the quote and trade URLs with 405."""
    alice = user("alice")
    market = make_market()
    c = client_for(alice)
    assert c.get(f"/markets/{market.slug}/quote/").status_code == 405
    assert c.get(f"/markets/{market.slug}/trade/").status_code == 405


# --- privacy -------------------------------------------------------------------


def test_readers_see_only_their_own_position_and_portfolio(home):
    """Show each reader their own position on the market page and in the portfolio, never another's."""
    alice, bob = user("alice"), user("bob")
    market = make_market()
    service_buy(alice, market, "yes", 7)
    service_buy(bob, market, "no", 3)
    bob_page = client_for(bob).get(f"/markets/{market.slug}/").content.decode()
    mine = by_id(bob_page, "your-position")
    assert re.findall(r'data-outcome="(\w+)"', mine) == ["no"]
    assert 'data-field="shares">3.00<' in mine and "7.00" not in mine
    bob_portfolio = client_for(bob).get("/portfolio/").content.decode()
    assert re.findall(r'<tr data-market="[^"]+" data-outcome="(\w+)">', bob_portfolio) == ["no"]
    alice_trade = Trade.objects.get(user=alice)
    assert f"trade #{alice_trade.pk}" not in bob_portfolio
    assert client_for(alice).get("/portfolio/?user=bob").content.decode().count('data-outcome="no"') == 0


# --- portfolio -------------------------------------------------------------


def test_portfolio_requires_login(home):
    """Send anonymous readers to log in."""
    response = Client().get("/portfolio/")
    assert response.status_code == 302 and response["Location"].startswith("/accounts/login/?next=/portfolio/")


def test_portfolio_empty_state(home):
    """Show the balance and empty states to a reader with no positions."""
    alice = user("alice")
    response = client_for(alice).get("/portfolio/")
    assert "no-store" in response["Cache-Control"]
    page = response.content.decode()
    assert text(by_id(page, "portfolio-balance")) == f"{cr(START)} cr"
    assert text(by_id(page, "portfolio-total")) == f"{cr(START)} cr"
    assert "No positions yet — browse the markets" in text(by_id(page, "open-positions"))
    assert 'href="/markets/"' in by_id(page, "open-positions")
    assert re.findall(r'data-kind="(\w+)"', by_id(page, "ledger")) == ["grant"]


def test_portfolio_values_positions_settlements_and_ledger(home):
    """Show cash, total value, open positions with value and P&L, settled markets with payouts, and signed ledger lines with a running balance."""
    alice, bob, rosa = user("alice"), user("bob"), user("rosa")
    open_market = make_market(question="Will the ferry run on Sunday?")
    settled_market = make_market(question="Will the bridge reopen?")
    buy = Trade.objects.get(pk=service_buy(alice, open_market, "yes", 10)["trade_id"])
    service_buy(bob, open_market, "yes", 30)  # the price rises: alice is up
    won = Trade.objects.get(pk=service_buy(alice, settled_market, "no", 5)["trade_id"])
    services.resolve_market(market_slug=settled_market.slug, by=rosa, outcome="no")
    page = client_for(alice).get("/portfolio/").content.decode()
    prices = selectors.market_odds(market=selectors.market_for_page(slug=open_market.slug))
    value = int(10 * M * prices[0]["probability"])
    cash = START - buy.amount_micro - won.amount_micro + 5 * M
    assert text(by_id(page, "portfolio-balance")) == f"{cr(cash)} cr"
    assert text(by_id(page, "portfolio-total")) == f"{cr(cash + value)} cr"
    row = text(by_id(page, "open-positions").split('data-outcome="yes">')[1].split("</tr>")[0])
    pnl = value - buy.amount_micro
    assert pnl > 0
    assert row == f"Will the ferry run on Sunday? Yes 10.00 {buy.amount_micro / (10 * M):.4f} {round(prices[0]['probability'] * 100)}% {cr(value)} +{cr(pnl)}"
    assert 'class="num pnl up"' in by_id(page, "open-positions")
    settled = text(by_id(page, "settled-positions").split("<tbody>")[1])
    assert settled == f"Will the bridge reopen? Resolved 5.00 No {cr(won.amount_micro)} 5.00 +{cr(5 * M - won.amount_micro)}"
    ledger = by_id(page, "ledger")
    assert re.findall(r'data-kind="(\w+)"', ledger) == ["payout", "buy", "buy", "grant"]
    amounts = re.findall(r'<td class="num amount (?:up|down)">([^<]+)</td>\s*<td class="num">([^<]+)</td>', ledger)
    assert amounts == [
        ("+5.00", cr(cash)),
        (f"{cr(-won.amount_micro)}", cr(cash - 5 * M)),
        (f"{cr(-buy.amount_micro)}", cr(START - buy.amount_micro)),
        (f"+{cr(START)}", cr(START)),
    ]
    assert f"(buy 10.00 Yes, trade #{buy.pk})" in text(ledger)
    assert f'href="/markets/{settled_market.slug}/"' in ledger


def test_portfolio_ledger_pages_carry_the_running_balance_across_pages(home):
    """Continue the running balance from one ledger page to the next."""
    alice = user("alice")
    market = make_market(b=1000)
    for _ in range(30):
        service_buy(alice, market, "yes", 1)
    c = client_for(alice)
    first = by_id(c.get("/portfolio/").content.decode(), "ledger")
    second = by_id(c.get("/portfolio/?page=2").content.decode(), "ledger")
    assert "Page 1 of 2" in text(first) and "Page 2 of 2" in text(second)
    balances_first = re.findall(r'<td class="num">([^<]+)</td>\s*</tr>', first)
    balances_second = re.findall(r'<td class="num">([^<]+)</td>\s*</tr>', second)
    assert len(balances_first) == 25 and len(balances_second) == 6
    lines = list(Transfer.objects.filter(debit__user=alice).order_by("-created_at", "-id"))
    after_page_one = START - sum(t.amount_micro for t in lines[25:])
    assert balances_second[0] == cr(after_page_one)
    assert balances_second[-1] == cr(START)
    assert balances_first[0] == cr(balance(alice))


# --- query counts ----------------------------------------------------------------


def _count(c: Client, url: str) -> int:
    with CaptureQueriesContext(connection) as ctx:
        assert c.get(url).status_code == 200
    return len(ctx.captured_queries)


def test_market_page_queries_do_not_grow_with_traders(home, django_assert_max_num_queries):
    """Run the same number of queries on the market page for 2 traders as for 20 (and for the chart JSON)."""
    small, large = make_market(question="Small market?"), make_market(question="Large market?", b=1000)
    for i in range(2):
        service_buy(user(f"s{i}"), small, "yes" if i % 2 else "no", 2)
    for i in range(20):
        service_buy(user(f"l{i}"), large, "yes" if i % 2 else "no", 2)
    viewer = user("viewer")
    service_buy(viewer, small, "yes", 1)
    service_buy(viewer, large, "yes", 1)
    c = client_for(viewer)
    _count(c, f"/markets/{small.slug}/")  # warm per-process caches (site root paths)
    assert _count(c, f"/markets/{small.slug}/") == _count(c, f"/markets/{large.slug}/")
    with django_assert_max_num_queries(16):
        c.get(f"/markets/{large.slug}/")
    assert _count(c, f"/markets/{small.slug}/chart.json") == _count(c, f"/markets/{large.slug}/chart.json")


def test_portfolio_queries_do_not_grow_with_positions(home, django_assert_max_num_queries):
    """Run the same number of queries on the portfolio for 2 positions as for 20 (each with a payout line)."""
    few, many = user("few"), user("many")
    markets = [make_market(question=f"Question number {i}?") for i in range(20)]
    for m in markets[:2]:
        service_buy(few, m, "yes", 1)
    for i, m in enumerate(markets):
        service_buy(many, m, "yes" if i == 0 else "no", 1)
    services.resolve_market(market_slug=markets[0].slug, by=few, outcome="yes")
    few_client, many_client = client_for(few), client_for(many)
    assert _count(few_client, "/portfolio/") == _count(many_client, "/portfolio/")
    with django_assert_max_num_queries(12):
        many_client.get("/portfolio/")


def test_trade_through_the_ticket_uses_a_fixed_number_of_queries(home):
    """Run as many queries for a ticket trade in a busy market as in a quiet one."""
    quiet, busy = make_market(question="Quiet?"), make_market(question="Busy?", b=1000)
    for i in range(20):
        service_buy(user(f"b{i}"), busy, "no", 1)
    alice = user("alice")
    c = client_for(alice)
    counts = []
    for m in (quiet, busy):
        fields = quote_then_fields(c, m, form(mode="shares", value="1", key=f"k-{m.pk}"))
        with CaptureQueriesContext(connection) as ctx:
            assert "Bought" in message(post_trade(c, m, fields).content.decode())
        counts.append(len(ctx.captured_queries))
        # Only what the answer re-renders is read: not the holders, nor the linked articles.
        assert not [q for q in ctx.captured_queries if "wagtailcore_page" in q["sql"] or "ROW_NUMBER" in q["sql"].upper()]
    assert counts[0] == counts[1]
