"""Parse the plain-text "seed" article layout into a ``ParsedArticle``.

The layout, top to bottom (blank lines between the parts are optional)::

    Asia-Pacific                                   <- kicker lines (0 to 3)
    PoliticsdiplomacyBilateral Relations
    Headline of the article                        <- headline
    Optional standfirst.                           <- dek (before the byline)
    By National Security Desk | January 13, 2026   <- optional byline
    Optional one-sentence standfirst.              <- dek (after the byline)
    Body paragraph. Subheading? Body paragraph.    <- body
    #Japan                                         <- hashtags, one a line
    #featured
    Stay Informed. Act Smarter.                    <- promotional footer

Rules, in the order they are applied:

* Cleaning. A leading BOM is dropped, CRLF and CR become LF, every run of
  whitespace inside a line becomes one space and zero-width characters are
  removed. Typographic quotes and apostrophes are kept. Text containing a
  NUL byte, or in which more than 5% of the characters are control
  characters or U+FFFD (left by decoding binary data), is binary garbage
  and is rejected; fewer stray control characters are deleted.
* Hashtags and footer. The last run of lines that each hold only hashtags
  (``#South Korea``; several ``#tags`` may share a line) is the tag block.
  Tags keep their text without ``#``, in order, de-duplicated
  case-insensitively; ``#featured`` (any case) sets ``featured`` and is not
  a tag. Everything after the tag block is a footer and is dropped, provided
  it is short (at most 4 lines and 600 characters); a longer tail means the
  "hashtags" were body text, so no tag block is taken.
* Kickers. Up to three lines before the headline may be kickers. A line is a
  kicker only if another line follows it, and only if it is short (at most
  80 characters) without sentence punctuation. It is,
  in this order of preference: a region (``known_regions`` plus a built-in
  list, compared ignoring case, spaces and punctuation); a breadcrumb with
  separators (``>``, ``›``, ``»``, ``|``, or ``/`` when surrounded by spaces
  or when every part is a known section name); one known section name; a
  run-together breadcrumb (``PoliticsdiplomacyBilateral Relations``). Known
  section names are ``known_sections``, a built-in newsroom list and the
  file's own hashtags. A run-together line is split by dynamic programming
  that covers as many characters as possible with known names and then uses
  the fewest parts; a part that is not a known name must begin and end at a
  lower-to-upper case change followed by a lowercase letter (``yBi``) or at
  the line's ends, and boundaries never sit next to a space. It counts as a
  breadcrumb when it yields at least two parts, at least one of them known.
  When no part is known, a split on case changes alone is accepted only as a
  fallback for lines of at most four words whose parts all have three or
  more characters, and only if the next line reads as a headline (see
  below). Likewise a lone unrecognised line of at most three words and 30
  characters is a one-part section if the next line reads as a headline. A
  line "reads as a headline" when it is not a byline, does not end with a
  full stop, has more words than the kicker, and is followed by more text.
  The first region line sets ``region``; every other kicker extends
  ``section_path``. Each part is capitalised and otherwise spelt as in the
  source.
* Headline. The first line that is not a kicker. It must not be a byline
  and must be at most 300 characters long.
* Byline. A line ``By <names> | <date>`` right after the headline, or right
  after one standfirst line that follows the headline. The names must each
  start with a capital (particles such as "de" and "van" excepted) so that
  a sentence like "By the time ..." is never a byline. Names are split on
  commas, semicolons, "and" and "&"; a name whose last word is Desk, Team,
  Staff, Bureau, Newsroom or Board is the ``desk``, the others are
  ``authors``. Parts after ``|`` are dates: the first is ``published_at``, a
  part starting "Updated" is ``updated_at``. A date without a time zone is
  taken as UTC. A line holding only a date may follow the byline or the
  headline and sets ``published_at``.
* Dek. A line between the headline and the byline is the dek. Otherwise, if
  there is a byline, the first body paragraph is the dek when it is a single
  sentence of at most 400 characters and at least two paragraphs follow it.
  Without a byline no dek is inferred, as a one-sentence lede is common.
* Body. Within a blank-line-separated block, a line that does not end a
  sentence is joined to the next line when that one starts in lowercase or
  when the first is too long to be a subheading (hard-wrapped text).
  Paragraphs glued together without a break (``disputes.However``) are split
  where ``.``, ``?`` or ``!`` follows a lowercase letter or a closing
  quote or bracket and precedes an uppercase letter followed by a lowercase
  one; abbreviations such as "U.S.", "e.g." and "Mr." and numbers such as
  "3.5" are left alone. A piece of at most 12 words and 100 characters that
  starts with a capital or digit, holds one sentence and does not end in
  ``.``, ``!``, ``,`` or ``;`` is a subheading (``Block(kind="heading")``);
  the last block is never a subheading. Lines starting ``>`` are quotes,
  ``## Title`` lines are subheadings, everything else is a paragraph.
* Promotional footer without hashtags. If one of the last three body blocks
  starts like a promotion ("Stay informed", "Subscribe", "Sign up", "Get
  weekly highlights", ...), it and the blocks after it are dropped.

``ParseError`` is raised, with a one-line reason, for empty or
whitespace-only text, binary garbage, no headline, a headline longer than
300 characters, and a headline without body text.
"""

