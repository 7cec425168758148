"""The markets index and the market panels that news pages load (views/browse.py).

Markets are built through the services, then their trades are moved in time
with queryset updates, so every 24-hour change and sparkline is known.
"""

from __future__ import annotations

import datetime as dt
import math
import re

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from bellwether.accounts.services import create_user
from bellwether.markets import selectors, services
from bellwether.markets.models import Market, Trade
from bellwether.markets.services import TradeRequest
from bellwether.markets.templatetags.market_charts import sparkline, sparkline_points
from tests.news.factories import make_article

pytestmark = pytest.mark.django_db
M = 1_000_000
QUESTION = re.compile(r'class="mi-row__question" href="[^"]+">([^<]+)</a>')
PANEL_QUESTION = re.compile(r'class="mp-(?:row|card)__question" href="[^"]+">([^<]+)</a>')


def yes_price(shares: float, b: float = 100) -> float:
    """YES price of a binary LMSR market after ``shares`` YES shares (none of NO)."""
    return 1 / (1 + math.exp(-shares / b))


# --- building markets with a known history ---------------------------------


def new_market(question: str, *, close_in: dt.timedelta = dt.timedelta(days=30), outcomes=None, articles=None, status=Market.Status.OPEN) -> Market:
    market = services.create_market(
        question=question, outcomes=outcomes, liquidity_b_micro=100 * M, close_at=timezone.now() + close_in,
        articles=articles, status=status,
    )
    # Opened ten days ago, so the week of history is all there.
    Market.objects.filter(pk=market.pk).update(created_at=timezone.now() - dt.timedelta(days=10))
    return market


def trade(user, market: Market, outcome: str, shares: int, *, ago: dt.timedelta) -> Trade:
    """Buy ``shares`` of ``outcome``, then date the trade ``ago`` before now (call in time order)."""
    services.place_trade(user=user, market_slug=market.slug, request=TradeRequest(outcome=outcome, side="buy", shares_micro=shares * M))
    latest = Trade.objects.filter(market=market).latest("id")
    Trade.objects.filter(pk=latest.pk).update(created_at=timezone.now() - ago)
    return latest


def questions(html: str) -> list[str]:
    return QUESTION.findall(html)


HOURS = dt.timedelta(hours=1)
DAYS = dt.timedelta(days=1)


@pytest.fixture
def trader(db):
    return create_user(username="trader")


@pytest.fixture
def board(home, trader):
    """Markets with known volumes, moves, close dates and articles.

    Alpha  binary, closes in 3 days, YES 10 shares 3 days ago and 60 more 2 hours ago (moved +14 in 24h); Politics > Elections, Asia-Pacific, #elections
    Bravo  binary, closes in 20 days, YES 200 shares 2 days ago (the most volume, no 24h move); Business, Europe, #elections
    Charlie three outcomes, closes in 5 days, Green 30 shares 1 hour ago (leader, moved +7); Politics, Europe, #budget
    Delta  binary, closes in 40 days, no trades; linked only to an unpublished story in Science
    Echo   a draft market with a huge volume, linked to the Alpha story: never shown
    Foxtrot resolved YES; Golf cancelled later than Foxtrot resolved; Hotel closed, awaiting its result
    """
    elections = make_article(headline="Election story", section_path=("Politics", "Elections"), region="Asia-Pacific", tags=("elections",))
    business = make_article(headline="Business story", section_path=("Business",), region="Europe", tags=("elections",))
    budget = make_article(headline="Budget story", section_path=("Politics",), region="Europe", tags=("budget",))
    science = make_article(headline="Science draft", section_path=("Science",), region="Americas", tags=("space",))
    science.unpublish()

    alpha = new_market("Alpha question?", close_in=3 * DAYS, articles=[elections])
    trade(trader, alpha, "yes", 10, ago=3 * DAYS)
    trade(trader, alpha, "yes", 60, ago=2 * HOURS)
    bravo = new_market("Bravo question?", close_in=20 * DAYS, articles=[business])
    trade(trader, bravo, "yes", 200, ago=2 * DAYS)
    charlie = new_market("Charlie question?", close_in=5 * DAYS, outcomes=["Red", "Green", "Blue"], articles=[budget])
    trade(trader, charlie, "green", 30, ago=1 * HOURS)
    delta = new_market("Delta question?", close_in=40 * DAYS, articles=[science])
    echo = new_market("Echo draft question?", close_in=2 * DAYS, articles=[elections], status=Market.Status.DRAFT)
    Market.objects.filter(pk=echo.pk).update(volume_micro=10**6 * M, trade_count=999)

    foxtrot = new_market("Foxtrot question?", articles=[budget])
    trade(trader, foxtrot, "yes", 5, ago=4 * DAYS)
    services.resolve_market(market_slug=foxtrot.slug, by=None, outcome="yes")
    golf = new_market("Golf question?", articles=[budget])
    services.resolve_market(market_slug=golf.slug, by=None, cancel=True)
    Market.objects.filter(pk=foxtrot.pk).update(resolved_at=timezone.now() - 2 * DAYS)
    Market.objects.filter(pk=golf.pk).update(resolved_at=timezone.now() - 1 * DAYS)
    hotel = new_market("Hotel question?", articles=[budget])
    Market.objects.filter(pk=hotel.pk).update(close_at=timezone.now() - HOURS)
    return {"alpha": alpha, "bravo": bravo, "charlie": charlie, "delta": delta, "echo": echo,
            "elections": elections, "business": business, "budget": budget, "science": science}


