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


ARTICLE_KINDS = ("news", "analysis", "insight")


class ParseError(ValueError):
    """Raised when an item cannot be read; the message says why, in one line."""
