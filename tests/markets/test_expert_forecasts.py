"""Expert forecasts: recorded through the service, shown on the market page, loaded with the demo."""

from __future__ import annotations

import datetime as dt
import math

import pytest
from django.db import IntegrityError, transaction
from django.utils import timezone

from bellwether.accounts.services import create_user
from bellwether.markets import selectors, services
from bellwether.markets.models import ExpertForecast, Market
from bellwether.markets.exceptions import InvalidForecast
from bellwether.markets.services import TradeRequest
from bellwether.news.models import Person
from tests.news.factories import make_article

pytestmark = pytest.mark.django_db

M = 1_000_000
PUBLISHED = dt.datetime(2026, 11, 12, 9, 30, tzinfo=dt.timezone.utc)


def make_market(question="Will the harbour strike end by Friday?", **fields) -> Market:
    fields.setdefault("close_at", timezone.now() + dt.timedelta(days=30))
    return services.create_market(question=question, liquidity_b_micro=100 * M, **fields)


def make_insight(**fields):
    fields.setdefault("kind", "insight")
    fields.setdefault("authors", ())
    fields.setdefault("expert", "Dr. Jo Marr")
    fields.setdefault("credentials", "Professor of Political Science, Nowhere University")
    fields.setdefault("published_at", PUBLISHED)
    return make_article(**fields)


@pytest.fixture
def linked(home):
    """An insight and a binary market linked to it."""
    article, market = make_insight(), make_market()
    services.link_article(market=market, article=article)
    return article, market


# --- the service ----------------------------------------------------------------


def test_record_defaults_to_the_insights_expert_and_publication_time(linked):
    """With no expert or time given, the forecast is the insight's expert's, stated when the insight was published."""
    article, market = linked
    forecast = services.record_expert_forecast(article=article, market=market, outcome="yes", probability="0.3")
    assert forecast.expert == Person.objects.get(name="Dr. Jo Marr")
    assert (forecast.outcome.slug, forecast.probability, forecast.stated_at) == ("yes", 0.3, PUBLISHED)


def test_recording_again_revises_the_same_row(linked):
    """One row per insight, market and outcome: a second statement updates it, with the time given."""
    article, market = linked
    services.record_expert_forecast(article=article, market=market, outcome="yes", probability=0.3)
    later = PUBLISHED + dt.timedelta(days=2)
    services.record_expert_forecast(article=article, market=market, outcome="yes", probability=0.45, stated_at=later)
    assert list(ExpertForecast.objects.values_list("probability", "stated_at")) == [(0.45, later)]


@pytest.mark.parametrize("probability", [0, 1, 0.0, 1.0, -0.2, 1.5, math.nan, "abc", None])
def test_probability_outside_zero_to_one_is_refused(linked, probability):
    """0, 1, anything outside them, NaN and non-numbers are refused and nothing is stored."""
    article, market = linked
    with pytest.raises(InvalidForecast):
        services.record_expert_forecast(article=article, market=market, outcome="yes", probability=probability)
    assert ExpertForecast.objects.count() == 0


def test_message_for_a_bad_probability(linked):
    """The refusal says what the range is."""
    article, market = linked
    with pytest.raises(InvalidForecast, match=r"^probability must be between 0 and 1 \(exclusive\), got 1.2$"):
        services.record_expert_forecast(article=article, market=market, outcome="yes", probability=1.2)


def test_market_not_linked_to_the_insight_is_refused(linked):
    """A forecast on a market the insight is not linked to is refused."""
    article, _ = linked
    other = make_market(question="Will the ferry run on Sunday?")
    with pytest.raises(InvalidForecast, match=r"^market '.*' is not linked to the article 'Story number \d+'$"):
        services.record_expert_forecast(article=article, market=other, outcome="yes", probability=0.3)
    assert ExpertForecast.objects.count() == 0


def test_outcome_must_belong_to_the_market(linked):
    """An unknown outcome slug, or another market's outcome, is refused."""
    article, market = linked
    other = make_market(question="Will the ferry run on Sunday?")
    with pytest.raises(InvalidForecast, match=r"has no outcome 'maybe'$"):
        services.record_expert_forecast(article=article, market=market, outcome="maybe", probability=0.3)
    with pytest.raises(InvalidForecast, match=r"^outcome 'yes' belongs to another market$"):
        services.record_expert_forecast(article=article, market=market, outcome=other.outcomes.get(slug="yes"), probability=0.3)