# --- sparkline ---------------------------------------------------------------


def test_sparkline_points_for_known_probabilities():
    """Points spread evenly across the width; the highest value touches the top padding, the lowest the bottom."""
    assert sparkline_points([0.41, 0.57, 0.49]) == "0,29 60,3 120,16"
    assert sparkline_points([0.2, 0.8, 0.5, 0.5], width=90, height=30, pad=0, min_span=0) == "0,30 30,0 60,15 90,15"


def test_sparkline_keeps_a_minimum_vertical_span():
    """A two-point wobble stays near the middle instead of filling the box; a flat line sits in the middle."""
    assert sparkline_points([0.50, 0.52], width=100, height=20, pad=0) == "0,12 100,8"
    assert sparkline_points([0.3, 0.3, 0.3], width=100, height=20, pad=0) == "0,10 50,10 100,10"
    assert sparkline_points([0.0, 0.01], width=100, height=20, pad=0) == "0,20 100,18"


def test_sparkline_tag_renders_accessible_svg_without_styles():
    """The tag draws an SVG with role img, a spoken summary and a direction class, and no style attribute."""
    html = str(sparkline([0.41, 0.57, 0.49], label="YES"))
    assert html == (
        '<svg class="sparkline sparkline--up" viewBox="0 0 120 32" width="120" height="32" preserveAspectRatio="none" '
        'role="img" aria-label="YES 41% → 49% over 7 days" focusable="false"><polyline points="0,29 60,3 120,16"/></svg>'
    )
    assert "style" not in html
    assert 'class="sparkline sparkline--down"' in str(sparkline([0.6, 0.4], label="Green"))
    assert 'class="sparkline sparkline--flat"' in str(sparkline([0.5, 0.503], label="YES"))
    assert str(sparkline([], label="YES")) == ""


def test_history_points_take_the_last_trade_of_each_step():
    """Each step shows the last price at or before it; steps without trades repeat the price; the series ends at the last trade."""
    t0 = dt.datetime(2026, 11, 1, tzinfo=dt.timezone.utc)
    trades = [(t0 + 1 * HOURS, 0.55), (t0 + 2 * HOURS, 0.60), (t0 + 13 * HOURS, 0.45), (t0 + 14 * HOURS, 0.40)]
    series = selectors.history_points(trades=trades, start=t0, end=t0 + 24 * HOURS, step=6 * HOURS, start_value=0.5)
    assert series == [0.5, 0.60, 0.60, 0.40, 0.40]
    assert selectors.history_points(trades=[], start=t0, end=t0 + 13 * HOURS, step=6 * HOURS, start_value=0.25) == [0.25, 0.25, 0.25, 0.25]


