"""The highlights pages: the lazily loaded sign-up box, the archive and an issue's web page."""

from __future__ import annotations

import datetime as dt
import re

import pytest
from django.test import Client

from bellwether.highlights.models import Issue, Subscriber
from bellwether.security import POLICY
from tests.news.factories import make_article

pytestmark = pytest.mark.django_db

INLINE_SCRIPT = re.compile(r"<script(?![^>]*\b(?:src=|type=\"application/json\"))[^>]*>", re.I)
INLINE_STYLE = re.compile(r"<style\b|\sstyle=", re.I)
WEEK_START = dt.datetime(2026, 11, 13, 7, tzinfo=dt.timezone.utc)
CONTAINER = 'id="highlights-signup" class="highlights-signup-slot" aria-label="Weekly highlights by email" hx-get="/highlights/signup-box/?source={source}" hx-trigger="load"'

SAMPLE_CONTENT = {
    "version": 1,
    "headlines": [
        {"key": "article:12", "id": 12, "title": "Harbour strike ends", "dek": "Dockers vote to return.", "url": "/world/harbour-strike-ends/",
         "section": "World", "published_at": "2026-11-18T09:00:00+00:00", "kind": "news", "featured": True},
    ],
    "insights": [
        {"key": "article:15", "id": 15, "title": "Why the polls disagree", "url": "/analysis/polls/", "kind": "insight",
         "expert": {"name": "Dr Ada Quill", "credentials": "Pollster", "url": "/experts/ada/"},
         "forecasts": [{"market": "rain", "question": "Will it rain on Friday?", "url": "/markets/rain/", "outcome": "yes", "probability": 0.3, "stated_at": "2026-11-17T10:00:00+00:00"}]},
        {"key": "article:16", "title": "An analysis without an expert", "url": "/analysis/x/", "expert": None, "forecasts": []},
    ],
    "movers": [
        {"key": "market:7", "id": 7, "slug": "rain", "question": "Will it rain on Friday?", "url": "/markets/rain/", "outcome": "YES",
         "start": 0.42, "end": 0.61, "change": 0.19, "chart": "rain.png", "series": [0.42, 0.5, 0.61]},
        {"key": "market:8", "slug": "snow", "question": "Will it snow?", "url": "/markets/snow/", "outcome": "YES",
         "start": 0.5, "end": 0.38, "change": -0.12, "chart": None},
    ],
    "closing_soon": [{"key": "market:9", "slug": "vote", "question": "Will the vote pass?", "url": "/markets/vote/", "outcome": "YES", "probability": 0.73, "close_at": "2026-11-22T12:00:00+00:00"}],
    "resolved": [{"key": "market:4", "slug": "bridge", "question": "Will the bridge open?", "url": "/markets/bridge/", "result": "YES", "winner": "yes", "price_before": 0.81, "called": True, "status": "resolved", "resolved_at": "2026-11-19T12:00:00+00:00"}],
    "stats": {"trades": 1200, "volume_micro": 845_000_000, "traders": 17},
}


def make_issue(number: int, *, status=Issue.Status.SENT, content=None, subject=None) -> Issue:
    return Issue.objects.create(
        number=number, status=status, subject=subject if subject is not None else f"Issue {number}: the week",
        week_start=WEEK_START - dt.timedelta(days=7 * (100 - number)), week_end=WEEK_START + dt.timedelta(days=7),
        built_at=WEEK_START + dt.timedelta(days=7), content=content if content is not None else {}, intro="",
    )


def assert_no_inline_code(html: str) -> None:
    assert INLINE_SCRIPT.findall(html) == []
    assert INLINE_STYLE.findall(html) == []


# --- the sign-up box ------------------------------------------------------------------------


def test_home_and_article_pages_carry_the_lazy_signup_box(client, home):
    """The cached home and article pages hold the box's container (with a plain link for no JavaScript), not a form."""
    article = make_article()
    for url, source in (("/", "home"), (article.url, "article")):
        page = client.get(url).content.decode()
        assert CONTAINER.format(source=source) in page, url
        assert '<a href="/highlights/">Get the weekly highlights by email →</a>' in page
        assert 'action="/highlights/subscribe/"' not in page


