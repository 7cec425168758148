"""Tests for the plain-text seed article parser."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bellwether.news.ingest.seedtext import parse_seed_text
from bellwether.news.ingest.types import Block, ParsedArticle, ParseError

SEEDS_DIR = Path(__file__).resolve().parents[2].parent / "shared" / "seeds"

# Hypothesis must not write an example database into the repository.
HYPOTHESIS = settings(database=None, deadline=None, max_examples=150)


def read_seed(prefix: str) -> tuple[str, str]:
    """Return the name and text of the seed file whose name starts with ``prefix``."""
    (path,) = SEEDS_DIR.glob(f"{prefix}_*.txt")
    return path.name, path.read_text(encoding="utf-8")


def parse(text: str, **kwargs) -> ParsedArticle:
    """Parse ``text`` with a fixed source key."""
    return parse_seed_text(text, source_key="test.txt", **kwargs)


def all_text(article: ParsedArticle) -> str:
    """Join every text field of ``article`` that could carry body or footer text."""
    return "\n".join([article.headline, article.dek, *(block.text for block in article.body)])


def kinds(article: ParsedArticle) -> list[str]:
    """List the block kinds of the body, in order."""
    return [block.kind for block in article.body]


@pytest.fixture(scope="module")
def seed_000() -> ParsedArticle:
    """Parse seed 000 (region kicker, desk byline, blank-line layout)."""
    name, text = read_seed("000")
    return parse_seed_text(text, source_key=name)


@pytest.fixture(scope="module")
def seed_003() -> ParsedArticle:
    """Parse seed 003 (run-together breadcrumb, glued body, hashtags, footer)."""
    name, text = read_seed("003")
    return parse_seed_text(text, source_key=name)


# --- seed 000 ---------------------------------------------------------------


def test_seed_000_header(seed_000: ParsedArticle) -> None:
    """A region kicker, the headline and a desk byline with a date are read."""
    assert seed_000.source_key.startswith("000_")
    assert seed_000.region == "Asia-Pacific"
    assert seed_000.section_path == ()
    assert seed_000.headline.startswith("Japan-South Korea Summit")
    assert seed_000.desk == "National Security Desk"
    assert seed_000.authors == ()
    assert seed_000.published_at is not None
    assert seed_000.published_at.date() == dt.date(2026, 1, 13)
    assert seed_000.published_at.utcoffset() == dt.timedelta(0)


def test_seed_000_dek_is_the_one_sentence_paragraph_after_the_byline(
    seed_000: ParsedArticle,
) -> None:
    """The one-sentence summary after the byline becomes the dek, not body."""
    assert seed_000.dek.startswith("In a high-stakes summit")
    assert seed_000.body[0].kind == "paragraph"
    assert seed_000.body[0].text.startswith("In the ancient Japanese capital")
    assert not any(block.text.startswith("In a high-stakes summit") for block in seed_000.body)


def test_seed_000_subheadings(seed_000: ParsedArticle) -> None:
    """Short lines without a closing full stop become headings, apostrophes intact."""
    headings = [block.text for block in seed_000.body if block.kind == "heading"]
    assert headings == [
        "Can Longstanding Animosities Yield to Strategic Necessity?",
        "America\u2019s Role: Navigating Allies Through Stormy Waters",
    ]
    assert seed_000.body[-1].kind == "paragraph"
    assert seed_000.tags == ()
    assert seed_000.featured is False


def test_seed_000_keeps_abbreviations_inside_paragraphs(seed_000: ParsedArticle) -> None:
    """"U.S." inside a paragraph does not split it."""
    (paragraph,) = [block for block in seed_000.body if "U.S. allies" in block.text]
    assert paragraph.text.startswith("As two key U.S. allies")
    assert paragraph.text.endswith("all parties involved.")


def test_seed_000_with_crlf_bom_and_trailing_newline_parses_the_same(
    seed_000: ParsedArticle,
) -> None:
    """CRLF line ends, a BOM and a trailing newline change nothing."""
    name, text = read_seed("000")
    assert "\r" not in text and not text.startswith("\ufeff")
    variant = "\ufeff" + text.replace("\n", "\r\n") + "\r\n"
    assert parse_seed_text(variant, source_key=name) == seed_000


# --- seed 003 ---------------------------------------------------------------


def test_seed_003_header(seed_003: ParsedArticle) -> None:
    """A run-together breadcrumb is split with the help of the file's hashtags."""
    assert seed_003.section_path == ("Politics", "Diplomacy", "Bilateral Relations")
    assert seed_003.region == ""
    assert seed_003.headline == (
        "Japan and South Korea Forge Cautious Path Forward in High-Stakes Summit"
    )
    assert seed_003.dek == ""
    assert seed_003.desk == "" and seed_003.authors == ()
    assert seed_003.published_at is None