# --- index: tabs, sorts, filters --------------------------------------------


def test_open_tab_lists_trading_markets_by_volume(client, board):
    """The default view: markets still trading, most traded first; drafts, closed and settled markets stay out."""
    response = client.get("/markets/")
    assert response.status_code == 200
    assert questions(response.content.decode()) == ["Bravo question?", "Alpha question?", "Charlie question?", "Delta question?"]


def test_sort_by_biggest_move_uses_the_24_hour_change(client, board):
    """Biggest move ranks by the size of the 24-hour change of YES (or the leader); ties go to volume."""
    html = client.get("/markets/?sort=move").content.decode()
    assert questions(html) == ["Alpha question?", "Charlie question?", "Bravo question?", "Delta question?"]


def test_sort_by_close_date_is_soonest_first(client, board):
    """Close date puts the soonest close first."""
    assert questions(client.get("/markets/?sort=close").content.decode()) == [
        "Alpha question?", "Charlie question?", "Bravo question?", "Delta question?",
    ]


def test_closing_soon_tab_lists_markets_closing_within_a_week(client, board):
    """Closing soon: trading markets closing in the next 7 days, soonest first."""
    assert questions(client.get("/markets/?tab=closing").content.decode()) == ["Alpha question?", "Charlie question?"]


def test_recently_resolved_tab_is_newest_first(client, board):
    """Resolved and cancelled markets, the most recently settled first, each with its result."""
    html = client.get("/markets/?tab=resolved").content.decode()
    assert questions(html) == ["Golf question?", "Foxtrot question?"]
    assert '<span class="mi-badge">Cancelled (N/A)</span>' in html
    assert '<span class="mi-badge">Resolved YES</span>' in html


def test_awaiting_result_tab_lists_closed_unresolved_markets(client, board):
    """A market past its close and not yet resolved has its own tab."""
    html = client.get("/markets/?tab=closed").content.decode()
    assert questions(html) == ["Hotel question?"]
    assert "awaiting result" in html


@pytest.mark.parametrize(
    "query, expected",
    [
        ("section=politics", ["Alpha question?", "Charlie question?"]),
        ("section=elections", ["Alpha question?"]),
        ("region=europe", ["Bravo question?", "Charlie question?"]),
        ("tag=elections", ["Bravo question?", "Alpha question?"]),
        ("section=politics&region=europe", ["Charlie question?"]),
        ("tag=elections&sort=move", ["Alpha question?", "Bravo question?"]),
        ("section=politics&tab=resolved", ["Golf question?", "Foxtrot question?"]),
    ],
)
def test_filters_follow_the_published_articles(client, board, query, expected):
    """Section (with its subsections), region and tag come from the markets' published articles, and combine."""
    assert questions(client.get(f"/markets/?{query}").content.decode()) == expected


def test_unpublished_articles_do_not_place_a_market_in_a_section(client, board):
    """Delta's only story is unpublished, so filtering by its section finds nothing, and says how to get out."""
    html = client.get("/markets/?section=science").content.decode()
    assert questions(html) == []
    assert "No markets match these filters" in html
    assert '<a href="/markets/" hx-get="/markets/" hx-target="#market-list" hx-push-url="true">Clear filters</a>' in html
    assert '<option value="science" selected>science</option>' in html  # the form still shows the filter in force


def test_filter_menus_offer_only_what_leads_to_a_market(client, board):
    """Sections, regions and tags appear in the menus only through published articles with markets."""
    html = client.get("/markets/").content.decode()
    assert '<option value="politics">Politics</option><option value="elections">– Elections</option>' in html
    assert '<option value="business">Business</option>' in html
    assert 'value="science"' not in html and 'value="americas"' not in html and 'value="space"' not in html
    assert '<option value="asia-pacific">Asia-Pacific</option><option value="europe">Europe</option>' in html


