"""What readers get from each page, and how many queries it costs."""

from __future__ import annotations

import feedparser
import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from bellwether.news.models import ArticlePage, SectionPage

from .factories import make_article

pytestmark = pytest.mark.django_db


@pytest.fixture
def newsroom(home):
    make_article(headline="Lead about the harbour bridge", featured=True, section_path=("Politics", "Elections"), tags=("bridges", "harbours"))
    for n in range(3):
        make_article(headline=f"Market story {n}", section_path=("Business", "Markets"), authors=("Ben Marsh", "Ada Quill"), tags=("rates",))
    make_article(headline="Glacier study published", section_path=("Science",), region="Americas", desk="Science Desk", tags=("climate",))
    return home


def _queries(client, url: str) -> tuple[int, str]:
    with CaptureQueriesContext(connection) as ctx:
        response = client.get(url)
    assert response.status_code == 200, url
    return len(ctx.captured_queries), response.content.decode()


def test_home_shows_lead_headlines_and_sections(client, newsroom):
    """The featured story leads; other stories appear as headlines and per section."""
    html = client.get("/").content.decode()
    lead = html.split('class="front__lead"')[1].split('class="front__headlines"')[0]
    assert "Lead about the harbour bridge" in lead
    assert "Major headlines" in html
    assert "Glacier study published" in html
    for section in ("Politics", "Business", "Science"):
        assert f">{section}</a>" in html


def test_home_without_articles_explains_what_to_do(client, home):
    """An empty newsroom says how to add the first story."""
    html = client.get("/").content.decode()
    assert "No stories yet" in html
    assert "bellwether ingest" in html


def test_section_page_lists_its_subtree_with_breadcrumb(client, newsroom):
    """A section lists articles of its subsections too, with a breadcrumb and feed links."""
    html = client.get("/business/markets/").content.decode()
    assert html.count('<article class="teaser') == 3
    assert '<li><a href="/business/">Business</a></li>' in html
    assert client.get("/business/").content.decode().count('<article class="teaser') == 3


def test_section_pagination(client, home, settings):
    """Pages of ARTICLES_PER_PAGE with newer/older links; a bad page number shows the last page."""
    settings.ARTICLES_PER_PAGE = 2
    for n in range(5):
        make_article(headline=f"Paged {n}", section_path=("Sport",))
    first = client.get("/sport/").content.decode()
    assert "Page 1 of 3" in first and 'rel="next" href="?page=2"' in first
    assert "Page 3 of 3" in client.get("/sport/?page=99").content.decode()


def test_article_page_shows_byline_tags_and_related(client, newsroom):
    """Byline links to author and desk pages; tags link to tag pages; related stories share a tag."""
    article = ArticlePage.objects.get(title="Market story 0")
    html = client.get(article.url).content.decode()
    assert '<a href="/authors/ada-quill/">Ada Quill</a>' in html
    assert '<a href="/authors/ben-marsh/">Ben Marsh</a>' in html
    assert '<a href="/desks/data-desk/">Data Desk</a>' in html
    assert 'href="/tags/rates/">#rates</a>' in html
    assert "Related stories" in html and "Market story 1" in html


@pytest.mark.parametrize(
    "url, expected",
    [
        ("/tags/rates/", 3),
        ("/regions/americas/", 1),
        ("/desks/science-desk/", 1),
        ("/authors/ben-marsh/", 3),
    ],
)
def test_listing_pages(client, newsroom, url, expected):
    """Tag, region, desk and author pages list exactly their stories."""
    count, html = _queries(client, url)
    assert html.count('<article class="teaser') == expected


def test_directories_count_stories(client, newsroom):
    """The region, desk and author indexes show how many stories each has."""
    html = client.get("/authors/").content.decode()
    assert "Ada Quill</a> <span class=\"count\">5 stories</span>" in html
    assert "Ben Marsh</a> <span class=\"count\">3 stories</span>" in html
    assert "Science Desk</a>" in client.get("/desks/").content.decode()