def test_seed_003_tags_and_featured(seed_003: ParsedArticle) -> None:
    """Hashtags become tags in order; #featured sets the flag instead."""
    assert seed_003.tags == (
        "Japan",
        "South Korea",
        "Sanae Takaichi",
        "Lee Jae-myung",
        "diplomacy",
        "APEC summit",
        "bilateral relations",
    )
    assert seed_003.featured is True


def test_seed_003_glued_paragraphs_are_split(seed_003: ParsedArticle) -> None:
    """A body on one line is split where a full stop runs into the next sentence."""
    assert len(seed_003.body) >= 4
    assert set(kinds(seed_003)) == {"paragraph"}
    texts = [block.text for block in seed_003.body]
    (index,) = [i for i, text in enumerate(texts) if text.endswith("contentious disputes.")]
    assert texts[index + 1].startswith("However,")
    assert not any("disputes.However" in text for text in texts)


def test_seed_003_drops_the_promotional_footer(seed_003: ParsedArticle) -> None:
    """The footer after the hashtags appears nowhere in the article."""
    text = all_text(seed_003)
    assert "Stay Informed" not in text
    assert "weekly highlights" not in text
    assert "prediction markets" not in text


# --- kickers and breadcrumbs ------------------------------------------------

HEADLINE = "Rail Strike Ends After Marathon Overnight Talks"
BODY = "Unions accepted the offer on Friday. Trains will run again next week."


@pytest.mark.parametrize(
    "kicker",
    [
        "World > Europe > Elections",
        "World › Europe › Elections",
        "World » Europe » Elections",
        "World | Europe | Elections",
        "World / Europe / Elections",
        "world>europe>elections",
    ],
)
def test_breadcrumb_with_separators(kicker: str) -> None:
    """Separated breadcrumb parts become the section path, each capitalised."""
    article = parse(f"{kicker}\n{HEADLINE}\n{BODY}\n")
    assert article.section_path == ("World", "Europe", "Elections")
    assert article.region == ""
    assert article.headline == HEADLINE


def test_bare_slash_splits_only_known_names() -> None:
    """A slash without spaces splits known names but not other words."""
    assert parse(f"Business/Markets\n{HEADLINE}\n{BODY}").section_path == ("Business", "Markets")
    assert parse(f"Dokdo/Takeshima\n{HEADLINE}\n{BODY}").section_path == ("Dokdo/Takeshima",)


def test_run_together_breadcrumb_uses_known_sections() -> None:
    """All-lowercase run-together parts are split only when their names are known."""
    text = f"Culturecinemareviews\n{HEADLINE}\n{BODY}\n"
    known = parse(text, known_sections=["Cinema", "reviews"])
    assert known.section_path == ("Culture", "Cinema", "Reviews")
    assert parse(text).section_path == ("Culturecinemareviews",)


def test_run_together_breadcrumb_uses_the_files_hashtags() -> None:
    """The file's own hashtags count as known section names."""
    text = f"Sciencemarine biology\n{HEADLINE}\n{BODY}\n"
    with_tag = parse(text + "#marine biology\n")
    assert with_tag.section_path == ("Science", "Marine biology")
    assert with_tag.tags == ("marine biology",)
    assert parse(text).section_path == ("Sciencemarine biology",)


def test_run_together_breadcrumb_prefers_fewest_known_parts() -> None:
    """A longer known name beats splitting it into shorter known names."""
    text = f"WorldForeign Policy\n{HEADLINE}\n{BODY}\n"
    assert parse(text).section_path == ("World", "Foreign Policy")
    article = parse(f"Politicsnational Security\n{HEADLINE}\n{BODY}\n")
    assert article.section_path == ("Politics", "National Security")
    compound = parse(
        f"Sciencespaceflight\n{HEADLINE}\n{BODY}\n", known_sections=("Flight", "Spaceflight")
    )
    assert compound.section_path == ("Science", "Spaceflight")


def test_run_together_breadcrumb_falls_back_to_case_changes() -> None:
    """Unknown run-together parts are split at lower-to-upper case changes."""
    article = parse(f"GardeningHouseplantsRepotting\n{HEADLINE}\n{BODY}\n")
    assert article.section_path == ("Gardening", "Houseplants", "Repotting")
    mixed = parse(f"ScienceAstrobiology\n{HEADLINE}\n{BODY}\n")
    assert mixed.section_path == ("Science", "Astrobiology")


