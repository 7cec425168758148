"""Oversized articles are refused at ingest with a clear error, before they cost a minute of parsing."""

from __future__ import annotations

import pytest

from bellwether.news import services
from bellwether.news.ingest.types import MAX_ARTICLE_TEXT_BYTES, Block, ParsedArticle
from bellwether.news.models import ArticlePage

pytestmark = pytest.mark.django_db

FRONT = "---\nid: {key}\ntitle: \"{title}\"\nsection: \"World\"\n---\n"


def markdown(key: str, title: str, paragraph: str, count: int) -> str:
    return FRONT.format(key=key, title=title) + "\n\n".join([paragraph] * count) + "\n"


def test_an_18_mb_markdown_file_is_refused_at_once_and_the_rest_of_the_folder_goes_in(tmp_path, home):
    """The huge file is reported with its size and skipped without parsing; the small one beside it is ingested."""
    (tmp_path / "huge.md").write_text(markdown("huge", "Everything ever said", "word " * 200, 18_400), encoding="utf-8")
    (tmp_path / "small.md").write_text(markdown("small", "Harbour reopens", "The harbour reopened on Monday.", 3), encoding="utf-8")
    report = services.ingest_sources(sources=[str(tmp_path)])
    assert report.created == 1
    assert report.failures == [f"{tmp_path / 'huge.md'}: the article is larger than 1 MB of text (18.4 MB); split it or trim it"]
    assert list(ArticlePage.objects.values_list("title", flat=True)) == ["Harbour reopens"]


def test_an_article_whose_text_passes_1_mb_is_refused_whatever_its_source(home):
    """The service checks the parsed text too (a feed item or a page whose markup was under its own limit)."""
    paragraph = "x" * 10_000
    item = ParsedArticle(source_key="feed:big", headline="Too long", body=[Block(kind="paragraph", text=paragraph)] * 101)
    assert item.text_bytes() > MAX_ARTICLE_TEXT_BYTES
    with pytest.raises(services.IngestError, match=r"^the article is larger than 1 MB of text \(1.0 MB\); split it or trim it$"):
        services.upsert_article(item=item)
    assert not ArticlePage.objects.exists()