from __future__ import annotations

import datetime as dt
import re
import unicodedata
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

from dateutil import parser as date_parser

from bellwether.news.ingest.types import Block, ParsedArticle, ParseError

__all__ = ["BUILTIN_REGIONS", "BUILTIN_SECTIONS", "parse_seed_text"]

BUILTIN_SECTIONS: tuple[str, ...] = (
    "News", "Breaking News", "World", "National", "Local", "Politics",
    "Government", "Diplomacy", "Foreign Policy", "Security",
    "National Security", "Defense", "Defence", "Military", "Elections",
    "Policy", "Business", "Economy", "Markets", "Finance", "Money", "Trade",
    "Energy", "Technology", "Tech", "Science", "Health", "Climate",
    "Environment", "Sport", "Sports", "Culture", "Arts", "Entertainment",
    "Lifestyle", "Travel", "Food", "Opinion", "Analysis", "Editorial",
    "Commentary", "Features", "Investigations", "Education", "Law",
    "Justice", "Crime", "Courts", "Religion", "Media", "Society",
    "Immigration", "Labor", "Labour", "Housing", "Real Estate", "Transport",
    "Agriculture", "Space", "Weather", "Obituaries", "Explainers",
    "Interviews", "Prediction Markets",
)  # fmt: skip

BUILTIN_REGIONS: tuple[str, ...] = (
    "Asia-Pacific", "APAC", "Asia", "East Asia", "Southeast Asia",
    "South Asia", "Central Asia", "Europe", "Western Europe",
    "Eastern Europe", "Central Europe", "Northern Europe", "Southern Europe",
    "Nordics", "Balkans", "Middle East", "MENA", "Gulf", "Africa",
    "North Africa", "West Africa", "East Africa", "Southern Africa",
    "Sub-Saharan Africa", "Americas", "North America", "Latin America",
    "South America", "Central America", "Caribbean", "LATAM", "Oceania",
    "Pacific", "Arctic", "Antarctica", "EMEA",
)  # fmt: skip

MAX_HEADLINE_CHARS = 300
MAX_GARBAGE_PERCENT = 5
MAX_KICKER_LINES = 3
MAX_KICKER_CHARS = 80
MAX_RUN_TOGETHER_WORDS = 6
MAX_FALLBACK_WORDS = 4
MIN_FALLBACK_PART_CHARS = 3
MAX_LONE_KICKER_WORDS = 3
MAX_LONE_KICKER_CHARS = 30
MAX_SEPARATED_PART_CHARS = 40
MAX_SEPARATED_PART_WORDS = 5
MAX_HEADING_WORDS = 12
MAX_HEADING_CHARS = 100
MAX_DEK_CHARS = 400
MAX_BYLINE_CHARS = 200
MAX_TAG_CHARS = 60
MAX_TAG_WORDS = 6
MAX_FOOTER_LINES = 4
MAX_FOOTER_CHARS = 600
PROMO_TAIL_BLOCKS = 3

