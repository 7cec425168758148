"""Article kinds, experts and their profile pages: front matter, ingest, article page, author page."""

from __future__ import annotations

import datetime as dt

import pytest

from bellwether.news.ingest.markdown import parse_markdown
from bellwether.news.ingest.types import ParseError
from bellwether.news.models import ArticlePage, Person
from bellwether.news.services import ingest_sources, mark_expert
from tests.news.factories import make_article

FRONT = """---
title: "A headline"
section: "Politics > Elections"
authors: [Ada Quill]
{extra}
---
Body text.
"""


def parse(extra: str):
    return parse_markdown(FRONT.format(extra=extra), source_key="file:a.md")


# --- parsing ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("line", "kind"),
    [("", "news"), ("kind: news", "news"), ("kind: Analysis", "analysis"), ("kind: insight", "insight"), ("kind: expert insight", "insight")],
)
def test_kind_is_read_from_front_matter(line, kind):
    """`kind` is news, analysis or insight (case-insensitive, "expert insight" accepted); news when absent."""
    assert parse(line).kind == kind


def test_unknown_kind_is_refused_with_the_choices():
    """A kind outside the three is a parse error naming the allowed values."""
    with pytest.raises(ParseError, match=r"^'kind' must be one of news, analysis, insight, not 'opinion'$"):
        parse("kind: opinion")


def test_expert_credentials_and_forecasts_are_read():
    """Expert, credentials and forecasts come through; "30%" is 0.3 and a bare YAML yes is the outcome "yes"."""
    item = parse(
        'kind: insight\nexpert: "Dr. Jo Marr"\ncredentials: "Professor of Politics, Nowhere University"\n'
        "forecasts:\n"
        '  - {question: "Will it rain?", outcome: yes, probability: "30%"}\n'
        "  - {market: will-it-snow, outcome: no, probability: 0.85}\n"
        '  - {question: "Who wins?", probability: 0.4}\n'
    )
    assert item.expert == "Dr. Jo Marr"
    assert item.credentials == "Professor of Politics, Nowhere University"
    assert item.forecasts == (
        {"question": "Will it rain?", "outcome": "yes", "probability": 0.3},
        {"question": "will-it-snow", "outcome": "no", "probability": 0.85},
        {"question": "Who wins?", "outcome": "yes", "probability": 0.4},
    )


@pytest.mark.parametrize(
    ("forecasts", "message"),
    [
        ('[{question: "Q?", probability: 1}]', r"^forecast probability must be between 0 and 1 \(exclusive\), not 1$"),
        ('[{question: "Q?", probability: 0}]', r"^forecast probability must be between 0 and 1 \(exclusive\), not 0$"),
        ('[{question: "Q?", probability: lots}]', r"^forecast probability is not a number: 'lots'$"),
        ("[{probability: 0.3}]", r"^a forecast has no 'question'"),
        ('"rain"', r"^'forecasts' must be a list$"),
        ('["Q?"]', r"^each forecast must be a mapping"),
    ],
)
def test_bad_forecasts_are_parse_errors(forecasts, message):
    """A malformed forecast stops the file with a one-line reason."""
    with pytest.raises(ParseError, match=message):
        parse(f"kind: insight\nforecasts: {forecasts}")


# --- ingest -------------------------------------------------------------------


@pytest.mark.django_db
def test_insight_ingest_marks_the_expert_and_stores_the_forecasts(home):
    """The expert joins the byline, becomes an expert with credentials, and the raw forecasts are kept on the page."""
    article = make_article(
        kind="insight", authors=(), expert="Dr. Jo Marr", credentials="Professor of Politics",
        forecasts=({"question": "Will it rain?", "outcome": "yes", "probability": 0.3},),
    )
    article = ArticlePage.objects.get(pk=article.pk)
    person = Person.objects.get(name="Dr. Jo Marr")
    assert article.kind == "insight"
    assert list(article.authors.all()) == [person]
    assert (person.is_expert, person.credentials) == (True, "Professor of Politics")
    assert article.expert == person
    assert article.stated_forecasts == [{"question": "Will it rain?", "outcome": "yes", "probability": 0.3}]


@pytest.mark.django_db
def test_expert_is_the_byline_expert_and_only_on_insights(home):
    """An insight's expert is the byline person marked as expert; news and analysis have none."""
    mark_expert(name="Zed Expert")
    insight = make_article(kind="insight", authors=("Ada Quill", "Zed Expert"))
    analysis = make_article(kind="analysis", authors=("Zed Expert",))
    assert ArticlePage.objects.get(pk=insight.pk).expert.name == "Zed Expert"
    assert ArticlePage.objects.get(pk=analysis.pk).expert is None
    assert make_article(kind="insight", authors=("Ada Quill",)).expert.name == "Ada Quill"