def test_camel_case_headline_is_not_a_breadcrumb() -> None:
    """A camel-case first line is the headline when the next line is body text."""
    article = parse("YouTube Bans Creator Accounts\nThe platform acted on Monday.\nMore later.\n")
    assert article.headline == "YouTube Bans Creator Accounts"
    assert article.section_path == ()
    assert len(article.body) == 2


def test_region_and_breadcrumb_kickers_together() -> None:
    """A region line and a breadcrumb line may both precede the headline."""
    article = parse(f"Europe\n\nBusiness > Markets\n\n{HEADLINE}\n\n{BODY}\n")
    assert article.region == "Europe"
    assert article.section_path == ("Business", "Markets")
    assert article.headline == HEADLINE


def test_known_regions_extend_the_builtin_list() -> None:
    """A name in known_regions is a region; unknown, it is a one-part section."""
    text = f"Baltics\n{HEADLINE}\n{BODY}\n"
    assert parse(text, known_regions=("baltics",)).region == "Baltics"
    plain = parse(text)
    assert plain.region == ""
    assert plain.section_path == ("Baltics",)


def test_lone_unknown_kicker_is_a_one_part_section() -> None:
    """A short unrecognised line before a headline is a one-part section."""
    article = parse(f"field notes\n{HEADLINE}\n{BODY}\n")
    assert article.section_path == ("Field notes",)
    assert article.headline == HEADLINE


def test_headline_alone_on_top_is_not_a_kicker() -> None:
    """Without a kicker the first line is the headline."""
    article = parse(f"{HEADLINE}\n{BODY}\n")
    assert article.headline == HEADLINE
    assert article.section_path == () and article.region == ""
    assert article.body == [Block(kind="paragraph", text=BODY)]


# --- byline, dates and dek --------------------------------------------------


def test_byline_with_two_people() -> None:
    """Names joined by "and" are two authors; the date after | is published_at."""
    article = parse(f"{HEADLINE}\nBy Ana Ruiz and Tom Lee | March 2, 2025\n{BODY}\n")
    assert article.authors == ("Ana Ruiz", "Tom Lee")
    assert article.desk == ""
    assert article.published_at == dt.datetime(2025, 3, 2, tzinfo=dt.UTC)
    assert article.body == [Block(kind="paragraph", text=BODY)]


def test_byline_with_authors_desk_and_updated_date() -> None:
    """Commas and & separate names; a desk name goes to desk; Updated is read."""
    article = parse(
        f"{HEADLINE}\n"
        "By Ana Ruiz, Tom Lee & Kim Park, Climate Desk | 2025-03-02 | Updated March 3, 2025\n"
        f"{BODY}\n"
    )
    assert article.authors == ("Ana Ruiz", "Tom Lee", "Kim Park")
    assert article.desk == "Climate Desk"
    assert article.published_at == dt.datetime(2025, 3, 2, tzinfo=dt.UTC)
    assert article.updated_at == dt.datetime(2025, 3, 3, tzinfo=dt.UTC)


def test_byline_keeps_a_given_time_zone() -> None:
    """A date with an offset stays in that offset."""
    article = parse(f"{HEADLINE}\nBy Ana Ruiz | 2025-03-02T09:30:00+09:00\n{BODY}\n")
    assert article.published_at == dt.datetime(
        2025, 3, 2, 9, 30, tzinfo=dt.timezone(dt.timedelta(hours=9))
    )


def test_sentence_starting_with_by_is_not_a_byline() -> None:
    """"By the time ..." is body text."""
    sentence = "By the time the polls closed, turnout had doubled."
    article = parse(f"{HEADLINE}\n{sentence}\n{BODY}\n")
    assert article.authors == () and article.desk == ""
    assert article.body[0].text == sentence


def test_date_line_sets_published_at() -> None:
    """A line holding only a date after the headline is the publication date."""
    article = parse(f"{HEADLINE}\nPublished: 2 March 2025\n{BODY}\n")
    assert article.published_at == dt.datetime(2025, 3, 2, tzinfo=dt.UTC)
    assert article.body == [Block(kind="paragraph", text=BODY)]