@pytest.mark.parametrize("url", ["/", "/business/", "/tags/rates/", "/authors/ada-quill/", "/regions/europe/", "/search/?q=story"])
def test_list_pages_do_not_grow_queries_with_more_articles(client, newsroom, url):
    """Adding articles to a list page adds no queries (no N+1)."""
    for section in ("Politics", "Science", "Business"):
        for n in range(8):
            make_article(headline=f"Filler {section} story {n}", section_path=(section,))
    before, _ = _queries(client, url)
    for n in range(6):
        make_article(headline=f"Extra story {n}", section_path=("Business", "Markets"), authors=("Ada Quill", f"Writer {n}"), tags=("rates", f"t{n}"))
    after, _ = _queries(client, url)
    assert after == before, f"{url}: {before} queries before, {after} after"


def test_list_page_query_budget(client, newsroom):
    """The home and section pages stay within a fixed query budget."""
    assert _queries(client, "/")[0] <= 30
    assert _queries(client, "/business/")[0] <= 20
    assert _queries(client, "/tags/rates/")[0] <= 10


def test_unknown_pages_404(client, newsroom):
    """Unknown tags, regions and pages are 404s with a helpful page."""
    for url in ("/tags/nope/", "/regions/nope/", "/desks/nope/", "/authors/nope/", "/no/such/page/"):
        response = client.get(url)
        assert response.status_code == 404, url


def test_search_finds_headlines_and_bodies(client, newsroom):
    """Search matches words in headlines and in body text, live articles only."""
    html = client.get("/search/?q=glacier").content.decode()
    assert "Glacier study published" in html and "1 result for" in html
    html = client.get("/search/?q=harbours").content.decode()
    assert "result" in html and html.count('<article class="teaser') == 5
    draft = ArticlePage.objects.get(title="Glacier study published")
    draft.unpublish()
    assert "No stories match" in client.get("/search/?q=glacier").content.decode()


def test_search_handles_odd_input(client, newsroom):
    """Empty, punctuation-only and very long queries render a page, not an error."""
    assert "Type a word" in client.get("/search/?q=").content.decode()
    for q in ("!!!", "a" * 5000, "'; DROP TABLE x; --", "AND OR NOT"):
        assert client.get("/search/", {"q": q}).status_code == 200


@pytest.mark.parametrize("url", ["/feed/rss/", "/feed/atom/", "/business/feed/rss/", "/business/feed/atom/", "/tags/rates/feed/rss/", "/tags/rates/feed/atom/"])
def test_feeds_parse_back(client, newsroom, url):
    """Every feed is well-formed and carries the right entries with links and dates."""
    response = client.get(url)
    assert response.status_code == 200
    parsed = feedparser.parse(response.content)
    assert not parsed.bozo, parsed.get("bozo_exception")
    assert parsed.version in ("rss20", "atom10")
    titles = [e.title for e in parsed.entries]
    if "business" in url or "rates" in url:
        assert sorted(titles) == ["Market story 0", "Market story 1", "Market story 2"]
    else:
        assert len(titles) == 5
    entry = parsed.entries[0]
    assert entry.link.startswith("http://testserver/")
    assert entry.get("published_parsed") or entry.get("updated_parsed")


def test_sitemap_lists_articles(client, newsroom):
    """sitemap.xml lists every live article and section."""
    body = client.get("/sitemap.xml").content.decode()
    for article in ArticlePage.objects.live():
        assert article.full_url in body or article.url in body
    assert body.count("<url>") == ArticlePage.objects.live().count() + SectionPage.objects.live().count() + 1


def test_health(client, db):
    """The health view reports the database as reachable."""
    assert client.get("/health/").json() == {"status": "ok", "database": True}


def test_home_section_blocks_hold_the_newest_four_not_shown_above(client, home):
    """Each top-level section block lists its four newest stories (subsections included), skipping the lead and headlines."""
    for n in range(8):
        make_article(headline=f"Sport {n}", section_path=("Sport", "Football") if n % 2 else ("Sport",))
    for n in range(8):
        make_article(headline=f"Science {n}", section_path=("Science",))
    html = client.get("/").content.decode()
    blocks = {}
    for chunk in html.split('<section class="section-block">')[1:]:
        title = chunk.split('">', 2)[2].split("</a>")[0]
        blocks[title] = [t.split("</a>")[0] for t in chunk.split('<h3 class="teaser__title"><a href="')[1:]]
        blocks[title] = [t.split('">', 1)[1] for t in blocks[title]]
    # Science 7 leads (newest, nothing featured) and Science 6-1 are the headlines.
    assert blocks["Sport"] == ["Sport 7", "Sport 6", "Sport 5", "Sport 4"]
    assert blocks["Science"] == ["Science 0"]