_DESK_WORDS = frozenset({"desk", "team", "staff", "bureau", "newsroom", "board"})
_NAME_PARTICLES = frozenset(
    {"and", "de", "del", "della", "der", "den", "van", "von", "la", "le",
     "da", "di", "du", "dos", "das", "bin", "ibn", "al", "el", "y", "&"}
)  # fmt: skip
# Words that end in a full stop without ending a sentence; titles only in
# their capitalised form, since "no." and "st." can end a sentence.
_ABBREVIATIONS = frozenset(
    {"Mr", "Mrs", "Ms", "Dr", "Prof", "St", "Jr", "Sr", "Gen", "Gov", "Sen",
     "Rep", "Lt", "Col", "Capt", "Sgt", "Mt", "No", "Vs", "vs", "approx",
     "Dept", "Fig", "fig", "Vol", "vol", "pp"}
)  # fmt: skip

_CLOSERS = "\"”’')]"
_OPENERS = "“‘("
# U+FEFF covers a leading BOM as well as stray ones from concatenated files.
_ZERO_WIDTH = dict.fromkeys(map(ord, "\u200b\u2060\ufeff\u00ad"))
# splitlines() already breaks on these, so they are not stray controls.
_LINE_CONTROLS = frozenset("\t\n\r\x0b\x0c\x1c\x1d\x1e\x1f\x85")

_SEPARATOR_RE = re.compile(r"\s*[>›»|]\s*")
_SPACED_SLASH_RE = re.compile(r"\s+/\s+")
_KICKER_PUNCT_RE = re.compile(r"[!?;:,\"“”]|[^\W\d_]{2}\.(?:\s|$)")
_HASHTAG_START_RE = re.compile(r"#[^\s#]")
_HASHTAG_SPLIT_RE = re.compile(r"(?:^|\s+)#(?=[^\s#])")
_BYLINE_RE = re.compile(r"by\s+(\S.*)", re.IGNORECASE)
_BYLINE_PARTS_RE = re.compile(r"\s*[|•·]\s*|\s+[—–]\s+")
_BYLINE_NAME_PUNCT_RE = re.compile(r"[^\w\s,;&.'’-]")
_NAME_SPLIT_RE = re.compile(r"\s*[,;&]\s*|\s+and\s+")
_DATE_LABEL_RE = re.compile(r"(published|updated|posted)\b\s*:?\s*", re.IGNORECASE)
_MONTHS = (
    r"(?:jan|feb|mar|apr|may|jun|jul|aug|sep|sept|oct|nov|dec)[a-z]*\.?"
)
_DATE_LINE_RE = re.compile(
    rf"""(?:[a-z]+,?\s+)?            # optional weekday
    (?:\d{{4}}-\d{{1,2}}-\d{{1,2}}(?:[T\s][\d:.]+(?:Z|[+-]\d{{2}}:?\d{{2}})?)?
      |\d{{1,2}}/\d{{1,2}}/\d{{4}}
      |{_MONTHS}\s+\d{{1,2}}(?:st|nd|rd|th)?,?\s+\d{{4}}
      |\d{{1,2}}(?:st|nd|rd|th)?\s+{_MONTHS},?\s+\d{{4}})""",
    re.IGNORECASE | re.VERBOSE,
)
_SENTENCE_END_RE = re.compile(r"[.!?]+[\"”’')\]]*\s+(?=[\"“‘(]?[A-Z0-9])")
_GLUE_RE = re.compile(r"[.!?]+[\"”’')\]]*(?=[“‘(]?[^\W\d_]{2})")
_MARKDOWN_HEADING_RE = re.compile(r"#{1,6}\s+(\S.*)")
_PROMO_RE = re.compile(
    r"""(?:stay\s+informed
      |subscribe\b
      |sign\s+up\b
      |get\s+(?:weekly|daily)\s+highlights
      |get\s+the\s+latest\b
      |join\s+our\s+(?:newsletter|mailing\s+list|community)
      |follow\s+us\b
      |download\s+(?:our|the)\s+app
      |don[’']t\s+miss\b
      |enjoyed\s+this\b
      |(?:like|share)\s+this\s+(?:article|story)\b
      |support\s+(?:our|independent)\s+journalism)""",
    re.IGNORECASE | re.VERBOSE,
)


