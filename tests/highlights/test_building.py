"""Building a weekly issue: the frozen sections, pins and drops, rebuilds, charts and query counts.

The world is made through the services (articles, markets, trades,
resolution); trades are then moved back in time with queryset updates, so
every price at the week's start and end is known.
"""

from __future__ import annotations

import datetime as dt
import io
import math
from dataclasses import dataclass

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from PIL import Image

from bellwether.accounts.services import create_user
from bellwether.highlights import charts
from bellwether.highlights.building import IssueAlreadySent, build_issue
from bellwether.highlights.models import Issue
from bellwether.markets import services
from bellwether.markets.models import Market, Trade
from bellwether.markets.services import TradeRequest
from bellwether.news.models import ArticlePage
from tests.news.factories import make_article

pytestmark = pytest.mark.django_db
M = 1_000_000
DAYS = dt.timedelta(days=1)
HOURS = dt.timedelta(hours=1)


def yes_price(shares: float, b: float = 100) -> float:
    """YES price of a binary LMSR market after ``shares`` net YES shares."""
    return 1 / (1 + math.exp(-shares / b))


def new_market(question: str, *, close_in=dt.timedelta(days=30), articles=None) -> Market:
    market = services.create_market(
        question=question, liquidity_b_micro=100 * M, close_at=timezone.now() + close_in, articles=articles,
    )
    Market.objects.filter(pk=market.pk).update(created_at=timezone.now() - 10 * DAYS)
    market.refresh_from_db()
    return market


def trade(user, market: Market, outcome: str, shares: int, *, ago: dt.timedelta) -> Trade:
    """Buy ``shares`` of ``outcome``, then date the trade ``ago`` before now (call in time order)."""
    services.place_trade(user=user, market_slug=market.slug, request=TradeRequest(outcome=outcome, side="buy", shares_micro=shares * M))
    latest = Trade.objects.filter(market=market).latest("id")
    Trade.objects.filter(pk=latest.pk).update(created_at=timezone.now() - ago)
    return latest


def make_insight(**fields) -> ArticlePage:
    """Publish an expert insight: tagged "insight", and of kind "insight" where articles have a kind."""
    article = make_article(tags=("insight",), **fields)
    if hasattr(ArticlePage, "kind"):
        ArticlePage.objects.filter(pk=article.pk).update(kind="insight")
        article.refresh_from_db()
    return article


@dataclass
class World:
    now: dt.datetime
    trader: object
    featured: ArticlePage
    two_markets: ArticlePage
    one_market: ArticlePage
    plain: ArticlePage
    old: ArticlePage
    insight: ArticlePage
    alpha: Market
    bravo: Market
    charlie: Market
    delta: Market