def test_unparseable_byline_date_is_none() -> None:
    """A byline whose date part cannot be read leaves published_at empty."""
    article = parse(f"{HEADLINE}\nBy Ana Ruiz | sometime soon\n{BODY}\n")
    assert article.authors == ("Ana Ruiz",)
    assert article.published_at is None


def test_dek_before_the_byline() -> None:
    """A line between the headline and the byline is the dek."""
    article = parse(f"{HEADLINE}\nA deal at last.\nBy Ana Ruiz | March 2, 2025\n{BODY}\n")
    assert article.dek == "A deal at last."
    assert article.authors == ("Ana Ruiz",)
    assert article.body == [Block(kind="paragraph", text=BODY)]


def test_no_dek_is_inferred_without_a_byline() -> None:
    """Without a byline a one-sentence first paragraph stays in the body."""
    text = f"{HEADLINE}\n\nThe strike is over.\n\n{BODY}\n\nMore talks follow.\n"
    article = parse(text)
    assert article.dek == ""
    assert article.body[0].text == "The strike is over."


def test_dek_needs_two_following_paragraphs() -> None:
    """After a byline a one-sentence paragraph is the dek only with two paragraphs after it."""
    head = f"{HEADLINE}\nBy Ana Ruiz\n\nThe strike is over.\n\n{BODY}\n"
    assert parse(head).dek == ""
    assert parse(head + "\nMore talks follow.\n").dek == "The strike is over."


# --- body -------------------------------------------------------------------


def test_abbreviations_and_numbers_do_not_split_paragraphs() -> None:
    """"U.S.", "Mr." and "3.5" do not start new paragraphs."""
    paragraph = (
        "U.S. officials said growth was 3.5 percent.U.S. officials and Mr.Smith "
        "agreed. Inflation eased (slightly).Markets rose."
    )
    article = parse(f"{HEADLINE}\n{paragraph}\n")
    assert [block.text for block in article.body] == [
        "U.S. officials said growth was 3.5 percent.U.S. officials and Mr.Smith agreed. "
        "Inflation eased (slightly).",
        "Markets rose.",
    ]


def test_glued_paragraphs_split_after_questions_and_quotes() -> None:
    """"?", "!" and closing quotes before a capitalised word mark a paragraph break."""
    article = parse(f'{HEADLINE}\nWhat next for the union?It said “no.”Talks ended!Nobody left.\n')
    assert [block.text for block in article.body] == [
        "What next for the union?",
        "It said “no.”",
        "Talks ended!",
        "Nobody left.",
    ]
    assert kinds(article) == ["heading", "paragraph", "paragraph", "paragraph"]


def test_subheading_rules() -> None:
    """Short unpunctuated lines are headings, except as the last block."""
    text = (
        f"{HEADLINE}\n\n{BODY}\n\nWhat Comes Next?\n\n{BODY}\n\nThe Road Ahead\n\n"
        f"{BODY}\n\n## Markdown Style Heading\n\n{BODY}\n\nA closing line without a stop\n"
    )
    article = parse(text)
    assert kinds(article) == [
        "paragraph", "heading", "paragraph", "heading", "paragraph",
        "heading", "paragraph", "paragraph",
    ]  # fmt: skip
    assert article.body[1].text == "What Comes Next?"
    assert article.body[5].text == "Markdown Style Heading"
    assert article.body[-1].text == "A closing line without a stop"


def test_quote_lines_become_quote_blocks() -> None:
    """A body line starting with ">" is a quote."""
    article = parse(f"{HEADLINE}\n{BODY}\n> We will be back.\n{BODY}\n")
    assert article.body[1] == Block(kind="quote", text="We will be back.")


def test_hard_wrapped_lines_are_joined() -> None:
    """Lines of one blank-separated paragraph that do not end a sentence are joined."""
    text = (
        f"{HEADLINE}\n\nThe union said the offer was\nfair and would be put to members.\n\n"
        "A second paragraph follows here.\n"
    )
    article = parse(text)
    assert [block.text for block in article.body] == [
        "The union said the offer was fair and would be put to members.",
        "A second paragraph follows here.",
    ]


def test_whitespace_is_normalised_and_apostrophes_kept() -> None:
    """Tabs, no-break and zero-width spaces collapse; typographic apostrophes stay."""
    article = parse(f"  {HEADLINE}\t\n\nThe union\u2019s\u00a0offer \t was\u200b fair.  \n")
    assert article.headline == HEADLINE
    assert article.body == [Block(kind="paragraph", text="The union\u2019s offer was fair.")]


