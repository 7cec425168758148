"""Ingestion of every format through `bellwether ingest`, into real pages."""

from __future__ import annotations

import http.server
import threading
from pathlib import Path

import pytest
from django.core.management import call_command

from bellwether.news.models import ArticlePage, FeedSource, Region, SectionPage

pytestmark = pytest.mark.django_db

MARKDOWN = """---
id: test-harbour-vote
title: "Harbour council backs the new bridge"
dek: "A narrow vote ends a decade of argument."
section: "Politics > Local Government"
region: Europe
desk: Elections Desk
authors: [Ada Quill, Ben Marsh]
tags: [bridge funding, "#city council"]
featured: true
published: 2026-11-16T09:30:00Z
---
The council voted **seven to six** on Tuesday night.

## What happens next

Work could start in spring, [officials said](https://example.org/plan).

> "It is a good day for the harbour," said a councillor.
"""

RSS = """<?xml version="1.0" encoding="utf-8"?>
<rss version="2.0"><channel><title>Harbour Gazette</title><link>http://example.org/</link>
<description>Local news</description>
<item><title>Ferry fares to rise in January</title><link>http://example.org/ferry</link>
<guid>gazette-ferry-1</guid><pubDate>Tue, 10 Nov 2026 08:00:00 GMT</pubDate>
<category>transport</category><description>&lt;p&gt;Fares go up by a tenth.&lt;/p&gt;</description></item>
<item><title>Market hall reopens</title><link>http://example.org/market</link>
<guid>gazette-market-2</guid><pubDate>Wed, 11 Nov 2026 08:00:00 GMT</pubDate>
<description>&lt;p&gt;Traders return after repairs.&lt;/p&gt;</description></item>
</channel></rss>
"""

ATOM = """<?xml version="1.0" encoding="utf-8"?>
<feed xmlns="http://www.w3.org/2005/Atom"><title>Valley Post</title><id>urn:valley</id>
<updated>2026-11-12T10:00:00Z</updated>
<entry><title>Dam inspection finds cracks</title><id>urn:valley:dam</id>
<link href="http://example.org/dam"/><updated>2026-11-12T10:00:00Z</updated>
<author><name>Cara Stone</name></author>
<content type="html">&lt;p&gt;Engineers found hairline cracks.&lt;/p&gt;&lt;h2&gt;Repairs&lt;/h2&gt;&lt;p&gt;Work starts soon.&lt;/p&gt;</content>
</entry></feed>
"""

HTML = """<!doctype html><html><head><title>Tram line opens | City Wire</title>
<meta property="og:title" content="Tram line opens to the airport">
<meta property="og:site_name" content="City Wire">
<meta name="author" content="Dana Rowe">
<meta property="article:published_time" content="2026-11-14T07:00:00Z">
<meta name="description" content="The new line cuts the trip to twenty minutes.">
<link rel="canonical" href="http://example.org/tram"></head>
<body><header>Menu Home About</header><article><h1>Tram line opens to the airport</h1>
<p>The first trams ran on Saturday morning, carrying hundreds of curious riders across the river to the terminal.</p>
<p>City officials said the line would carry twelve thousand people a day within a year of opening.</p>
<p>Fares match the rest of the network, and trams run every seven minutes at peak times.</p>
</article><footer>Copyright City Wire</footer></body></html>
"""


def ingest(*sources: str, **options) -> int:
    """Run the command and return its exit code."""
    try:
        call_command("ingest", *sources, no_progress=True, **options)
    except SystemExit as exc:
        return exc.code
    return 0