def test_news_story_needs_an_explicit_expert(home):
    """A news story has no expert of its own, so a forecast on it needs one named."""
    article, market = make_article(), make_market()
    services.link_article(market=market, article=article)
    with pytest.raises(InvalidForecast, match=r"^no expert"):
        services.record_expert_forecast(article=article, market=market, outcome="yes", probability=0.3)
    expert = Person.objects.create(name="Outside Voice", slug="outside-voice", is_expert=True)
    forecast = services.record_expert_forecast(article=article, market=market, outcome="no", probability=0.7, expert=expert)
    assert forecast.expert == expert


def test_database_refuses_probability_one(linked):
    """The check constraint holds even for a write that skips the service."""
    article, market = linked
    with pytest.raises(IntegrityError), transaction.atomic():
        ExpertForecast.objects.create(
            article=article, market=market, outcome=market.outcomes.get(slug="yes"),
            expert=Person.objects.get(name="Dr. Jo Marr"), probability=1.0, stated_at=PUBLISHED,
        )


def test_stated_forecasts_are_recorded_by_question_or_slug(home):
    """Forecasts from front matter find their markets by question or slug; unknown or unlinked ones are reported."""
    market, second, unlinked = make_market(), make_market(question="Will the ferry run?"), make_market(question="Unlinked?")
    article = make_insight(forecasts=(
        {"question": market.question, "outcome": "yes", "probability": 0.3},
        {"question": second.slug, "outcome": "no", "probability": 0.8},
        {"question": "No such market?", "outcome": "yes", "probability": 0.5},
        {"question": unlinked.question, "outcome": "yes", "probability": 0.5},
    ))
    services.link_article(market=market, article=article)
    services.link_article(market=second, article=article)
    recorded, problems = services.record_stated_forecasts(article=article)
    assert [(f.market_id, f.outcome.slug, f.probability) for f in recorded] == [(market.pk, "yes", 0.3), (second.pk, "no", 0.8)]
    assert problems == ["no market 'No such market?'", f"market '{unlinked.slug}' is not linked to the article '{article.title}'"]


# --- the market page -------------------------------------------------------------


def test_market_page_shows_the_forecast_beside_the_price(client, linked):
    """The page names the expert (linked to the profile), their probability, when, the price now and the insight."""
    article, market = linked
    trader = create_user(username="trader", password="pw")
    services.place_trade(user=trader, market_slug=market.slug, request=TradeRequest(outcome="yes", side="buy", shares_micro=100 * M))
    services.record_expert_forecast(article=article, market=market, outcome="yes", probability=0.3)
    body = client.get(market.get_absolute_url()).content.decode()
    box = body[body.index('<section id="expert-forecasts"'):]
    box = box[: box.index("</section>")]
    assert '<a class="expert-forecast__name" href="/authors/dr-jo-marr/">Dr. Jo Marr</a>' in box
    assert '<strong class="num expert-forecast__pct">30%</strong>' in box
    assert '(stated <time datetime="2026-11-12T09:30:00+00:00">12 Nov 2026</time>)' in box
    # b = 100 and 100 YES shares sold: e / (e + 1) = 0.7311.
    assert '· market now <span class="num expert-forecast__market">73%</span>' in box
    assert "Professor of Political Science, Nowhere University" in box
    assert f'In <a href="{article.url}">{article.title}</a>' in box
    assert body.index('id="market-probabilities"') < body.index('id="expert-forecasts"') < body.index('id="market-chart"')


def test_market_page_without_forecasts_has_no_box(client, linked):
    """A market no expert has spoken on shows no expert box."""
    _, market = linked
    assert 'id="expert-forecasts"' not in client.get(market.get_absolute_url()).content.decode()


def test_forecasts_from_unpublished_insights_are_hidden(client, linked):
    """Unpublishing the insight takes its forecast off the market page."""
    article, market = linked
    services.record_expert_forecast(article=article, market=market, outcome="yes", probability=0.3)
    article.unpublish()
    assert 'id="expert-forecasts"' not in client.get(market.get_absolute_url()).content.decode()