def test_the_signup_box_is_never_cached_and_carries_a_csrf_token():
    """The fragment renders the form with a CSRF token and is marked not to be stored, so a POST from it passes CSRF."""
    client = Client(enforce_csrf_checks=True)
    response = client.get("/highlights/signup-box/?source=home")
    assert response.status_code == 200
    assert "no-store" in response["Cache-Control"]
    box = response.content.decode()
    assert box.strip().startswith('<div class="signup-box" id="highlights-signup-box">')
    assert '<input type="hidden" name="source" value="home">' in box
    assert 'hx-post="/highlights/subscribe/"' in box
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', box).group(1)
    refused = client.post("/highlights/subscribe/", {"email": "csrf@example.com"})
    assert refused.status_code == 403
    accepted = client.post("/highlights/subscribe/", {"email": "csrf@example.com", "csrfmiddlewaretoken": token}, HTTP_HX_REQUEST="true")
    assert accepted.status_code == 200
    assert list(Subscriber.objects.values_list("email", "status")) == [("csrf@example.com", "pending")]


def test_an_unknown_source_is_recorded_as_web(client):
    """A forged source value does not end up in the database."""
    client.post("/highlights/subscribe/", {"email": "src@example.com", "source": "<script>"})
    assert list(Subscriber.objects.values_list("source", flat=True)) == ["web"]


def test_subscribe_answers_only_post(client):
    """GET on the subscribe address is refused (405)."""
    assert client.get("/highlights/subscribe/").status_code == 405


# --- the archive ---------------------------------------------------------------------------------


def test_the_archive_is_empty_with_a_helpful_note_and_the_form(client):
    """With no issue yet the archive says so and offers the sign-up form inline."""
    response = client.get("/highlights/")
    assert response.status_code == 200
    page = response.content.decode()
    assert '<div class="empty" id="no-issues">' in page
    assert "No issue has gone out yet. Subscribe and the first one will come to your inbox." in page
    assert 'action="/highlights/subscribe/"' in page
    assert 'name="csrfmiddlewaretoken"' in page


def test_the_archive_lists_public_issues_newest_first_without_drafts(client):
    """Built, sending and sent issues are listed newest first; drafts are not."""
    make_issue(1)
    make_issue(2, status=Issue.Status.BUILT)
    make_issue(3, status=Issue.Status.DRAFT, subject="Secret draft")
    make_issue(4, status=Issue.Status.SENDING)
    page = client.get("/highlights/").content.decode()
    assert re.findall(r'href="/highlights/(\d+)/"', page) == ["4", "2", "1"]
    assert "Secret draft" not in page


def test_the_archive_paginates_with_a_fixed_number_of_queries(client, django_assert_max_num_queries):
    """Twenty issues a page; the query count does not grow with the number of issues."""
    for number in range(1, 6):
        make_issue(number)
    with django_assert_max_num_queries(4) as few:
        client.get("/highlights/")
    for number in range(6, 46):
        make_issue(number)
    with django_assert_max_num_queries(len(few.captured_queries)):
        page = client.get("/highlights/").content.decode()
    assert re.findall(r'href="/highlights/(\d+)/"', page) == [str(n) for n in range(45, 25, -1)]
    assert "Page 1 of 3" in page
    second = client.get("/highlights/?page=3").content.decode()
    assert re.findall(r'href="/highlights/(\d+)/"', second) == ["5", "4", "3", "2", "1"]


# --- an issue's web page ---------------------------------------------------------------------------