def test_crlf_and_cr_line_endings() -> None:
    """CRLF and bare CR line ends read like LF."""
    lf = f"Europe\n{HEADLINE}\n\n{BODY}\n\nSecond paragraph here.\n\n#Rail\n#Unions"
    expected = parse(lf)
    assert expected.tags == ("Rail", "Unions") and len(expected.body) == 2
    assert parse(lf.replace("\n", "\r\n")) == expected
    assert parse(lf.replace("\n", "\r")) == expected


# --- hashtags and footers ---------------------------------------------------


def test_tags_are_deduplicated_and_featured_is_not_a_tag() -> None:
    """Tags keep their first spelling, drop case duplicates and #FEATURED."""
    article = parse(f"{HEADLINE}\n{BODY}\n#Japan #japan\n#FEATURED\n#Trade,\n\n#JAPAN\n")
    assert article.tags == ("Japan", "Trade")
    assert article.featured is True


def test_hashtag_sentence_in_body_is_not_a_tag() -> None:
    """A body line that starts with a hashtag but is a sentence stays in the body."""
    line = "#MeToo changed how the union handles complaints."
    article = parse(f"{HEADLINE}\n{BODY}\n{line}\n")
    assert article.tags == ()
    assert article.body[-1].text == line


def test_footer_after_hashtags_is_dropped_even_if_not_promotional() -> None:
    """Whatever follows the hashtag block is footer."""
    article = parse(f"{HEADLINE}\n{BODY}\n#Rail\nAll rights reserved by Example Media.\n")
    assert article.tags == ("Rail",)
    assert "All rights reserved" not in all_text(article)


def test_long_tail_after_hashtags_means_they_were_body_text() -> None:
    """Hashtag lines followed by much text are not a tag block."""
    tail = "\n".join(f"Paragraph number {n} goes on." for n in range(6))
    article = parse(f"{HEADLINE}\n{BODY}\n#Rail\n{tail}\n")
    assert article.tags == ()
    assert article.body[-1].text == "Paragraph number 5 goes on."


@pytest.mark.parametrize(
    "footer",
    [
        "Subscribe to our newsletter for more.",
        "Stay informed. Act smarter.\nGet weekly highlights and expert insights.",
        "Sign up for alerts\nIt takes one minute.",
    ],
)
def test_promotional_footer_without_hashtags_is_dropped(footer: str) -> None:
    """Without hashtags a trailing promotion is recognised by how it starts."""
    article = parse(f"{HEADLINE}\n\n{BODY}\n\nSecond paragraph here.\n\n{footer}\n")
    assert [block.text for block in article.body] == [BODY, "Second paragraph here."]
    assert article.tags == ()


def test_glued_promotional_footer_is_dropped() -> None:
    """A promotion glued onto the last paragraph is split off and dropped."""
    article = parse(f"{HEADLINE}\n{BODY}Stay Informed. Act Smarter.\n")
    assert article.body == [Block(kind="paragraph", text=BODY)]


# --- errors -----------------------------------------------------------------


GARBAGE = "binary data: too many control or replacement characters"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "empty text"),
        (" \n\t\r\n\ufeff\u00a0\n", "empty text"),
        (f"{HEADLINE}\x00\n{BODY}", "binary data: text contains NUL bytes"),
        ("\x01\x02\x03\x04 PK\x05\x06\x07\x08 \x0e\x0f", GARBAGE),
        ("PNG\ufffd\ufffd\n\ufffdIHDR\ufffd\nrest of the file", GARBAGE),
        ("#Japan\n#Korea\n", "no headline found"),
        ("Europe\nBy Ana Ruiz | March 2, 2025\nBody text here.", "no headline found"),
        (f"{HEADLINE}\n", "no body text after the headline"),
        (f"Europe\n\n{HEADLINE}\n\n#Rail\n", "no body text after the headline"),
        (f"{HEADLINE}\nBy Ana Ruiz | March 2, 2025\n", "no body text after the headline"),
        (f"{HEADLINE}\nStay informed. Subscribe today.\n", "no body text after the headline"),
        ("word " * 70 + f"\n{BODY}", "headline is longer than 300 characters"),
    ],
)
def test_parse_errors(text: str, message: str) -> None:
    """Unreadable input raises ParseError with a one-line reason."""
    with pytest.raises(ParseError) as raised:
        parse(text)
    assert str(raised.value) == message
    assert isinstance(raised.value, ValueError)


def test_headline_of_exactly_300_characters_is_accepted() -> None:
    """The headline limit is inclusive."""
    headline = ("Strike " * 43)[:299] + "s"
    assert len(headline) == 300
    assert parse(f"{headline}\n{BODY}").headline == headline