class _Line(NamedTuple):
    """A cleaned, non-empty line and whether blank lines preceded it."""

    text: str
    after_blank: bool


@dataclass
class _Byline:
    """What a byline line says."""

    desk: str = ""
    authors: list[str] = field(default_factory=list)
    published_at: dt.datetime | None = None
    updated_at: dt.datetime | None = None


@dataclass
class _Vocabulary:
    """Normalised keys of the names a kicker line is compared against."""

    sections: frozenset[str]
    regions: frozenset[str]


def parse_seed_text(
    text: str,
    *,
    source_key: str,
    known_sections: Iterable[str] = (),
    known_regions: Iterable[str] = (),
) -> ParsedArticle:
    r"""Parse one plain-text seed article; see the module docstring for the rules.

    ``known_sections`` and ``known_regions`` add to the built-in lists of
    section and region names used to recognise kicker lines. Raise
    ``ParseError`` when the text cannot be read as an article.

    >>> article = parse_seed_text(
    ...     "Europe\nNight Trains Return To The Alps\nService resumed on Monday.\n#rail\n",
    ...     source_key="demo.txt",
    ... )
    >>> article.region, article.headline, article.tags, len(article.body)
    ('Europe', 'Night Trains Return To The Alps', ('rail',), 1)
    """
    lines = _clean_lines(text)
    lines, tags, featured = _split_off_tags(lines)
    vocabulary = _Vocabulary(
        sections=_keys([*BUILTIN_SECTIONS, *_as_names(known_sections), *tags]),
        regions=_keys([*BUILTIN_REGIONS, *_as_names(known_regions)]),
    )

    region = ""
    section_path: list[str] = []
    index = 0
    while index < min(len(lines), MAX_KICKER_LINES):
        kicker = _classify_kicker(lines, index, vocabulary)
        if kicker is None:
            break
        kind, parts = kicker
        if kind == "region" and not region:
            region = parts[0]
        else:
            section_path.extend(parts)
        index += 1

    if index >= len(lines) or _parse_byline(lines[index].text) is not None:
        raise ParseError("no headline found")
    headline = lines[index].text
    if len(headline) > MAX_HEADLINE_CHARS:
        raise ParseError(f"headline is longer than {MAX_HEADLINE_CHARS} characters")
    index += 1

    dek = ""
    byline = _parse_byline(lines[index].text) if index < len(lines) else None
    if byline is not None:
        index += 1
    elif index + 1 < len(lines) and len(lines[index].text) <= MAX_DEK_CHARS:
        byline = _parse_byline(lines[index + 1].text)
        if byline is not None:
            dek = lines[index].text
            index += 2
    byline = byline or _Byline()
    if byline.published_at is None and index < len(lines):
        published_at = _parse_date_line(lines[index].text)
        if published_at is not None:
            byline.published_at = published_at
            index += 1
    has_byline = bool(byline.desk or byline.authors)

    body = _body_blocks(lines[index:])
    body = _drop_promo_tail(body)
    if body and body[-1].kind == "heading":
        # A subheading introduces text; with nothing after it, it is text.
        body[-1] = Block(kind="paragraph", text=body[-1].text)
    if has_byline and not dek and _is_dek(body):
        dek = body.pop(0).text
    if not body:
        raise ParseError("no body text after the headline")

    return ParsedArticle(
        source_key=source_key,
        headline=headline,
        body=body,
        dek=dek,
        section_path=tuple(section_path),
        region=region,
        desk=byline.desk,
        authors=tuple(byline.authors),
        published_at=byline.published_at,
        updated_at=byline.updated_at,
        tags=tuple(tags),
        featured=featured,
    )


