"""Single HTML article pages, read with trafilatura (text and metadata)."""

from __future__ import annotations

import datetime as dt

import trafilatura
from dateutil import parser as dateparser

from .html_blocks import html_to_blocks
from .types import ParsedArticle, ParseError


def parse_webpage(document: str, *, url: str, source_key: str) -> ParsedArticle:
    """Return the main article of an HTML page with its title, byline, date and tags."""
    result = trafilatura.bare_extraction(
        document, url=url or None, output_format="python", include_formatting=False, with_metadata=True
    )
    if result is None:
        raise ParseError("no article text found in the HTML")
    data = result.as_dict() if hasattr(result, "as_dict") else dict(result)
    headline = " ".join((data.get("title") or "").split())
    if not headline:
        raise ParseError("the page has no title")
    text = data.get("text") or ""
    blocks = html_to_blocks("".join(f"<p>{_escape(p)}</p>" for p in text.split("\n") if p.strip()))
    if not blocks:
        raise ParseError("no article text found in the HTML")
    canonical = data.get("url") or url or ""
    authors = tuple(a.strip() for a in (data.get("author") or "").split(";") if a.strip())
    tags = tuple(t.strip() for t in (data.get("tags") or "").split(",") if t.strip())
    categories = [c.strip() for c in (data.get("categories") or "").split(",") if c.strip()]
    return ParsedArticle(
        source_key=f"url:{canonical}" if canonical else source_key,
        headline=headline,
        dek=" ".join((data.get("description") or "").split())[:500],
        body=blocks,
        section_path=tuple(categories[:1]),
        authors=authors,
        tags=tuple(t for t in tags if t.lower() != "featured"),
        featured=any(t.lower() == "featured" for t in tags),
        published_at=_when(data.get("date")),
        source_outlet=" ".join((data.get("sitename") or "").split()),
        canonical_url=canonical if canonical.startswith(("http://", "https://")) else "",
    )


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _when(value) -> dt.datetime | None:
    if not value:
        return None
    try:
        moment = dateparser.parse(str(value))
    except (ValueError, OverflowError):
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=dt.timezone.utc)
