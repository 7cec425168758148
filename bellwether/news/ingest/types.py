"""Plain data passed from the format parsers to the ingestion service.

Parsers turn a file, a feed entry or a web page into a ``ParsedArticle``;
they know nothing about Django. ``bellwether.news.services.upsert_article``
turns one into a published page.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Block:
    """One piece of body text: a subheading, a paragraph or a quote.

    ``kind`` is "heading", "paragraph" or "quote". ``html`` is set for
    paragraphs that arrive as (already cleaned) HTML; otherwise ``text`` is
    plain text and the service escapes it.
    """

    kind: str
    text: str = ""
    html: str = ""


@dataclass
class ParsedArticle:
    """An article as read from any source, before it touches the database.

    ``source_key`` identifies the item across runs (a feed entry id, a
    canonical URL, a file name) so ingesting it again updates, not
    duplicates. ``section_path`` is the breadcrumb, outermost first:
    ("Politics", "Diplomacy", "Bilateral Relations").

    ``kind`` is one of ``ARTICLE_KINDS``. An insight names its ``expert``
    (added to the byline) with their ``credentials``; ``forecasts`` are the
    probabilities it states, each ``{"question": market question or slug,
    "outcome": slug, "probability": float in (0, 1)}``.
    """

    source_key: str
    headline: str
    body: list[Block] = field(default_factory=list)
    dek: str = ""
    section_path: tuple[str, ...] = ()
    region: str = ""
    desk: str = ""
    authors: tuple[str, ...] = ()
    published_at: dt.datetime | None = None
    updated_at: dt.datetime | None = None
    tags: tuple[str, ...] = ()
    featured: bool = False
    source_outlet: str = ""
    canonical_url: str = ""
    slug: str = ""
    kind: str = "news"
    expert: str = ""
    credentials: str = ""
    forecasts: tuple[dict, ...] = ()

    def text_bytes(self) -> int:
        """Return the size of the article's text in UTF-8 bytes: headline, standfirst and body."""
        parts = [self.headline, self.dek, *(block.text or block.html for block in self.body)]
        return sum(len(part.encode("utf-8")) for part in parts)


# An article holds at most this much text; an 18 MB file once took a minute
# and 820 MB to ingest and seconds to render on every view.
MAX_ARTICLE_TEXT_BYTES = 1_000_000


def too_large(size_bytes: int) -> str:
    """Say that an article of ``size_bytes`` is over the limit, in one line.

    >>> too_large(18_400_000)
    'the article is larger than 1 MB of text (18.4 MB)'
    """
    return f"the article is larger than {MAX_ARTICLE_TEXT_BYTES // 1_000_000} MB of text ({size_bytes / 1_000_000:.1f} MB)"


ARTICLE_KINDS = ("news", "analysis", "insight")


class ParseError(ValueError):
    """Raised when an item cannot be read; the message says why, in one line."""
