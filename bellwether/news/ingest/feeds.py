"""RSS and Atom feeds, read with feedparser."""

from __future__ import annotations

import calendar
import xml.sax
import datetime as dt
from collections.abc import Iterator

import feedparser

from .html_blocks import html_to_blocks
from .types import ParsedArticle, ParseError


def looks_like_feed(head: bytes) -> bool:
    """Return True when the first bytes of a document look like RSS or Atom."""
    sample = head[:2000].lower()
    return b"<rss" in sample or b"<feed" in sample or b"<rdf:rdf" in sample


def parse_feed(parsed: feedparser.FeedParserDict, *, origin: str) -> Iterator[ParsedArticle | ParseError]:
    """Yield one article (or the error that stopped it) per feed entry.

    ``parsed`` is feedparser's result for the document at ``origin``. A feed
    that is not well-formed XML raises ParseError and yields nothing, since
    a truncated document would otherwise store half-read entries.
    """
    reason = parsed.get("bozo_exception")
    if parsed.get("bozo") and (isinstance(reason, xml.sax.SAXException) or not parsed.get("entries")):
        raise ParseError(f"not a well-formed RSS or Atom feed ({_one_line(reason)})")
    if not parsed.get("version") and not parsed.get("entries"):
        raise ParseError("not an RSS or Atom feed")
    outlet = " ".join(parsed.feed.get("title", "").split())
    for n, entry in enumerate(parsed.entries, start=1):
        try:
            yield _entry(entry, outlet=outlet, origin=origin)
        except ParseError as exc:
            yield ParseError(f"entry {n}: {exc}")


def _entry(entry, *, outlet: str, origin: str) -> ParsedArticle:
    headline = " ".join(entry.get("title", "").split())
    if not headline:
        raise ParseError("no title")
    link = entry.get("link", "")
    key = entry.get("id") or link
    if not key:
        raise ParseError("no id or link to recognise it by")
    content = ""
    if entry.get("content"):
        content = entry.content[0].get("value", "")
    summary = entry.get("summary", "")
    blocks = html_to_blocks(content or summary)
    if not blocks:
        raise ParseError("no text")
    dek = ""
    if content and summary:
        dek = " ".join(html_to_text(summary).split())[:500]
    authors = tuple(a.get("name", "") for a in entry.get("authors", []) if a.get("name"))
    tags = tuple(t.get("term", "").strip().lstrip("#") for t in entry.get("tags", []) if t.get("term"))
    featured = any(t.lower() == "featured" for t in tags)
    return ParsedArticle(
        source_key=f"feed:{key}",
        headline=headline,
        dek=dek,
        body=blocks,
        authors=authors,
        tags=tuple(t for t in tags if t.lower() != "featured"),
        featured=featured,
        published_at=_when(entry.get("published_parsed") or entry.get("updated_parsed")),
        updated_at=_when(entry.get("updated_parsed")) if entry.get("published_parsed") else None,
        source_outlet=outlet,
        canonical_url=link if link.startswith(("http://", "https://")) else "",
    )


def html_to_text(fragment: str) -> str:
    """Return the text of an HTML fragment."""
    import lxml.html

    if not fragment.strip():
        return ""
    return lxml.html.fragment_fromstring(fragment, create_parent="div").text_content()


def _when(struct) -> dt.datetime | None:
    if not struct:
        return None
    return dt.datetime.fromtimestamp(calendar.timegm(struct), tz=dt.timezone.utc)


def _one_line(exc) -> str:
    return " ".join(str(exc).split())[:160] or "unknown error"