def test_rows_show_probability_change_and_sparkline(client, board):
    """A row shows the YES (or leader's) probability, the 24-hour change in points, volume, trades and the week's line."""
    html = client.get("/markets/").content.decode()
    alpha = html.split("Alpha question?")[1].split("</li>")[0]
    now = yes_price(70)
    assert round((now - yes_price(10)) * 100) == 14
    assert f'<strong class="mi-prob__value">{round(now * 100)}%</strong>' in alpha
    assert '<span class="change change--up"><span class="visually-hidden">24-hour change: </span>+14 pts' in alpha
    assert 'aria-label="YES 50% → 67% over 7 days"' in alpha
    assert "2 trades" in alpha
    charlie = html.split("Charlie question?")[1].split("</li>")[0]
    green = math.exp(0.3) / (math.exp(0.3) + 2)
    assert '<span class="mi-prob__label">Green</span>' in charlie
    assert f"{round((green - 1 / 3) * 100)}" == "7"
    assert "+7 pts" in charlie
    delta = html.split("Delta question?")[1].split("</li>")[0]
    assert '<span class="change change--flat"><span class="visually-hidden">24-hour change: </span>0 pts' in delta
    assert "0 trades" in delta


def test_twenty_four_hour_change_compares_with_the_last_trade_before_the_window(board):
    """The change is the current price minus the price after the last trade at least 24 hours old."""
    rows = {row.market.question: row for row in selectors.market_rows([board["alpha"].pk, board["bravo"].pk, board["charlie"].pk])}
    assert rows["Alpha question?"].change_24h == pytest.approx(yes_price(70) - yes_price(10), abs=1e-8)
    assert rows["Bravo question?"].change_24h == 0
    assert rows["Charlie question?"].change_24h == pytest.approx(math.exp(0.3) / (math.exp(0.3) + 2) - 1 / 3, abs=1e-8)
    assert rows["Charlie question?"].outcome.slug == "green"


def test_sparkline_history_holds_the_week(board):
    """The week's line starts at the price a week ago, steps through each 6 hours and ends at the current price."""
    row = selectors.market_rows([board["alpha"].pk])[0]
    assert row.history[0] == 0.5
    assert row.history[-1] == pytest.approx(yes_price(70), abs=1e-8)
    assert len(row.history) == 30  # the start, 28 six-hour steps after the whole hour a week ago, the end
    assert pytest.approx(yes_price(10), abs=1e-8) in row.history
    assert row.history.index(pytest.approx(yes_price(10), abs=1e-8)) == 17  # the step after the trade 3 days ago


def test_drafts_never_appear_anywhere(client, board):
    """A draft market, however busy, is on no tab, no filter, no panel."""
    pages = [f"/markets/?tab={tab}" for tab in selectors.INDEX_TABS] + [
        "/markets/?section=elections", "/markets/?sort=move", "/markets/panels/home/",
        f"/markets/panels/article/{board['elections'].pk}/", f"/markets/panels/section/{board['elections'].get_parent().pk}/",
    ]
    for url in pages:
        response = client.get(url)
        assert response.status_code == 200, url
        assert "Echo draft question?" not in response.content.decode(), url
    # The same pages do show it once it opens, so the check above can fail.
    services.open_market(market_slug=board["echo"].slug)
    assert "Echo draft question?" in client.get("/markets/").content.decode()
    assert "Echo draft question?" in client.get(f"/markets/panels/article/{board['elections'].pk}/").content.decode()


def test_empty_tabs_explain_themselves(client, home):
    """With no markets, each tab says what would appear there."""
    assert "No open markets yet." in client.get("/markets/").content.decode()
    assert "Nothing closes in the next 7 days." in client.get("/markets/?tab=closing").content.decode()
    assert "No market has been resolved yet." in client.get("/markets/?tab=resolved").content.decode()


def test_unknown_tab_and_sort_fall_back_to_the_defaults(client, board):
    """A mistyped tab or sort shows the open markets by volume rather than an error."""
    assert questions(client.get("/markets/?tab=nope&sort=sideways").content.decode()) == questions(client.get("/markets/").content.decode())


