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
    kind: insight                        # news (default) | analysis | insight
    expert: "Dr. Jane Roe"               # an insight's expert; joins the byline
    credentials: "Professor of ..."      # shown beside the expert's name
    forecasts:                           # probabilities the insight states
      - {question: "Will ...?", outcome: yes, probability: 0.3}   # or "30%"
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
from .types import ARTICLE_KINDS, ParsedArticle, ParseError

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
        kind=_kind(meta.get("kind")),
        expert=_text(meta.get("expert")),
        credentials=_text(meta.get("credentials")),
        forecasts=tuple(_forecast(entry) for entry in _as_list_of_items(meta.get("forecasts"), "forecasts")),
    )


_KIND_ALIASES = {"expert insight": "insight", "expert-insight": "insight"}


def _kind(value) -> str:
    kind = _text(value).lower() or "news"
    kind = _KIND_ALIASES.get(kind, kind)
    if kind not in ARTICLE_KINDS:
        raise ParseError(f"'kind' must be one of {', '.join(ARTICLE_KINDS)}, not {value!r}")
    return kind


def _as_list_of_items(value, key: str) -> list:
    if value in (None, ""):
        return []
    if not isinstance(value, list):
        raise ParseError(f"'{key}' must be a list")
    return value


def _forecast(entry) -> dict:
    """Return one stated forecast as plain data, or raise ParseError saying what is wrong."""
    if not isinstance(entry, dict):
        raise ParseError("each forecast must be a mapping with 'question', 'outcome' and 'probability'")
    question = _text(entry.get("question") or entry.get("market"))
    if not question:
        raise ParseError("a forecast has no 'question' (the market's question or slug)")
    raw = entry.get("probability")
    try:
        if isinstance(raw, str) and raw.strip().endswith("%"):
            probability = float(raw.strip()[:-1]) / 100
        else:
            probability = float(raw)
    except (TypeError, ValueError):
        raise ParseError(f"forecast probability is not a number: {raw!r}") from None
    if not 0 < probability < 1:
        raise ParseError(f"forecast probability must be between 0 and 1 (exclusive), not {raw!r}")
    outcome = entry.get("outcome", "yes")
    # YAML reads a bare yes/no as a boolean.
    if isinstance(outcome, bool):
        outcome = "yes" if outcome else "no"
    return {"question": question, "outcome": _text(outcome).lower() or "yes", "probability": probability}


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