# --- cleaning ---------------------------------------------------------------


def _clean_lines(text: str) -> list[_Line]:
    """Return the non-empty lines of ``text``, cleaned, or raise ``ParseError``."""
    if "\x00" in text:
        raise ParseError("binary data: text contains NUL bytes")
    stray = sum(map(_is_stray_control, text))
    if (stray + text.count("\ufffd")) * 100 > len(text) * MAX_GARBAGE_PERCENT:
        raise ParseError("binary data: too many control or replacement characters")
    if stray:
        text = "".join(ch for ch in text if not _is_stray_control(ch))
    text = unicodedata.normalize("NFC", text).translate(_ZERO_WIDTH)

    lines: list[_Line] = []
    after_blank = False
    for raw in text.splitlines():
        line = " ".join(raw.split())
        if not line:
            after_blank = True
            continue
        lines.append(_Line(line, after_blank))
        after_blank = False
    if not lines:
        raise ParseError("empty text")
    return lines


def _is_stray_control(ch: str) -> bool:
    """Return whether ``ch`` is a control character that is not a line break or tab."""
    return ch not in _LINE_CONTROLS and unicodedata.category(ch) == "Cc"


def _as_names(names: Iterable[str]) -> list[str]:
    """Return ``names`` as a list, treating a lone string as one name, not letters."""
    if isinstance(names, str):
        return [names]
    return [name for name in names if isinstance(name, str)]


def _key(name: str) -> str:
    """Return the case-, space- and punctuation-insensitive form of ``name``."""
    return "".join(ch for ch in name.casefold() if ch.isalnum())


def _keys(names: Iterable[str]) -> frozenset[str]:
    """Return the non-empty keys of ``names``."""
    return frozenset(key for key in map(_key, names) if key)


def _capitalise(part: str) -> str:
    """Upper-case the first character, leaving the rest as spelt."""
    return part[:1].upper() + part[1:]


# --- hashtags and footer ----------------------------------------------------


def _split_off_tags(lines: list[_Line]) -> tuple[list[_Line], list[str], bool]:
    """Remove the hashtag block and the footer after it.

    Return the remaining lines, the tags and whether ``#featured`` was seen.
    """
    last = next(
        (i for i in range(len(lines) - 1, -1, -1) if _hashtags(lines[i].text) is not None),
        None,
    )
    if last is None:
        return lines, [], False
    footer = lines[last + 1 :]
    if len(footer) > MAX_FOOTER_LINES or sum(len(line.text) for line in footer) > MAX_FOOTER_CHARS:
        return lines, [], False
    first = last
    while first > 0 and _hashtags(lines[first - 1].text) is not None:
        first -= 1

    tags: list[str] = []
    seen: set[str] = set()
    featured = False
    for line in lines[first : last + 1]:
        for tag in _hashtags(line.text) or ():
            folded = tag.casefold()
            if folded == "featured":
                featured = True
            elif folded not in seen:
                seen.add(folded)
                tags.append(tag)
    return lines[:first], tags, featured


def _hashtags(line: str) -> list[str] | None:
    """Return the tags on a hashtag-only line, or ``None`` for any other line."""
    if not _HASHTAG_START_RE.match(line):
        return None
    tags = [part.strip().rstrip(",;").strip() for part in _HASHTAG_SPLIT_RE.split(line)[1:]]
    for tag in tags:
        if (
            not tag
            or len(tag) > MAX_TAG_CHARS
            or len(tag.split()) > MAX_TAG_WORDS
            or tag[-1] in ".!?"
        ):
            return None
    return tags