def test_a_few_stray_control_characters_are_removed() -> None:
    """Rare control characters in long text are dropped rather than rejected."""
    article = parse(f"{HEADLINE}\n{BODY}\x07\n")
    assert article.body == [Block(kind="paragraph", text=BODY)]


# --- properties -------------------------------------------------------------

FRAGMENTS = st.sampled_from(
    [
        "Asia-Pacific", "PoliticsdiplomacyBilateral Relations", "World > Europe",
        "By Ana Ruiz | March 2, 2025", "By ", "#featured", "#Japan", "#", "##",
        "Stay Informed. Act Smarter.", "", " ", "U.S.", "end.Start", "> quote",
        "What Next?", "\r", "\ufeff", "|", "›", "/",
    ]
)  # fmt: skip
MESSY_TEXT = st.one_of(
    st.text(),
    st.text(alphabet="aB .#>|/\n\r?:,Zz\u2019-1", max_size=200),
    st.lists(st.one_of(FRAGMENTS, st.text(max_size=20)), max_size=15).map("\n".join),
)


@HYPOTHESIS
@given(MESSY_TEXT)
def test_arbitrary_text_raises_only_parse_error(text: str) -> None:
    """Any text either parses into a headline with body or raises ParseError."""
    try:
        article = parse(text)
    except ParseError as error:
        assert "\n" not in str(error)
    else:
        assert article.headline
        assert article.body
        assert all(block.text for block in article.body)


@HYPOTHESIS
@given(st.text(st.characters(exclude_categories=("Cc", "Cs")), max_size=60))
def test_arbitrary_byline_dates_never_crash(date: str) -> None:
    """Whatever follows "|" in a byline, parsing does not fail."""
    article = parse(f"{HEADLINE}\nBy Ana Ruiz | {date}\n{BODY}\n")
    assert article.body[-1].text == BODY
    assert article.published_at is None or article.published_at.tzinfo is not None


LOWER_WORD = st.text(alphabet="abcdefghijklmnopqrstuvwxyz", min_size=2, max_size=9)
SENTENCE = st.builds(
    lambda first, middle, last: " ".join([first, *middle, last]) + ".",
    st.sampled_from(["The", "Officials", "Critics", "Analysts", "Residents"]),
    st.lists(LOWER_WORD, min_size=1, max_size=10),
    st.sampled_from(["today", "again", "there", "quickly", "later"]),
)
PARAGRAPH = st.lists(SENTENCE, min_size=1, max_size=3).map(" ".join)
HEADLINE_TEXT = st.lists(LOWER_WORD.map(str.capitalize), min_size=5, max_size=9).map(" ".join)
TAG = st.lists(st.one_of(LOWER_WORD, LOWER_WORD.map(str.capitalize)), min_size=1, max_size=2).map(
    " ".join
)
TAGS = st.lists(TAG, unique_by=str.casefold, max_size=6).filter(
    lambda tags: "featured" not in map(str.casefold, tags)
)


@HYPOTHESIS
@given(
    headline=HEADLINE_TEXT,
    paragraphs=st.lists(PARAGRAPH, min_size=1, max_size=6),
    tags=TAGS,
    featured=st.booleans(),
    separator=st.sampled_from(["\n\n", "\n", ""]),
    newline=st.sampled_from(["\n", "\r\n"]),
    tags_on_one_line=st.booleans(),
    footer=st.booleans(),
)
def test_well_formed_articles_round_trip(
    headline: str,
    paragraphs: list[str],
    tags: list[str],
    featured: bool,
    separator: str,
    newline: str,
    tags_on_one_line: bool,
    footer: bool,
) -> None:
    """Headline, paragraphs (even glued together), tags and #featured come back as written."""
    hashtags = [f"#{tag}" for tag in tags] + (["#featured"] if featured else [])
    parts = [headline, separator.join(paragraphs)]
    if hashtags:
        parts.append(" ".join(hashtags) if tags_on_one_line else "\n".join(hashtags))
    if footer:
        parts.append("Stay Informed. Act Smarter.\nGet weekly highlights from us.")
    text = "\n\n".join(parts).replace("\n", newline)

    article = parse(text)

    assert article.headline == headline
    assert article.tags == tuple(tags)
    assert article.featured is featured
    assert article.body == [Block(kind="paragraph", text=p) for p in paragraphs]
    assert article.dek == ""
    assert "Stay Informed" not in all_text(article)