def test_markdown_front_matter_becomes_a_published_article(tmp_path: Path, home):
    """Every front-matter key lands on the page; the body keeps headings, links and quotes."""
    (tmp_path / "vote.md").write_text(MARKDOWN)
    assert ingest(str(tmp_path / "vote.md")) == 0
    article = ArticlePage.objects.get()
    assert article.live
    assert article.title == "Harbour council backs the new bridge"
    assert article.dek == "A narrow vote ends a decade of argument."
    assert [p.title for p in article.get_ancestors().filter(depth__gt=2)] == ["Politics", "Local Government"]
    assert article.region.name == "Europe"
    assert article.desk.name == "Elections Desk"
    assert sorted(p.name for p in article.authors.all()) == ["Ada Quill", "Ben Marsh"]
    assert sorted(t.name for t in article.tags.all()) == ["bridge funding", "city council"]
    assert article.featured is True
    assert article.published_at.isoformat() == "2026-11-16T09:30:00+00:00"
    kinds = [block.block_type for block in article.body]
    assert kinds == ["paragraph", "heading", "paragraph", "quote"]
    assert "<b>seven to six</b>" in article.body[0].value.source
    assert 'href="https://example.org/plan"' in article.body[2].value.source


def test_ingesting_twice_updates_instead_of_duplicating(tmp_path: Path, home):
    """The same item ingested again is updated in place."""
    path = tmp_path / "vote.md"
    path.write_text(MARKDOWN)
    assert ingest(str(path)) == 0
    first = ArticlePage.objects.get()
    path.write_text(MARKDOWN.replace("Harbour council backs", "Harbour council narrowly backs"))
    assert ingest(str(path)) == 0
    assert ArticlePage.objects.count() == 1
    again = ArticlePage.objects.get()
    assert again.pk == first.pk
    assert again.title == "Harbour council narrowly backs the new bridge"
    assert SectionPage.objects.filter(title="Politics").count() == 1


def test_moving_an_item_to_another_section_moves_the_page(tmp_path: Path, home):
    """A re-ingest with a new breadcrumb moves the article, keeping its id."""
    path = tmp_path / "vote.md"
    path.write_text(MARKDOWN)
    ingest(str(path))
    pk = ArticlePage.objects.get().pk
    path.write_text(MARKDOWN.replace("Politics > Local Government", "Business > Infrastructure"))
    assert ingest(str(path)) == 0
    article = ArticlePage.objects.get()
    assert article.pk == pk
    assert article.get_parent().title == "Infrastructure"
    assert article.url.startswith("/business/infrastructure/")


def test_rss_file_gives_one_article_per_entry(tmp_path: Path, home):
    """RSS entries become articles with the feed's title as source outlet."""
    (tmp_path / "gazette.rss").write_text(RSS)
    assert ingest(str(tmp_path / "gazette.rss"), section="World > Local") == 0
    articles = {a.title: a for a in ArticlePage.objects.all()}
    assert set(articles) == {"Ferry fares to rise in January", "Market hall reopens"}
    ferry = articles["Ferry fares to rise in January"]
    assert ferry.source_outlet == "Harbour Gazette"
    assert ferry.canonical_url == "http://example.org/ferry"
    assert [t.name for t in ferry.tags.all()] == ["transport"]
    assert ferry.get_parent().title == "Local"
    assert ferry.published_at.isoformat() == "2026-11-10T08:00:00+00:00"


def test_atom_file_keeps_authors_and_headings(tmp_path: Path, home):
    """Atom content with subheadings keeps its structure; the author is a person."""
    (tmp_path / "valley.atom").write_text(ATOM)
    assert ingest(str(tmp_path / "valley.atom")) == 0
    article = ArticlePage.objects.get()
    assert article.title == "Dam inspection finds cracks"
    assert [p.name for p in article.authors.all()] == ["Cara Stone"]
    assert [b.block_type for b in article.body] == ["paragraph", "heading", "paragraph"]


def test_html_page_is_read_with_its_metadata(tmp_path: Path, home):
    """trafilatura pulls the article text, title, author, date and canonical URL; no page chrome."""
    (tmp_path / "tram.html").write_text(HTML)
    assert ingest(str(tmp_path / "tram.html")) == 0
    article = ArticlePage.objects.get()
    assert article.title == "Tram line opens to the airport"
    assert article.canonical_url == "http://example.org/tram"
    assert article.source_outlet == "City Wire"
    assert [p.name for p in article.authors.all()] == ["Dana Rowe"]
    assert article.published_at.date().isoformat() == "2026-11-14"
    text = " ".join(b.value.source if hasattr(b.value, "source") else str(b.value) for b in article.body)
    assert "twelve thousand people" in text
    assert "Copyright" not in text and "Menu" not in text