# --- kickers ----------------------------------------------------------------


def _classify_kicker(
    lines: Sequence[_Line], index: int, vocabulary: _Vocabulary
) -> tuple[str, tuple[str, ...]] | None:
    """Return ("region" or "section", parts) if line ``index`` is a kicker."""
    line = lines[index].text
    if index + 1 >= len(lines):
        return None
    if (
        _parse_byline(line) is not None
        or len(line) > MAX_KICKER_CHARS
        or _KICKER_PUNCT_RE.search(line)
        or not any(ch.isalpha() for ch in line)
    ):
        return None

    key = _key(line)
    if key in vocabulary.regions:
        return "region", (_capitalise(line),)
    separated = _split_separated(line, vocabulary.sections)
    if separated is not None:
        return "section", separated
    if key in vocabulary.sections:
        return "section", (_capitalise(line),)

    segmented = None
    if len(line.split()) <= MAX_RUN_TOGETHER_WORDS:
        segmented = _segment(line, vocabulary.sections)
    if segmented is not None:
        parts, known = segmented
        if len(parts) >= 2 and known:
            return "section", parts

    # Unrecognised lines are kickers only when a headline clearly follows.
    if not _reads_as_headline(lines, index + 1, line):
        return None
    if (
        segmented is not None
        and len(segmented[0]) >= 2
        and len(line.split()) <= MAX_FALLBACK_WORDS
        and all(len(part) >= MIN_FALLBACK_PART_CHARS for part in segmented[0])
    ):
        return "section", segmented[0]
    if len(line.split()) <= MAX_LONE_KICKER_WORDS and len(line) <= MAX_LONE_KICKER_CHARS:
        return "section", (_capitalise(line),)
    return None


def _reads_as_headline(lines: Sequence[_Line], index: int, kicker: str) -> bool:
    """Return whether line ``index`` looks like a headline following ``kicker``."""
    text = lines[index].text
    return (
        index + 1 < len(lines)
        and len(text) <= MAX_HEADLINE_CHARS
        and _parse_byline(text) is None
        and not text.rstrip(_CLOSERS).endswith(".")
        and len(text.split()) > len(kicker.split())
    )


def _split_separated(line: str, sections: frozenset[str]) -> tuple[str, ...] | None:
    """Split a breadcrumb written with separators, or return ``None``."""
    parts = _SEPARATOR_RE.split(line)
    if len(parts) < 2:
        parts = _SPACED_SLASH_RE.split(line)
    if len(parts) < 2:
        # "Dokdo/Takeshima" is a name, so a bare slash needs known names.
        parts = line.split("/")
        if len(parts) < 2 or not all(_key(part) in sections for part in parts):
            return None
    parts = [part.strip() for part in parts]
    if any(
        not part
        or len(part) > MAX_SEPARATED_PART_CHARS
        or len(part.split()) > MAX_SEPARATED_PART_WORDS
        for part in parts
    ):
        return None
    return tuple(_capitalise(part) for part in parts)