@pytest.mark.parametrize("count", [1, 4])
def test_selector_is_one_query(home, count, django_assert_num_queries):
    """The market page's expert forecasts cost one query, however many insights spoke."""
    market = make_market()
    for i in range(count):
        article = make_insight(expert=f"Expert {i}", headline=f"Insight {i}", published_at=PUBLISHED + dt.timedelta(hours=i))
        services.link_article(market=market, article=article)
        services.record_expert_forecast(article=article, market=market, outcome="yes", probability=0.1 + i / 10)
    market = selectors.market_for_page(slug=market.slug)
    with django_assert_num_queries(1):
        rows = selectors.market_expert_forecasts(market=market)
    assert [(r["expert"].name, r["probability"], r["market_probability"]) for r in rows] == [
        (f"Expert {i}", 0.1 + i / 10, 0.5) for i in reversed(range(count))
    ]


# --- the demo ----------------------------------------------------------------------


def test_demo_load_records_the_insights_forecast(client, home):
    """Loading the demo records the insight's stated forecast on its market, and the market page shows it."""
    from bellwether.markets.demo import load_demo_markets
    from bellwether.news import services as news_services
    from bellwether.news.management.commands.demo import DEMO_CONTENT

    news_services.ingest_sources(sources=[str(DEMO_CONTENT)], default_section=("World",))
    load_demo_markets(content_dir=DEMO_CONTENT)
    forecast = ExpertForecast.objects.select_related("expert", "article", "outcome", "market").get()
    assert forecast.expert.name == "Dr. Anneliese Vorhoff"
    assert (forecast.outcome.slug, forecast.probability) == ("yes", 0.6)
    assert forecast.stated_at == dt.datetime(2026, 11, 20, 13, 0, tzinfo=dt.timezone.utc)
    assert forecast.article.source_key == "demo-insight-polling-uncertainty"
    assert forecast.market.question.startswith("Will any party's final vote share in the San Aurelio election")
    load_demo_markets(content_dir=DEMO_CONTENT)
    assert ExpertForecast.objects.count() == 1
    body = client.get(forecast.market.get_absolute_url()).content.decode()
    assert '<a class="expert-forecast__name" href="/authors/dr-anneliese-vorhoff/">Dr. Anneliese Vorhoff</a>' in body
    assert '<strong class="num expert-forecast__pct">60%</strong>' in body


# --- the admin -----------------------------------------------------------------------


@pytest.fixture
def admin_client(client):
    from django.contrib.auth import get_user_model

    admin = get_user_model().objects.create_superuser(username="boss", email="boss@example.org", password="pw")
    client.force_login(admin)
    return client


ADD_URL = "/admin/snippets/markets/expertforecast/add/"


def test_editor_adds_a_forecast_in_the_admin(admin_client, linked):
    """The admin form records a forecast, taking the expert and the time from the insight when left empty."""
    article, market = linked
    response = admin_client.post(ADD_URL, {
        "article": article.pk, "market": market.pk, "outcome": market.outcomes.get(slug="no").pk,
        "probability": "0.25", "expert": "", "stated_at": "",
    })
    assert response.status_code == 302, response.content.decode()[:2000]
    forecast = ExpertForecast.objects.get()
    assert (forecast.expert.name, forecast.outcome.slug, forecast.probability, forecast.stated_at) == ("Dr. Jo Marr", "no", 0.25, PUBLISHED)


@pytest.mark.parametrize(
    ("probability", "unlinked", "message"),
    [
        ("1.5", False, "probability must be between 0 and 1 (exclusive), got 1.5"),
        ("0.4", True, "is not linked to the article"),
    ],
)
def test_admin_refuses_what_the_service_refuses(admin_client, linked, probability, unlinked, message):
    """A bad probability or an unlinked market is shown as a form error and nothing is saved."""
    article, market = linked
    if unlinked:
        market = make_market(question="Will the ferry run on Sunday?")
    response = admin_client.post(ADD_URL, {
        "article": article.pk, "market": market.pk, "outcome": market.outcomes.get(slug="yes").pk,
        "probability": probability, "expert": "", "stated_at": "",
    })
    assert response.status_code == 200
    assert message in response.content.decode()
    assert ExpertForecast.objects.count() == 0


def test_editors_may_manage_expert_forecasts_in_the_admin():
    """The Editors group holds the add, change and delete permissions for expert forecasts (migration 0003)."""
    from bellwether.accounts.services import create_user

    editor = create_user(username="desk-editor", roles=("editor",))
    reader = create_user(username="plain-reader")
    for action in ("add", "change", "delete"):
        assert editor.has_perm(f"markets.{action}_expertforecast")
        assert not reader.has_perm(f"markets.{action}_expertforecast")