@pytest.mark.django_db
def test_demo_content_carries_kinds_and_the_expert(home):
    """The demo newsroom has one insight (with its expert and forecast), one analysis, and news otherwise."""
    from bellwether.news.management.commands.demo import DEMO_CONTENT

    report = ingest_sources(sources=[str(DEMO_CONTENT)], default_section=("World",))
    assert report.failures == []
    kinds = sorted(ArticlePage.objects.values_list("kind", flat=True))
    assert kinds == ["analysis", "insight"] + ["news"] * 12
    insight = ArticlePage.objects.get(kind="insight")
    assert insight.expert.name == "Dr. Anneliese Vorhoff"
    assert insight.expert.credentials.startswith("Survey methodologist, Instituto de Opinión Atlántica")
    assert [f["probability"] for f in insight.stated_forecasts] == [0.6]


# --- pages --------------------------------------------------------------------


@pytest.mark.django_db
def test_article_page_shows_the_kind_and_the_expert_box(client, home):
    """An insight's page labels its kind and shows the expert's name, credentials and a link to their profile."""
    article = make_article(kind="insight", authors=(), expert="Dr. Jo Marr", credentials="Professor of Politics, Nowhere University")
    body = client.get(article.url).content.decode()
    assert '<span id="article-kind" class="kind-label kind-label--insight">Expert insight</span>' in body
    box = body[body.index('id="article-expert"'):]
    box = box[: box.index("</aside>")]
    assert '<a href="/authors/dr-jo-marr/">Dr. Jo Marr</a>' in box
    assert '<p class="expert-box__credentials">Professor of Politics, Nowhere University</p>' in box


@pytest.mark.django_db
def test_news_page_has_no_label_and_no_expert_box(client, home):
    """A plain news story shows neither a kind label nor an expert box."""
    body = client.get(make_article().url).content.decode()
    assert 'id="article-kind"' not in body
    assert 'id="article-expert"' not in body


def _profile_with(count: int):
    expert = mark_expert(name="Dr. Jo Marr", credentials="Professor of Politics")
    base = dt.datetime(2026, 11, 1, tzinfo=dt.timezone.utc)
    for i in range(count):
        # The insight is the oldest piece, so "insights first" is not just date order.
        make_article(
            headline=f"Piece {i}", kind="insight" if i == 0 else "analysis", authors=("Dr. Jo Marr",),
            published_at=base + dt.timedelta(days=i),
        )
    return expert


@pytest.mark.django_db
def test_profile_page_lists_credentials_and_insights_first(client, home):
    """/authors/<slug>/ shows the credentials, then the expert's insights, then their other pieces."""
    _profile_with(3)
    body = client.get("/authors/dr-jo-marr/").content.decode()
    assert '<p class="expert-profile__credentials" id="expert-credentials">Professor of Politics</p>' in body
    insights = body[body.index('id="expert-insights"'):body.index('id="expert-other-pieces"')]
    others = body[body.index('id="expert-other-pieces"'):]
    assert "Expert insights" in insights and ">Piece 0</a>" in insights
    assert ">Piece 1</a>" not in insights
    assert others.index(">Piece 2</a>") < others.index(">Piece 1</a>")
    assert ">Piece 0</a>" not in others


@pytest.mark.django_db
def test_profile_page_shows_the_photo(client, home, settings, tmp_path):
    """An expert with a photo gets it as a rendition on their profile."""
    from wagtail.images.models import Image
    from wagtail.images.tests.utils import get_test_image_file

    settings.MEDIA_ROOT = str(tmp_path)
    expert = _profile_with(1)
    expert.photo = Image.objects.create(title="Jo", file=get_test_image_file())
    expert.save()
    body = client.get("/authors/dr-jo-marr/").content.decode()
    assert 'class="expert-profile__photo"' in body
    assert "fill-176x176" in body


@pytest.mark.django_db
@pytest.mark.parametrize("count", [1, 5])
def test_profile_page_query_count_does_not_grow_with_pieces(client, home, count, django_assert_num_queries):
    """The profile page costs the same number of queries for 1 piece as for 5."""
    _profile_with(count)
    client.get("/authors/dr-jo-marr/")  # warm per-process caches (site root paths)
    with django_assert_num_queries(PROFILE_QUERIES):
        response = client.get("/authors/dr-jo-marr/")
    assert response.content.decode().count('<article class="teaser') == count


PROFILE_QUERIES = 9