def _segment(line: str, sections: frozenset[str]) -> tuple[tuple[str, ...], int] | None:
    """Split a run-together breadcrumb into parts.

    Return the parts and how many of them are known section names, or
    ``None`` when the line cannot be split under the rules in the module
    docstring. The cost of a split is (characters not covered by known
    names, number of parts); the cheapest split wins.
    """
    n = len(line)
    case_change = [
        0 < j < n - 1 and line[j - 1].islower() and line[j].isupper() and line[j + 1].islower()
        for j in range(n)
    ]
    cuttable = [j == 0 or (not line[j - 1].isspace() and not line[j].isspace()) for j in range(n)]
    cuttable.append(True)

    # best[(end, last_part_known)] = (cost, start, previous_known); the start
    # counts as known so that the first part needs no case change before it.
    best: dict[tuple[int, bool], tuple[tuple[int, int], int, bool]] = {
        (0, True): ((0, 0), -1, True)
    }
    for end in range(1, n + 1):
        if not cuttable[end]:
            continue
        for start in range(end):
            if not cuttable[start]:
                continue
            piece = line[start:end]
            known = _key(piece) in sections
            if not known and any(case_change[start + 1 : end]):
                continue
            for previous_known in (True, False):
                previous = best.get((start, previous_known))
                if previous is None:
                    continue
                # Unknown parts may only meet their neighbours at a case change.
                if start > 0 and not (known and previous_known) and not case_change[start]:
                    continue
                unknown_chars, part_count = previous[0]
                cost = (unknown_chars + (0 if known else len(piece)), part_count + 1)
                current = best.get((end, known))
                if current is None or cost < current[0]:
                    best[(end, known)] = (cost, start, previous_known)

    finals = [(best[(n, known)][0], known) for known in (True, False) if (n, known) in best]
    if not finals:
        return None
    _, known = min(finals)
    parts: list[str] = []
    known_count = 0
    end = n
    while end > 0:
        _, start, previous_known = best[(end, known)]
        parts.append(_capitalise(line[start:end]))
        known_count += known
        end, known = start, previous_known
    return tuple(reversed(parts)), known_count


# --- byline and dates -------------------------------------------------------


def _parse_byline(line: str) -> _Byline | None:
    """Return the parsed byline, or ``None`` if ``line`` is not a byline."""
    match = _BYLINE_RE.fullmatch(line)
    if match is None or len(line) > MAX_BYLINE_CHARS:
        return None
    names, *extras = _BYLINE_PARTS_RE.split(match.group(1))
    words = names.replace(",", " ").replace(";", " ").split()
    # Title-case headlines ("By Design: How ...") carry other punctuation.
    if _BYLINE_NAME_PUNCT_RE.search(names) or not words or not all(
        word[0].isupper() or word.casefold() in _NAME_PARTICLES for word in words
    ):
        return None

    byline = _Byline()
    for name in _NAME_SPLIT_RE.split(names):
        name = name.strip()
        if not name:
            continue
        if name.split()[-1].casefold() in _DESK_WORDS:
            byline.desk = byline.desk or name
        else:
            byline.authors.append(name)
    for extra in extras:
        label = _DATE_LABEL_RE.match(extra)
        value = _parse_date(extra[label.end() :] if label else extra)
        if value is None:
            continue
        if label and label.group(1).casefold() == "updated":
            byline.updated_at = byline.updated_at or value
        elif byline.published_at is None:
            byline.published_at = value
    return byline


def _parse_date_line(line: str) -> dt.datetime | None:
    """Return the date on a line that holds only a (labelled) date."""
    label = _DATE_LABEL_RE.match(line)
    value = line[label.end() :] if label else line
    if label and label.group(1).casefold() == "updated":
        return None
    if not _DATE_LINE_RE.fullmatch(value.rstrip(".")):
        return None
    return _parse_date(value)


def _parse_date(value: str) -> dt.datetime | None:
    """Return ``value`` as an aware datetime (UTC if no zone is given), or ``None``."""
    value = value.strip().rstrip(".")
    # Without a year dateutil silently fills in the current one.
    if not value or len(value) > 60 or not re.search(r"\d{4}", value):
        return None
    try:
        with warnings.catch_warnings():
            # An unknown zone name ("EST") still gives a usable date.
            warnings.simplefilter("ignore")
            parsed = date_parser.parse(value, default=dt.datetime(2000, 1, 1))
    except (ValueError, OverflowError):
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=dt.UTC)
    return parsed


# --- body -------------------------------------------------------------------