def test_bad_files_are_reported_and_the_rest_still_go_in(tmp_path: Path, home, capsys):
    """One line per failure names the file and reason; good files land; exit code 1."""
    (tmp_path / "good.md").write_text(MARKDOWN)
    (tmp_path / "nofront.md").write_text("Just a paragraph.\n")
    (tmp_path / "badyaml.md").write_text("---\ntitle: [unclosed\n---\nBody.\n")
    (tmp_path / "notitle.md").write_text("---\ndek: x\n---\nBody.\n")
    (tmp_path / "broken.rss").write_text("<rss><channel><item><title>Half")
    (tmp_path / "binary.txt").write_bytes(b"\xff\xfe\x00\x00garbage")
    code = ingest(str(tmp_path), str(tmp_path / "missing.md"))
    err = capsys.readouterr().err
    assert code == 1
    assert ArticlePage.objects.count() == 1
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(lines) == 6
    assert f"error: {tmp_path / 'nofront.md'}: no YAML front matter" in err
    assert f"error: {tmp_path / 'badyaml.md'}: invalid YAML front matter at line" in err
    assert f"error: {tmp_path / 'notitle.md'}: front matter has no 'title'" in err
    assert f"error: {tmp_path / 'broken.rss'}: " in err
    assert f"error: {tmp_path / 'binary.txt'}: not UTF-8 text" in err
    assert f"error: {tmp_path / 'missing.md'}: no such file or folder" in err


def test_a_failing_item_leaves_nothing_behind(tmp_path: Path, home, monkeypatch):
    """An error midway through storing an item rolls back its sections and tags too."""
    from bellwether.news import services

    def explode(*args, **kwargs):
        raise services.IngestError("disk on fire")

    monkeypatch.setattr(services, "_apply_fields", explode)
    (tmp_path / "vote.md").write_text(MARKDOWN)
    assert ingest(str(tmp_path / "vote.md")) == 1
    assert ArticlePage.objects.count() == 0
    assert SectionPage.objects.count() == 0
    assert Region.objects.count() == 0


class _FeedHandler(http.server.BaseHTTPRequestHandler):
    etag = '"v1"'
    requests: list[dict] = []

    def do_GET(self):  # noqa: N802
        type(self).requests.append(dict(self.headers))
        if self.path == "/feed.xml":
            if self.headers.get("If-None-Match") == self.etag:
                self.send_response(304)
                self.end_headers()
                return
            body = RSS.encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/rss+xml")
            self.send_header("ETag", self.etag)
            self.send_header("Last-Modified", "Wed, 11 Nov 2026 08:00:00 GMT")
        elif self.path == "/tram":
            body = HTML.encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
        else:
            body = b"gone"
            self.send_response(404)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def feed_server():
    _FeedHandler.requests = []
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _FeedHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_feed_url_honours_etag_and_last_modified(feed_server, home, capsys):
    """The second fetch sends the stored validators and a 304 changes nothing."""
    assert ingest(f"{feed_server}/feed.xml") == 0
    assert ArticlePage.objects.count() == 2
    source = FeedSource.objects.get()
    assert source.etag == '"v1"'
    assert source.modified == "Wed, 11 Nov 2026 08:00:00 GMT"
    capsys.readouterr()
    assert ingest(f"{feed_server}/feed.xml") == 0
    assert _FeedHandler.requests[-1]["If-None-Match"] == '"v1"'
    assert _FeedHandler.requests[-1]["If-Modified-Since"] == "Wed, 11 Nov 2026 08:00:00 GMT"
    assert "1 feed(s) not modified" in capsys.readouterr().out
    assert ArticlePage.objects.count() == 2


def test_html_url_and_http_errors(feed_server, home, capsys):
    """A page URL becomes one article; a 404 is a one-line error."""
    assert ingest(f"{feed_server}/tram", f"{feed_server}/nope") == 1
    assert ArticlePage.objects.get().canonical_url == "http://example.org/tram"
    assert f"error: {feed_server}/nope: HTTP 404" in capsys.readouterr().err