def test_controls_are_real_links_enhanced_with_htmx(client, board):
    """Tabs, sorts and filters work as plain links and a GET form, and carry htmx attributes aimed at the list."""
    html = client.get("/markets/?section=politics").content.decode()
    assert '<a href="/markets/?tab=closing&amp;section=politics" hx-get="/markets/?tab=closing&amp;section=politics" hx-target="#market-list" hx-push-url="true">Closing soon</a>' in html
    assert '<a href="/markets/?sort=move&amp;section=politics" hx-get="/markets/?sort=move&amp;section=politics" hx-target="#market-list" hx-push-url="true">Biggest move</a>' in html
    assert '<form id="market-filters" class="mi-filters" method="get" action="/markets/" hx-get="/markets/" hx-target="#market-list" hx-push-url="true" hx-trigger="change, submit">' in html
    assert '<div id="market-list" class="mi-results" aria-live="polite" data-last-trade="' in html
    assert '<option value="politics" selected>Politics</option>' in html


def test_htmx_request_gets_only_the_list_with_controls_out_of_band(client, board):
    """An htmx request gets the list and the refreshed controls (out of band); a history restore gets the page."""
    response = client.get("/markets/?tab=closing", HTTP_HX_REQUEST="true")
    html = response.content.decode()
    assert "<html" not in html and "<header" not in html.split('id="market-controls"')[0]
    assert questions(html) == ["Alpha question?", "Charlie question?"]
    assert '<div id="market-controls" class="mi-controls" hx-swap-oob="true">' in html
    assert "HX-Request" in response["Vary"]
    filtered = client.get("/markets/?section=politics&region=&tag=&sort=move", HTTP_HX_REQUEST="true")
    assert filtered["HX-Push-Url"] == "/markets/?sort=move&section=politics"
    restore = client.get("/markets/?tab=closing", HTTP_HX_REQUEST="true", HTTP_HX_HISTORY_RESTORE_REQUEST="true")
    assert "<html" in restore.content.decode()
    assert "hx-swap-oob" not in restore.content.decode()


def test_pagination_links_keep_the_view(client, home, trader):
    """Twenty markets a page; the next link keeps tab, sort and filters."""
    for n in range(23):
        new_market(f"Paged question {n:02d}?", close_in=(n + 1) * DAYS)
    first = client.get("/markets/?sort=close").content.decode()
    assert len(questions(first)) == 20
    assert "23 markets · page 1 of 2" in first
    assert 'rel="next" href="/markets/?sort=close&amp;page=2"' in first
    second = client.get("/markets/?sort=close&page=2").content.decode()
    assert questions(second) == ["Paged question 20?", "Paged question 21?", "Paged question 22?"]
    assert 'rel="prev" href="/markets/?sort=close&amp;page=1"' in second


def test_pages_are_never_cached(client, board):
    """The index and every panel send no-store, so neither browsers nor the page cache keep old prices."""
    for url in ["/markets/", "/markets/panels/home/", f"/markets/panels/article/{board['budget'].pk}/", f"/markets/panels/section/{board['budget'].get_parent().pk}/"]:
        assert "no-store" in client.get(url)["Cache-Control"], url


def _index_queries(client, url: str) -> int:
    with CaptureQueriesContext(connection) as ctx:
        response = client.get(url)
    assert response.status_code == 200
    return len(ctx.captured_queries)


@pytest.mark.parametrize("url", ["/markets/", "/markets/?sort=move", "/markets/?section=politics&tag=elections", "/markets/?tab=closing"])
def test_index_query_count_does_not_grow_with_markets(client, home, trader, url, django_assert_num_queries):
    """Three markets or thirty (two pages), each traded and linked: the same number of queries."""
    article = make_article(headline="Story with markets", section_path=("Politics",), tags=("elections",))

    def add(count: int) -> None:
        for n in range(count):
            market = new_market(f"Counted question {Market.objects.count()}?", close_in=(n + 1) * DAYS, articles=[article])
            trade(trader, market, "yes", 5, ago=2 * DAYS)
            trade(trader, market, "no", 3, ago=HOURS)

    add(3)
    few = _index_queries(client, url)
    add(27)
    with django_assert_num_queries(few):
        html = client.get(url).content.decode()
    assert len(questions(html)) == (10 if "closing" in url else 20)


