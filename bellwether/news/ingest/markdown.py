"""Markdown files with YAML front matter.

    ---
    id: demo-bridge-vote                 # optional; defaults to the file name
    title: "Council backs the harbour bridge"
    dek: "One sentence under the headline."
    section: "Politics > Elections"      # or a list
    region: Europe
    desk: Elections Desk
    authors: [Mara Ellison]
    tags: [bridge funding, city council]
    featured: false
    published: 2026-11-16T09:30:00Z
    updated: 2026-11-17T08:00:00Z
    source_outlet: ""
    canonical_url: ""
    ---
    Body in Markdown; ``## Subheadings`` become headings, ``> quotes`` quotes.
"""

from __future__ import annotations

import datetime as dt
import re

import markdown as md
import yaml
from dateutil import parser as dateparser

from .html_blocks import html_to_blocks
from .types import ParsedArticle, ParseError

_FRONT = re.compile(r"\A\ufeff?---[ \t]*\r?\n(.*?)\r?\n---[ \t]*\r?\n?(.*)\Z", re.S)


def parse_markdown(text: str, *, source_key: str) -> ParsedArticle:
    """Return the article in a Markdown file with YAML front matter."""
    match = _FRONT.match(text)
    if not match:
        raise ParseError("no YAML front matter (the file must start with a '---' line)")
    try:
        meta = yaml.safe_load(match.group(1)) or {}
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 2}" if mark else ""
        raise ParseError(f"invalid YAML front matter{where}") from None
    if not isinstance(meta, dict):
        raise ParseError("front matter must be a mapping of keys to values")
    headline = _text(meta.get("title") or meta.get("headline"))
    if not headline:
        raise ParseError("front matter has no 'title'")
    body_html = md.markdown(match.group(2), extensions=["extra"])
    blocks = html_to_blocks(body_html)
    if not blocks:
        raise ParseError("no body text after the front matter")
    section = meta.get("section") or ()
    if isinstance(section, str):
        section = [part.strip() for part in re.split(r"\s*[>›/]\s*", section) if part.strip()]
    return ParsedArticle(
        source_key=_text(meta.get("id")) or source_key,
        headline=headline,
        dek=_text(meta.get("dek") or meta.get("standfirst") or meta.get("summary")),
        body=blocks,
        section_path=tuple(_text(s) for s in section),
        region=_text(meta.get("region")),
        desk=_text(meta.get("desk")),
        authors=tuple(_text(a) for a in _as_list(meta.get("authors") or meta.get("author"))),
        tags=tuple(_text(t).lstrip("#") for t in _as_list(meta.get("tags"))),
        featured=bool(meta.get("featured", False)),
        published_at=_when(meta.get("published") or meta.get("date"), "published"),
        updated_at=_when(meta.get("updated"), "updated"),
        source_outlet=_text(meta.get("source_outlet")),
        canonical_url=_text(meta.get("canonical_url")),
        slug=_text(meta.get("slug")),
    )


def _text(value) -> str:
    return "" if value is None else " ".join(str(value).split())


def _as_list(value) -> list:
    if value is None:
        return []
    if isinstance(value, str):
        return [part for part in (p.strip() for p in value.split(",")) if part]
    if isinstance(value, list):
        return value
    raise ParseError(f"expected a list, got {type(value).__name__}")


def _when(value, key: str) -> dt.datetime | None:
    if value in (None, ""):
        return None
    if isinstance(value, dt.datetime):
        moment = value
    elif isinstance(value, dt.date):
        moment = dt.datetime(value.year, value.month, value.day)
    else:
        try:
            moment = dateparser.parse(str(value))
        except (ValueError, OverflowError):
            raise ParseError(f"'{key}' is not a date: {value!r}") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.timezone.utc)
    return moment