@pytest.fixture
def media(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path / "media"
    return settings.MEDIA_ROOT


@pytest.fixture
def world(home, media) -> World:
    """Articles and markets with a known week.

    featured    featured story, 2 days ago, no market
    two_markets 3 days ago, linked to alpha and bravo
    one_market  1 day ago, linked to alpha
    plain       4 days ago, no market
    old         9 days ago (before the week): never a headline
    insight     an expert insight, 2 days ago
    alpha   YES 10 shares 8 days ago, 60 more 2 days ago: YES moves from yes(10) to yes(70)
    bravo   NO 30 shares 1 day ago: YES moves from 50% to yes(-30)
    charlie closes in 3 days, no trades
    delta   YES 40 shares 3 days ago, resolved YES just now
    """
    now = timezone.now()
    trader = create_user(username="trader")
    featured = make_article(headline="Featured lead story", featured=True, published_at=now - 2 * DAYS)
    two = make_article(headline="Story with two markets", published_at=now - 3 * DAYS)
    one = make_article(headline="Story with one market", published_at=now - 1 * DAYS)
    plain = make_article(headline="Story without markets", published_at=now - 4 * DAYS)
    old = make_article(headline="Last week's story", published_at=now - 9 * DAYS)
    insight = make_insight(headline="An expert's view", published_at=now - 2 * DAYS)
    alpha = new_market("Will alpha happen?", articles=[two, one])
    bravo = new_market("Will bravo happen?", articles=[two])
    charlie = new_market("Will charlie happen?", close_in=3 * DAYS)
    delta = new_market("Will delta happen?")
    trade(trader, alpha, "yes", 10, ago=8 * DAYS)
    trade(trader, delta, "yes", 40, ago=3 * DAYS)
    trade(trader, alpha, "yes", 60, ago=2 * DAYS)
    trade(trader, bravo, "no", 30, ago=1 * DAYS)
    services.resolve_market(market_slug=delta.slug, by=trader, outcome="yes")
    return World(
        now=timezone.now(), trader=trader, featured=featured, two_markets=two, one_market=one, plain=plain, old=old,
        insight=insight, alpha=alpha, bravo=bravo, charlie=charlie, delta=delta,
    )


def titles(items) -> list[str]:
    return [item.get("title") or item.get("question") for item in items]


def test_sections_in_order(world):
    """An issue holds the week's headlines (featured, then most linked), insights, movers, closing, resolved and stats."""
    issue = build_issue(now=world.now)
    content = issue.content
    assert issue.status == Issue.Status.BUILT
    assert issue.number == 1
    assert issue.built_at == world.now
    assert issue.week_end == world.now and issue.week_start == world.now - 7 * DAYS
    assert issue.subject == "Weekly highlights: Featured lead story"
    assert titles(content["headlines"]) == [
        "Featured lead story", "Story with two markets", "Story with one market", "Story without markets",
    ]
    assert [h["market_count"] for h in content["headlines"]] == [0, 2, 1, 0]
    # alpha's week trade and bravo's for the two-market story; alpha's for the one-market story.
    assert [h["week_trades"] for h in content["headlines"]] == [0, 2, 1, 0]
    first = content["headlines"][0]
    assert first["key"] == f"article:{world.featured.pk}"
    assert first["url"] == world.featured.url
    assert first["section"] == "World"
    assert first["kind"] == "news"
    assert first["featured"] is True
    assert titles(content["insights"]) == ["An expert's view"]
    assert content["insights"][0]["kind"] == "insight"

    movers = content["movers"]
    assert [m["slug"] for m in movers] == [world.alpha.slug, world.bravo.slug]
    alpha = movers[0]
    assert alpha["outcome"] == "YES"
    assert alpha["start"] == pytest.approx(yes_price(10), abs=1e-4)
    assert alpha["end"] == pytest.approx(yes_price(70), abs=1e-4)
    assert alpha["change"] == pytest.approx(yes_price(70) - yes_price(10), abs=2e-4)
    assert alpha["chart"] == f"{world.alpha.slug}.png"
    assert alpha["series"][0] == pytest.approx(yes_price(10), abs=1e-4)
    assert alpha["series"][-1] == pytest.approx(yes_price(70), abs=1e-4)
    assert alpha["week_trades"] == 1
    assert movers[1]["change"] == pytest.approx(yes_price(-30) - 0.5, abs=2e-4)

    assert [(m["slug"], m["probability"]) for m in content["closing_soon"]] == [(world.charlie.slug, 0.5)]
    resolved = content["resolved"]
    assert len(resolved) == 1
    assert resolved[0]["slug"] == world.delta.slug
    assert resolved[0]["result"] == "YES"
    assert resolved[0]["winner"] == "yes"
    assert resolved[0]["price_before"] == round(yes_price(40), 4)
    assert resolved[0]["called"] is True

    week_trades = Trade.objects.filter(created_at__gt=world.now - 7 * DAYS)
    assert content["stats"] == {
        "trades": 3,
        "volume_micro": sum(week_trades.values_list("amount_micro", flat=True)),
        "traders": 1,
        "markets_traded": 3,
        "new_markets": 0,
        "resolved": 1,
    }


def test_pins_and_drops(world):
    """Pinned items come first in their section, dropped ones are gone, and the intro is stored."""
    issue = build_issue(
        now=world.now, intro="Hello readers.",
        pinned=[f"article:{world.old.pk}", f"article:{world.plain.pk}", f"market:{world.bravo.pk}"],
        dropped=[f"article:{world.featured.pk}", f"market:{world.charlie.pk}"],
    )
    assert issue.intro == "Hello readers."
    assert titles(issue.content["headlines"]) == [
        "Last week's story", "Story without markets", "Story with two markets", "Story with one market",
    ]
    assert [m["slug"] for m in issue.content["movers"]] == [world.bravo.slug, world.alpha.slug]
    assert issue.content["closing_soon"] == []
    assert issue.subject == "Weekly highlights: Last week's story"


def test_frozen_until_rebuilt(world):
    """More trading leaves a built issue as it was; rebuilding an unsent issue takes the new prices."""
    issue = build_issue(now=world.now)
    before = issue.content
    trade(world.trader, world.alpha, "no", 100, ago=dt.timedelta(seconds=1))
    issue.refresh_from_db()
    assert issue.content == before
    later = timezone.now()
    rebuilt = build_issue(issue=issue, now=later)
    assert rebuilt.pk == issue.pk and rebuilt.number == 1
    assert rebuilt.built_at == later
    alpha = next(m for m in rebuilt.content["movers"] if m["slug"] == world.alpha.slug)
    assert alpha["end"] == pytest.approx(yes_price(-30), abs=1e-4)


def test_sent_issue_is_never_rebuilt(world):
    """Rebuilding a sent (or sending) issue is refused and its content stays."""
    issue = build_issue(now=world.now)
    for status in (Issue.Status.SENDING, Issue.Status.SENT):
        Issue.objects.filter(pk=issue.pk).update(status=status)
        with pytest.raises(IssueAlreadySent, match=f"issue #1 is {status}"):
            build_issue(number=1, now=timezone.now(), intro="changed")
        stored = Issue.objects.get(pk=issue.pk)
        assert stored.content == issue.content and stored.intro == ""


def test_next_number(world):
    """A new issue takes the next number; building by an existing number rebuilds it."""
    first = build_issue(now=world.now)
    second = build_issue(now=world.now)
    again = build_issue(now=world.now, number=2)
    assert (first.number, second.number, again.pk) == (1, 2, second.pk)
    assert Issue.objects.count() == 2


def _busy_world(count: int, *, trader):
    now = timezone.now()
    for i in range(count):
        article = make_article(headline=f"Busy story {count}-{i}", published_at=now - (i % 6 + 1) * HOURS)
        market = new_market(f"Busy market {count}-{i}?", articles=[article], close_in=(2 + i % 3) * DAYS)
        trade(trader, market, "yes", 5 + i, ago=(i % 5 + 1) * HOURS)
        trade(trader, market, "no", 2, ago=dt.timedelta(minutes=10))


def test_query_count_does_not_grow(home, media):
    """Building costs the same number of queries with 3 markets as with 12."""
    trader = create_user(username="busy")
    _busy_world(3, trader=trader)
    with CaptureQueriesContext(connection) as small:
        build_issue(now=timezone.now())
    _busy_world(9, trader=trader)
    with CaptureQueriesContext(connection) as large:
        issue = build_issue(now=timezone.now())
    assert len(issue.content["movers"]) == 5 and len(issue.content["headlines"]) == 8
    assert len(large.captured_queries) == len(small.captured_queries)


# --- charts ------------------------------------------------------------------


def _line_y(image: Image.Image, x: int, colour) -> float:
    """Return the mean y of the pixels in column ``x`` nearest the line colour."""
    rgb = image.convert("RGB")
    ys = [y for y in range(image.height) if sum(abs(a - b) for a, b in zip(rgb.getpixel((x, y)), colour)) < 60]
    assert ys, f"no line pixel in column {x}"
    return sum(ys) / len(ys)


def test_chart_png_follows_the_data():
    """The chart decodes as a PNG of the stored size, and its line sits where the data says."""
    series = [0.2, 0.25, 0.3, 0.5, 0.7, 0.8]
    image = Image.open(io.BytesIO(charts.render_chart(series)))
    assert image.format == "PNG"
    assert image.size == (charts.WIDTH, charts.HEIGHT)
    x_start = round(charts.plot_x(0, len(series))) + 6
    x_end = round(charts.plot_x(len(series) - 1, len(series))) - 6
    y_start, y_end = _line_y(image, x_start, charts.UP), _line_y(image, x_end, charts.UP)
    assert y_end < y_start  # a rising series ends higher up
    assert abs(y_start - charts.plot_y(0.2)) < 6
    assert abs(y_end - charts.plot_y(0.8)) < 6
    falling = Image.open(io.BytesIO(charts.render_chart(list(reversed(series)))))
    assert _line_y(falling, x_end, charts.DOWN) > _line_y(falling, x_start, charts.DOWN)


def test_chart_view_serves_stored_png(world):
    """Each mover's chart is stored at build and served as a PNG with a cache header; unknown charts are 404."""
    issue = build_issue(now=world.now)
    client = Client()
    response = client.get(f"/highlights/{issue.number}/charts/{world.alpha.slug}.png")
    assert response.status_code == 200
    assert response["Content-Type"] == "image/png"
    assert response["Cache-Control"] == "public, max-age=3600"
    body = b"".join(response.streaming_content)
    assert Image.open(io.BytesIO(body)).size == (charts.WIDTH, charts.HEIGHT)
    Issue.objects.filter(pk=issue.pk).update(status=Issue.Status.SENT)
    response = client.get(f"/highlights/{issue.number}/charts/{world.alpha.slug}.png")
    assert response["Cache-Control"] == "public, max-age=31536000, immutable"
    assert b"".join(response.streaming_content) == body
    assert client.get(f"/highlights/{issue.number}/charts/{world.charlie.slug}.png").status_code == 404
    assert client.get(f"/highlights/99/charts/{world.alpha.slug}.png").status_code == 404


def test_insight_names_its_expert_and_forecasts(world):
    """An expert insight carries its expert (name, credentials, profile) and the forecasts it stated."""
    from bellwether.news.models import Person

    Person.objects.filter(name="Ada Quill").update(is_expert=True, credentials="Professor of Harbours")
    services.link_article(market=world.charlie, article=world.insight)
    services.record_expert_forecast(article=world.insight, market=world.charlie, outcome="yes", probability=0.3)
    insight = build_issue(now=world.now).content["insights"][0]
    ada = Person.objects.get(name="Ada Quill")
    assert insight["expert"] == {"name": "Ada Quill", "credentials": "Professor of Harbours", "url": ada.get_absolute_url()}
    assert insight["forecasts"] == [{
        "market": world.charlie.slug, "question": "Will charlie happen?", "url": world.charlie.get_absolute_url(),
        "outcome": "yes", "probability": 0.3, "stated_at": world.insight.published_at.astimezone(dt.timezone.utc).isoformat(),
    }]