# --- article panel -----------------------------------------------------------


@pytest.fixture
def story_market(home, trader):
    """A market traded before and after its article was published: YES 20 shares before, 40 more after."""
    market = new_market("Will the harbour strike end?")
    trade(trader, market, "yes", 20, ago=3 * DAYS)
    article = make_article(headline="Harbour strike enters second week", published_at=timezone.now() - 2 * DAYS)
    services.link_article(market=market, article=article)
    trade(trader, market, "yes", 40, ago=HOURS)
    return market, article


def test_article_panel_shows_the_move_since_publication_and_a_trade_link(client, story_market):
    """The panel shows the probability now, the change since the story was published in points, and a one-click trade link."""
    market, article = story_market
    html = client.get(f"/markets/panels/article/{article.pk}/").content.decode()
    since = yes_price(60) - yes_price(20)
    assert round(since * 100) == 10
    assert 'Since this article was published: <strong class="change change--up">+10 pts</strong>' in html
    assert f'<strong>{round(yes_price(60) * 100)}%</strong>' in html
    assert f'<a class="mp-trade" href="/markets/{market.slug}/?outcome=yes#trade-ticket">Trade YES</a>' in html
    assert PANEL_QUESTION.findall(html) == ["Will the harbour strike end?"]


def test_article_panel_trades_the_leader_of_a_multiple_choice_market(client, home, trader):
    """For several outcomes the panel shows the leader and its trade link opens that outcome."""
    article = make_article(headline="Who wins the vote", published_at=timezone.now() - DAYS)
    market = new_market("Who wins the vote?", outcomes=["Lee", "Park", "Kim"], articles=[article])
    trade(trader, market, "park", 25, ago=HOURS)
    html = client.get(f"/markets/panels/article/{article.pk}/").content.decode()
    park = math.exp(0.25) / (math.exp(0.25) + 2)
    assert '<span class="mp-row__label">Park</span>' in html
    assert f'Since this article was published: <strong class="change change--up">+{round((park - 1 / 3) * 100)} pts</strong>' in html
    assert f'href="/markets/{market.slug}/?outcome=park#trade-ticket">Trade Park</a>' in html


def test_article_panel_without_markets_is_just_a_comment(client, home, trader):
    """A story without markets, an unpublished story and a story with only a draft market all get an empty fragment."""
    plain = make_article(headline="No markets here")
    assert client.get(f"/markets/panels/article/{plain.pk}/").content.decode() == "<!-- no markets on this story -->"
    hidden = make_article(headline="Pulled story")
    new_market("Linked to a pulled story?", articles=[hidden])
    hidden.unpublish()
    assert client.get(f"/markets/panels/article/{hidden.pk}/").content.decode() == "<!-- no markets on this story -->"
    drafted = make_article(headline="Story with a draft market")
    new_market("Draft only?", articles=[drafted], status=Market.Status.DRAFT)
    assert client.get(f"/markets/panels/article/{drafted.pk}/").content.decode() == "<!-- no markets on this story -->"
    assert client.get("/markets/panels/article/999999/").content.decode() == "<!-- no markets on this story -->"


def test_article_panel_settled_market_has_no_trade_button(client, story_market):
    """After resolution the panel shows the result and links to it instead of offering a trade."""
    market, article = story_market
    services.resolve_market(market_slug=market.slug, by=None, outcome="no")
    html = client.get(f"/markets/panels/article/{article.pk}/").content.decode()
    assert '<span class="mi-badge">Resolved NO</span>' in html
    assert "#trade-ticket" not in html
    assert f'<a class="mp-trade mp-trade--quiet" href="/markets/{market.slug}/">See the result</a>' in html


