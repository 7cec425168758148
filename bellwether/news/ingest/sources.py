"""Find and read what `bellwether ingest` is given: files, folders and URLs.

Each source yields ``(label, ParsedArticle | ParseError)`` pairs; the label
names the file or feed entry in messages. Nothing here touches the database.
"""

from __future__ import annotations

import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import feedparser

from .feeds import looks_like_feed, parse_feed
from .markdown import parse_markdown
from .seedtext import parse_seed_text
from .types import MAX_ARTICLE_TEXT_BYTES, ParsedArticle, ParseError, too_large
from .webpage import parse_webpage

TEXT_SUFFIXES = {".txt", ".text"}
MARKDOWN_SUFFIXES = {".md", ".markdown"}
FEED_SUFFIXES = {".xml", ".rss", ".atom"}
HTML_SUFFIXES = {".html", ".htm"}
KNOWN_SUFFIXES = TEXT_SUFFIXES | MARKDOWN_SUFFIXES | FEED_SUFFIXES | HTML_SUFFIXES
MAX_BYTES = 20 * 1024 * 1024  # a feed file or response, which may hold many articles
# One web page's markup; the article text found in it must still fit MAX_ARTICLE_TEXT_BYTES.
MAX_PAGE_BYTES = 5 * MAX_ARTICLE_TEXT_BYTES
FETCH_TIMEOUT_S = 20
USER_AGENT = "Bellwether-ingest/0.1"

Result = tuple[str, ParsedArticle | ParseError]


@dataclass
class Fetched:
    """What a URL gave: its items, or nothing new (HTTP 304)."""

    items: list[Result] = field(default_factory=list)
    etag: str = ""
    modified: str = ""
    not_modified: bool = False


def expand_paths(paths: list[Path]) -> list[Path]:
    """Return the files named, with folders replaced by the files they hold."""
    files: list[Path] = []
    for path in paths:
        if path.is_dir():
            files.extend(
                sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in KNOWN_SUFFIXES and p.name != "README.md")
            )
        else:
            files.append(path)
    return files


def read_file(path: Path, *, known_sections=(), known_regions=()) -> Iterator[Result]:
    """Yield the items in the file at ``path``."""
    label = str(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        yield label, ParseError(exc.strerror or str(exc))
        return
    if len(raw) > MAX_BYTES:
        yield label, ParseError(f"file is larger than {MAX_BYTES // (1024 * 1024)} MB")
        return
    suffix = path.suffix.lower()
    key = f"file:{path.name}"
    if suffix in FEED_SUFFIXES or (suffix not in KNOWN_SUFFIXES and looks_like_feed(raw)):
        yield from _feed_items(raw, origin=label)
        return
    # Refuse an oversized article before parsing it: parsing is what costs.
    limit = MAX_PAGE_BYTES if suffix in HTML_SUFFIXES else MAX_ARTICLE_TEXT_BYTES
    if len(raw) > limit:
        yield label, ParseError(f"{too_large(len(raw))}; split it or trim it")
        return
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        yield label, ParseError(f"not UTF-8 text (byte {exc.start})")
        return
    try:
        if suffix in MARKDOWN_SUFFIXES:
            yield label, parse_markdown(text, source_key=key)
        elif suffix in HTML_SUFFIXES:
            yield label, parse_webpage(text, url="", source_key=key)
        elif suffix in TEXT_SUFFIXES:
            yield label, parse_seed_text(text, source_key=key, known_sections=known_sections, known_regions=known_regions)
        else:
            yield label, ParseError(f"unknown file type '{suffix or path.name}' (use .txt, .md, .xml/.rss/.atom or .html)")
    except ParseError as exc:
        yield label, exc


def _feed_items(raw: bytes, *, origin: str) -> Iterator[Result]:
    parsed = feedparser.parse(raw)
    try:
        for n, item in enumerate(parse_feed(parsed, origin=origin), start=1):
            title = getattr(item, "headline", "") or f"entry {n}"
            yield f"{origin} [{title[:60]}]", item
    except ParseError as exc:
        yield origin, exc


def read_url(url: str, *, etag: str = "", modified: str = "") -> Fetched:
    """Fetch ``url`` with a conditional GET and return its items.

    A feed yields one item per entry; any other HTML page is read as one
    article. HTTP 304 means nothing changed since ``etag``/``modified``.
    """
    request = urllib.request.Request(url, headers={"User-Agent": USER_AGENT, "Accept": "*/*"})
    if etag:
        request.add_header("If-None-Match", etag)
    if modified:
        request.add_header("If-Modified-Since", modified)
    try:
        with urllib.request.urlopen(request, timeout=FETCH_TIMEOUT_S) as response:
            raw = response.read(MAX_BYTES + 1)
            headers = response.headers
    except urllib.error.HTTPError as exc:
        if exc.code == 304:
            return Fetched(not_modified=True, etag=etag, modified=modified)
        return Fetched(items=[(url, ParseError(f"HTTP {exc.code} {exc.reason}"))])
    except (urllib.error.URLError, TimeoutError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        return Fetched(items=[(url, ParseError(f"could not fetch: {reason}"))])
    if len(raw) > MAX_BYTES:
        return Fetched(items=[(url, ParseError("response is larger than 20 MB"))])
    fetched = Fetched(etag=headers.get("ETag", ""), modified=headers.get("Last-Modified", ""))
    content_type = headers.get("Content-Type", "")
    if "xml" in content_type or "rss" in content_type or "atom" in content_type or looks_like_feed(raw):
        fetched.items = list(_feed_items(raw, origin=url))
        return fetched
    if len(raw) > MAX_PAGE_BYTES:
        return Fetched(items=[(url, ParseError(f"the page is larger than {MAX_PAGE_BYTES // 1_000_000} MB"))])
    charset = headers.get_content_charset() or "utf-8"
    try:
        fetched.items = [(url, parse_webpage(raw.decode(charset, errors="replace"), url=url, source_key=f"url:{url}"))]
    except ParseError as exc:
        fetched.items = [(url, exc)]
    return fetched