def test_an_issue_page_renders_the_frozen_content(client):
    """The issue page shows every section of the frozen content with the site's layout."""
    make_issue(7, content=SAMPLE_CONTENT, subject="Strikes, polls and rain")
    response = client.get("/highlights/7/")
    assert response.status_code == 200
    page = response.content.decode()
    assert "<title>Strikes, polls and rain · Bellwether</title>" in page
    assert '<a class="highlights-item__title" href="/world/harbour-strike-ends/">Harbour strike ends</a>' in page
    assert '<a href="/experts/ada/">Dr Ada Quill</a>, Pollster' in page
    assert '<a href="/markets/rain/">Will it rain on Friday?</a>: <strong>30%</strong>' in page
    assert "An analysis without an expert" in page
    assert "YES: 42% → <strong>61%</strong>" in page
    assert '<span class="highlights-mover__change is-up">+19 pts</span>' in page
    assert '<span class="highlights-mover__change is-down">-12 pts</span>' in page
    assert '<img class="highlights-mover__chart" src="/highlights/7/charts/rain.png"' in page
    assert page.count('class="highlights-mover__chart"') == 1
    assert "73% · closes 22 Nov, 12:00" in page
    assert "Result: <strong>YES</strong> · a day before, the market had it at 81%" in page
    assert "<dt>Volume (credits)</dt><dd>845</dd>" in page
    assert "<dt>Trades</dt><dd>1,200</dd>" in page
    assert 'id="issue-empty"' not in page
    assert_no_inline_code(page)


@pytest.mark.parametrize("content", [{}, {"headlines": "not a list", "movers": [None, 3], "stats": []}, []], ids=["empty", "odd", "list"])
def test_an_issue_page_survives_missing_or_odd_content(client, content):
    """Missing or malformed sections render as a quiet week instead of an error."""
    make_issue(8, content=content)
    response = client.get("/highlights/8/")
    assert response.status_code == 200
    assert "A quiet week: this issue has no stories or market moves." in response.content.decode()


def test_a_draft_is_hidden_from_readers_and_shown_to_staff(client, admin_user):
    """A draft issue is a 404 for readers; staff see it, marked as a draft and not cached."""
    make_issue(9, status=Issue.Status.DRAFT, content=SAMPLE_CONTENT)
    assert client.get("/highlights/9/").status_code == 404
    assert client.get("/highlights/99/").status_code == 404
    client.force_login(admin_user)
    response = client.get("/highlights/9/")
    assert response.status_code == 200
    assert "Draft: readers cannot see this" in response.content.decode()
    assert "no-store" in response["Cache-Control"]


# --- the content security policy ---------------------------------------------------------------------


def test_highlights_pages_have_no_inline_scripts_or_styles(client, home, settings):
    """Every highlights page a reader reaches works under the policy: no inline script or style."""
    settings.LIVE_URL, settings.LIVE_PORT = None, 0
    make_issue(1, content=SAMPLE_CONTENT)
    subscriber = Subscriber.objects.create(email="csp@example.com", status=Subscriber.Status.ACTIVE)
    pages = ["/highlights/", "/highlights/1/", "/highlights/signup-box/", f"/highlights/unsubscribe/{subscriber.token}/", "/highlights/confirm/bad-link/"]
    for url in pages:
        response = client.get(url)
        assert response.status_code in (200, 400), url
        if url != "/highlights/signup-box/":
            assert response["Content-Security-Policy"] == POLICY, url
        assert_no_inline_code(response.content.decode())
    done = client.post("/highlights/subscribe/", {"email": "bad"})
    assert_no_inline_code(done.content.decode())


def test_an_issue_built_by_build_issue_renders(client, home):
    """An issue frozen by building.build_issue (one article, no trades) renders on its web page."""
    from bellwether.highlights.building import build_issue

    article = make_article(headline="Built into the issue", published_at=dt.datetime.now(dt.timezone.utc) - dt.timedelta(days=1))
    issue = build_issue()
    assert issue.status == Issue.Status.BUILT
    response = client.get(f"/highlights/{issue.number}/")
    assert response.status_code == 200
    assert f'href="{article.url}">Built into the issue</a>' in response.content.decode()
    assert f'href="/highlights/{issue.number}/"' in client.get("/highlights/").content.decode()