def _body_blocks(lines: Sequence[_Line]) -> list[Block]:
    """Turn the body lines into heading, paragraph and quote blocks."""
    blank_separated = any(line.after_blank for line in lines[1:])
    units: list[str] = []
    for line in lines:
        if units and blank_separated and not line.after_blank and _continues(units[-1], line.text):
            units[-1] = f"{units[-1]} {line.text}"
        else:
            units.append(line.text)

    blocks: list[Block] = []
    for unit in units:
        if unit.startswith(">"):
            quote = unit.lstrip("> ")
            if quote:
                blocks.append(Block(kind="quote", text=quote))
            continue
        markdown = _MARKDOWN_HEADING_RE.fullmatch(unit)
        if markdown:
            blocks.append(Block(kind="heading", text=markdown.group(1)))
            continue
        for piece in _split_glued(unit):
            kind = "heading" if _looks_like_heading(piece) else "paragraph"
            blocks.append(Block(kind=kind, text=piece))
    return blocks


def _continues(previous: str, line: str) -> bool:
    """Return whether ``line`` carries on the hard-wrapped ``previous`` line."""
    if line.startswith((">", "#")) or _ends_sentence(previous):
        return False
    return (
        line[0].islower()
        or len(previous) > MAX_HEADING_CHARS
        or len(previous.split()) > MAX_HEADING_WORDS
    )


def _ends_sentence(text: str) -> bool:
    """Return whether ``text`` ends with sentence-final punctuation."""
    return text.rstrip(_CLOSERS)[-1:] in (".", "!", "?", ":", "…")


def _split_glued(unit: str) -> list[str]:
    """Split paragraphs run together without a break ("disputes.However")."""
    pieces: list[str] = []
    start = 0
    for match in _GLUE_RE.finditer(unit):
        before = unit[match.start() - 1] if match.start() else ""
        if not (before.islower() or (before and before in _CLOSERS)):
            continue
        after = match.end()
        if unit[after] in _OPENERS:
            after += 1
        if not (unit[after].isupper() and unit[after + 1].islower()):
            continue
        if _is_abbreviation(unit[start : match.start()]):
            continue
        pieces.append(unit[start : match.end()].strip())
        start = match.end()
    pieces.append(unit[start:].strip())
    return [piece for piece in pieces if piece]


def _is_abbreviation(text_before: str) -> bool:
    """Return whether the word ending ``text_before`` is an abbreviation."""
    words = text_before.split()
    word = words[-1] if words else ""
    return "." in word or word.lstrip(_OPENERS + "\"'") in _ABBREVIATIONS


def _sentence_count(text: str) -> int:
    """Count the sentences in ``text``, not counting abbreviations as ends."""
    count = 1
    for match in _SENTENCE_END_RE.finditer(text):
        if match.group().startswith(".") and _is_abbreviation(text[: match.start()]):
            continue
        count += 1
    return count


def _looks_like_heading(piece: str) -> bool:
    """Return whether ``piece`` reads as a subheading rather than a paragraph."""
    return (
        len(piece) <= MAX_HEADING_CHARS
        and len(piece.split()) <= MAX_HEADING_WORDS
        and (piece[0].isupper() or piece[0].isdigit() or piece[0] in _OPENERS + "\"'")
        and piece.rstrip(_CLOSERS)[-1:] not in (".", "!", ",", ";", "…")
        and _sentence_count(piece) == 1
    )


def _drop_promo_tail(blocks: list[Block]) -> list[Block]:
    """Drop a promotional footer from the last few blocks."""
    for index in range(max(0, len(blocks) - PROMO_TAIL_BLOCKS), len(blocks)):
        if _PROMO_RE.match(blocks[index].text):
            return blocks[:index]
    return blocks


def _is_dek(blocks: Sequence[Block]) -> bool:
    """Return whether the first body block is a one-sentence standfirst."""
    if not blocks or blocks[0].kind != "paragraph":
        return False
    first = blocks[0].text
    following = sum(block.kind == "paragraph" for block in blocks[1:])
    return len(first) <= MAX_DEK_CHARS and _sentence_count(first) == 1 and following >= 2