@pytest.mark.parametrize("count", [1, 5])
def test_article_panel_query_count_is_constant(client, home, trader, count, django_assert_num_queries):
    """One market or five on a story: five queries (the newest trade id, links, markets with prices, outcomes, the week's trades)."""
    article = make_article(headline="Busy story", published_at=timezone.now() - 3 * DAYS)
    for n in range(count):
        market = new_market(f"Busy question {n}?", articles=[article])
        trade(trader, market, "yes", 5 + n, ago=2 * DAYS)
        trade(trader, market, "no", 2, ago=HOURS)
    with django_assert_num_queries(5):
        html = client.get(f"/markets/panels/article/{article.pk}/").content.decode()
    assert len(PANEL_QUESTION.findall(html)) == count


# --- home strip and section panel --------------------------------------------


def test_home_strip_lists_most_active_and_biggest_movers(client, board):
    """Most active counts this week's trades (then all-time); movers rank the 24-hour change and skip markets that did not move."""
    html = client.get("/markets/panels/home/").content.decode()
    active, movers = html.split('id="strip-movers"')
    assert PANEL_QUESTION.findall(active) == ["Alpha question?", "Bravo question?", "Charlie question?"]
    assert PANEL_QUESTION.findall(movers) == ["Alpha question?", "Charlie question?"]
    assert '<a class="mp-more" href="/markets/">All markets →</a>' in html


def test_home_strip_falls_back_to_all_time_activity(client, home, trader):
    """With no trades this week, the busiest markets of all time are the most active, and no one moved."""
    quiet = new_market("Quiet question?")
    busy = new_market("Busy question?")
    trade(trader, quiet, "yes", 5, ago=12 * DAYS)
    for _ in range(3):
        trade(trader, busy, "yes", 1, ago=11 * DAYS)
    html = client.get("/markets/panels/home/").content.decode()
    active = html.split('id="strip-movers"')[0]
    assert PANEL_QUESTION.findall(active) == ["Busy question?", "Quiet question?"]
    assert "No market moved in the last 24 hours." in html


def test_home_strip_is_empty_without_trading_markets(client, home):
    """No trading markets: the strip is only a comment, so the slot hides."""
    assert client.get("/markets/panels/home/").content.decode() == "<!-- no trading markets -->"


def test_section_panel_lists_markets_from_the_subtree(client, board):
    """A section shows trading markets linked to stories in it and its subsections, and links to the filtered index."""
    politics = board["budget"].get_parent()
    html = client.get(f"/markets/panels/section/{politics.pk}/").content.decode()
    assert PANEL_QUESTION.findall(html) == ["Alpha question?", "Charlie question?"]
    assert '<a class="mp-more" href="/markets/?section=politics">Browse markets in Politics →</a>' in html
    science = board["science"].get_parent()
    assert client.get(f"/markets/panels/section/{science.pk}/").content.decode() == "<!-- no trading markets in this section -->"


# --- the news pages load the panels -------------------------------------------


def test_news_pages_hold_lazy_market_containers(client, board):
    """Home, article and section pages carry containers that load their panels after the page, with a plain link meanwhile."""
    home_html = client.get("/").content.decode()
    assert '<section id="markets-strip" class="markets-slot" aria-label="Live markets" hx-get="/markets/panels/home/" hx-trigger="load" hx-swap="innerHTML">' in home_html
    article = board["elections"]
    article_html = client.get(article.url).content.decode()
    assert f'<section id="article-markets" class="markets-slot" aria-label="Forecasts on this story" hx-get="/markets/panels/article/{article.pk}/" hx-trigger="load" hx-swap="innerHTML">' in article_html
    assert '<a href="/markets/?tag=elections">See live forecasts on #elections in Markets →</a>' in article_html
    assert "Alpha question?" not in article_html  # prices arrive with the fragment, not in the cached page
    section = article.get_parent()
    section_html = client.get(section.url).content.decode()
    assert f'<section id="section-markets" class="markets-slot" aria-label="Markets in Elections" hx-get="/markets/panels/section/{section.pk}/" hx-trigger="load" hx-swap="innerHTML">' in section_html
    assert '<a href="/markets/?section=elections">Markets on Elections stories →</a>' in section_html
