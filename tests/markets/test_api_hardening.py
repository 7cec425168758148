"""The API under hostile input: drafts stay hidden, lists page with cursors, inputs are bounded and declared.

Every request goes through the real HTTP layer (Django's test client, the
middleware included) on the database the suite runs on; refused requests
are checked to change nothing.
"""

from __future__ import annotations

import datetime as dt
import json

import pytest
from django.utils import timezone

from bellwether.api_common import DECIMAL_PATTERN, PROBABILITY_PATTERN
from bellwether.ledger.models import Transfer
from bellwether.markets import limits, selectors, services
from bellwether.markets.models import Market, Trade
from bellwether.request_guard import API_MAX_BODY_BYTES
from tests.markets.test_api import API, assert_error, create_market, get, make_actor, post, snapshot, soon
from tests.news.factories import make_article

pytestmark = pytest.mark.django_db

M = 1_000_000


@pytest.fixture
def editor(db):
    return make_actor("eddie", roles=("editor",))


@pytest.fixture
def resolver(db):
    return make_actor("rosa", roles=("resolver",))


@pytest.fixture
def reader(db):
    return make_actor("alice")


def _draft(editor) -> Market:
    return services.create_market(
        question="Will the draft stay hidden?", liquidity_b_micro=100 * M, close_at=timezone.now() + dt.timedelta(days=7),
        created_by=editor.user, status=Market.Status.DRAFT,
    )


# --- drafts ----------------------------------------------------------------------


def test_a_draft_is_not_found_by_anonymous_callers_or_readers(client, editor, reader, resolver):
    """Answer 404 not_found for a draft on every route (list, detail, history, quote, trade, resolve) to anyone but editors."""
    slug = _draft(editor).slug
    message = f"no market {slug!r}"
    for token in (None, reader.token, resolver.token):
        assert_error(get(client, f"/markets/{slug}", token), 404, "not_found", message)
        assert_error(get(client, f"/markets/{slug}/history", token), 404, "not_found", message)
        assert_error(post(client, f"/markets/{slug}/quote", {"outcome": "yes", "shares": "1"}, token), 404, "not_found", message)
        assert get(client, "/markets", token).json()["items"] == []
        assert get(client, "/markets", token, status="draft").json() == {"items": [], "next": None}
    before = snapshot()
    assert_error(post(client, f"/markets/{slug}/trades", {"outcome": "yes", "shares": "1"}, reader.token), 404, "not_found", message)
    assert_error(post(client, f"/markets/{slug}/resolve", {"cancel": True}, resolver.token), 404, "not_found", message)
    assert snapshot() == before


def test_an_editor_sees_a_draft(client, editor):
    """Show a draft to an editor: detail, history, the draft list; a quote says the market is not open yet."""
    slug = _draft(editor).slug
    detail = get(client, f"/markets/{slug}", editor.token)
    assert (detail.status_code, detail.json()["status"]) == (200, "draft")
    history = get(client, f"/markets/{slug}/history", editor.token).json()
    assert [p["probabilities"] for p in history["items"]] == [{"yes": "0.500000", "no": "0.500000"}]
    assert [m["slug"] for m in get(client, "/markets", editor.token, status="draft").json()["items"]] == [slug]
    assert get(client, "/markets", editor.token).json()["items"] == []  # drafts only when asked for
    quoted = post(client, f"/markets/{slug}/quote", {"outcome": "yes", "shares": "1"}, editor.token)
    assert_error(quoted, 409, "market_closed", "the market is draft")


def test_an_open_market_costs_no_lookup_of_who_is_asking(client, editor, reader):
    """Fetch an open market with a token in as many queries as without: the caller and their roles matter only for drafts."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    slug = create_market(client, editor)["slug"]
    get(client, f"/markets/{slug}")  # warm up
    with CaptureQueriesContext(connection) as anonymous:
        assert get(client, f"/markets/{slug}").status_code == 200
    with CaptureQueriesContext(connection) as with_token:
        assert get(client, f"/markets/{slug}", reader.token).status_code == 200

    def beyond_the_rate_limits(queries) -> list[str]:
        # Each credential has a rate-limit counter of its own (tests/project/test_rate_limits.py); the rest must match.
        return [q["sql"] for q in queries if "bellwether_counters" not in q["sql"] and "SAVEPOINT" not in q["sql"]]

    assert beyond_the_rate_limits(with_token) == beyond_the_rate_limits(anonymous)


# --- NUL characters, lone surrogates, body size --------------------------------------


@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("/markets?tag=%00", "the query parameter 'tag' contains a NUL character"),
        ("/markets?section=a%00b", "the query parameter 'section' contains a NUL character"),
        ("/markets?%00=1", "the query parameter '\\\\0' contains a NUL character"),
        ("/markets/%00", "the address contains a NUL character"),
        ("/markets/x%00y/history", "the address contains a NUL character"),
        ("/articles?cursor=%00", "the query parameter 'cursor' contains a NUL character"),
    ],
)
def test_a_nul_character_in_an_api_address_is_a_400_with_the_json_error(client, path, message):
    """Refuse a NUL in an API path or query parameter with 400 invalid (PostgreSQL cannot store or compare it)."""
    assert_error(client.get(API + path), 400, "invalid", message)


def test_a_nul_character_in_a_json_text_field_is_a_400_and_creates_nothing(client, editor):
    """Refuse a question, outcome name, key or resolution note holding \\u0000 with 400 invalid, creating nothing."""
    message = "the JSON body contains a NUL character (\\u0000), which cannot be stored"
    before = snapshot()
    for fields in ({"question": "Will it\u0000 rain?"}, {"outcomes": ["A\u0000", "B"]}, {"description": "\u0000"}):
        body = {"question": "Will it rain?", "liquidity_b": "100", "close_at": soon(), **fields}
        assert_error(post(client, "/markets", body, editor.token), 400, "invalid", message)
    raw = '{"question": "Will it rain?", "liquidity_b": "100", "close_at": "%s", "\\u0000": 1}' % soon()
    assert_error(client.post(f"{API}/markets", raw, content_type="application/json", HTTP_AUTHORIZATION=f"Bearer {editor.token}"), 400, "invalid", message)
    assert snapshot() == before


def test_an_escaped_backslash_before_u0000_is_plain_text(client, editor):
    """Accept the text "\\u0000" (an escaped backslash, then u0000): it holds no NUL character."""
    data = create_market(client, editor, question="Is \\u0000 just text?")
    assert data["question"] == "Is \\u0000 just text?"


def test_a_lone_surrogate_in_json_is_a_400(client, editor):
    """Refuse a lone UTF-16 surrogate (not text in any encoding the databases store) with 400; a proper pair is an emoji."""
    before = snapshot()
    raw = '{"question": "Will it rain? \\ud800", "liquidity_b": "100", "close_at": "%s"}' % soon()
    response = client.post(f"{API}/markets", raw, content_type="application/json", HTTP_AUTHORIZATION=f"Bearer {editor.token}")
    assert_error(response, 400, "invalid", "the JSON body contains a lone surrogate (\\ud800 to \\udfff), which is not text")
    assert snapshot() == before
    paired = '{"question": "Will it rain? \\ud83c\\udf27", "liquidity_b": "100", "close_at": "%s"}' % soon()
    response = client.post(f"{API}/markets", paired, content_type="application/json", HTTP_AUTHORIZATION=f"Bearer {editor.token}")
    assert response.status_code == 201 and response.json()["question"] == "Will it rain? \U0001f327"


def test_an_api_body_over_1_mb_is_a_413_with_the_json_error(client, editor):
    """Answer a JSON body over 1 MB with 413 payload_too_large in the API's error body; a body just under it is read."""
    assert API_MAX_BODY_BYTES == 1_048_576
    filler = "x" * (API_MAX_BODY_BYTES - 100)
    big = json.dumps({"question": "Will it rain?", "liquidity_b": "100", "close_at": soon(), "description": filler + "x" * 200})
    assert len(big.encode()) > API_MAX_BODY_BYTES
    response = client.post(f"{API}/markets", big, content_type="application/json", HTTP_AUTHORIZATION=f"Bearer {editor.token}")
    assert_error(response, 413, "payload_too_large", "the request body is larger than 1,048,576 bytes")
    assert response["Content-Type"] == "application/json"
    under = json.dumps({"question": "Will it rain?", "liquidity_b": "100", "close_at": soon(), "description": "x" * 900_000})
    response = client.post(f"{API}/markets", under, content_type="application/json", HTTP_AUTHORIZATION=f"Bearer {editor.token}")
    assert_error(response, 400, "invalid", f"description: String should have at most {limits.DESCRIPTION_MAX_CHARS} characters")


# --- list inputs, text sizes, decimals ----------------------------------------------------


def test_seventy_thousand_article_ids_are_refused_before_any_query(client, editor):
    """Refuse 70,000 article ids (past PostgreSQL's 65,535 parameters) with 400, not a server error."""
    body = {"question": "Will it rain?", "liquidity_b": "100", "close_at": soon(), "articles": list(range(1, 70_001))}
    before = snapshot()
    assert_error(post(client, "/markets", body, editor.token), 400, "invalid", "articles: List should have at most 100 items after validation, not 70000")
    assert snapshot() == before


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"question": "Q" * (limits.QUESTION_MAX_CHARS + 1)}, f"question: String should have at most {limits.QUESTION_MAX_CHARS} characters"),
        ({"description": "d" * (limits.DESCRIPTION_MAX_CHARS + 1)}, f"description: String should have at most {limits.DESCRIPTION_MAX_CHARS} characters"),
        ({"resolution_criteria": "c" * (limits.CRITERIA_MAX_CHARS + 1)}, f"resolution_criteria: String should have at most {limits.CRITERIA_MAX_CHARS} characters"),
        ({"slug": "s" * (limits.SLUG_MAX_CHARS + 1)}, f"slug: String should have at most {limits.SLUG_MAX_CHARS} characters"),
        ({"outcomes": ["A" * (limits.OUTCOME_NAME_MAX_CHARS + 1), "B"]}, f"outcomes.0: String should have at most {limits.OUTCOME_NAME_MAX_CHARS} characters"),
        ({"outcomes": [f"O{i}" for i in range(limits.OUTCOMES_MAX + 1)]}, f"outcomes: List should have at most {limits.OUTCOMES_MAX} items after validation, not {limits.OUTCOMES_MAX + 1}"),
        ({"articles": [1] * (limits.ARTICLES_MAX + 1)}, f"articles: List should have at most {limits.ARTICLES_MAX} items after validation, not {limits.ARTICLES_MAX + 1}"),
        ({"articles": [0]}, "articles.0: Input should be greater than or equal to 1"),
        ({"close_at": "9999-12-31T23:59:59-23:59"}, "close_at is out of range"),
    ],
    ids=["question", "description", "criteria", "slug", "outcome name", "outcomes", "articles", "article id", "close_at"],
)
def test_market_fields_past_their_limits_are_refused(client, editor, fields, message):
    """Refuse each text and list field one past its limit (markets/limits.py) with 400 invalid and the field's name."""
    body = {"question": "Will it rain?", "liquidity_b": "100", "close_at": soon(), **fields}
    before = snapshot()
    assert_error(post(client, "/markets", body, editor.token), 400, "invalid", message)
    assert snapshot() == before


@pytest.mark.parametrize(
    ("path", "body", "message"),
    [
        ("/trades", {"outcome": "yes", "shares": "1", "all": 0}, "all: Input should be a valid boolean"),
        ("/quote", {"outcome": "yes", "shares": "1", "all": "false"}, "all: Input should be a valid boolean"),
        ("/resolve", {"cancel": 1}, "cancel: Input should be a valid boolean"),
    ],
    ids=["0 as false", "text as false", "1 as true"],
)
def test_json_values_of_the_wrong_type_are_refused_not_guessed(client, editor, reader, resolver, path, body, message):
    """Refuse 0, 1 or "false" where JSON needs true or false, with 400 invalid: the schema says boolean, so does the API."""
    slug = create_market(client, editor)["slug"]
    token = resolver.token if path == "/resolve" else reader.token
    before = snapshot()
    assert_error(post(client, f"/markets/{slug}{path}", body, token), 400, "invalid", message)
    assert snapshot() == before


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"articles": ["1"]}, "articles.0: Input should be a valid integer"),
        ({"articles": [1.0]}, "articles.0: Input should be a valid integer"),
        ({"close_at": 2_000_000_000}, "close_at: Value error, give a date and time as text, such as 2030-01-01T00:00:00Z"),
    ],
    ids=["id as text", "id as float", "time as a number"],
)
def test_market_values_of_the_wrong_type_are_refused(client, editor, fields, message):
    """Refuse article ids that are not JSON integers and a close time that is not text with 400 invalid."""
    body = {"question": "Will it rain?", "liquidity_b": "100", "close_at": soon(), **fields}
    before = snapshot()
    assert_error(post(client, "/markets", body, editor.token), 400, "invalid", message)
    assert snapshot() == before


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"outcome": "yes", "note": "n" * (limits.NOTE_MAX_CHARS + 1)}, f"note: String should have at most {limits.NOTE_MAX_CHARS} characters"),
        ({"outcome": "yes", "sources": ["https://example.org/"] * (limits.SOURCES_MAX + 1)}, f"sources: List should have at most {limits.SOURCES_MAX} items after validation, not {limits.SOURCES_MAX + 1}"),
        ({"outcome": "yes", "sources": ["https://example.org/" + "a" * limits.SOURCE_MAX_CHARS]}, f"sources.0: String should have at most {limits.SOURCE_MAX_CHARS} characters"),
        ({"outcome": "yes", "sources": ["javascript:alert(1)"]}, "'javascript:alert(1)' is not a web address (http:// or https://)"),
        ({"outcome": "yes", "sources": [""]}, "'' is not a web address (http:// or https://)"),
        ({"probabilities": {f"o{i}": "0" for i in range(limits.OUTCOMES_MAX + 1)}}, f"probabilities: Dictionary should have at most {limits.OUTCOMES_MAX} items after validation, not more"),
        ({"probabilities": {"yes": "١", "no": "0"}}, "probability for 'yes' must be a decimal string from 0 to 1 with at most 6 decimals"),
        ({"probabilities": {"yes": "1e0", "no": "0"}}, "probability for 'yes' must be a decimal string from 0 to 1 with at most 6 decimals"),
        ({"outcome": "y" * (limits.OUTCOME_SLUG_MAX_CHARS + 1)}, f"outcome: String should have at most {limits.OUTCOME_SLUG_MAX_CHARS} characters"),
    ],
    ids=["note", "sources", "source", "javascript", "empty source", "probabilities", "arabic digit", "exponent", "outcome"],
)
def test_resolution_fields_past_their_limits_are_refused(client, editor, resolver, fields, message):
    """Refuse an oversized note, too many or too long sources, a non-web source and too many probabilities with 400 invalid."""
    slug = create_market(client, editor)["slug"]
    before = snapshot()
    assert_error(post(client, f"/markets/{slug}/resolve", fields, resolver.token), 400, "invalid", message)
    assert snapshot() == before


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("1_000", 'shares must be a decimal string such as "12.5"'),
        (" 1 ", 'shares must be a decimal string such as "12.5"'),
        ("1 ", 'shares must be a decimal string such as "12.5"'),
        ("١٠", 'shares must be a decimal string such as "12.5"'),  # Arabic-Indic digits
        ("１０", 'shares must be a decimal string such as "12.5"'),  # full-width digits
        ("+1", 'shares must be a decimal string such as "12.5"'),
        ("1e3", 'shares must be a decimal string such as "12.5"'),
        ("1.", 'shares must be a decimal string such as "12.5"'),
        (".5", 'shares must be a decimal string such as "12.5"'),
        ("1,5", 'shares must be a decimal string such as "12.5"'),
        ("0x10", 'shares must be a decimal string such as "12.5"'),
        ("1\n", 'shares must be a decimal string such as "12.5"'),
        ("-1", "shares must be greater than zero"),
        ("0.000000", "shares must be greater than zero"),
        ("1.0000001", "shares has more than 6 decimal places"),
        ("1000000000.000001", "shares is too large (at most 1000000000)"),
        ("00000000001", "shares is too large (at most 1000000000)"),
    ],
)
def test_amounts_must_be_plain_ascii_decimals(client, editor, reader, value, message):
    """Refuse any amount that is not digits, an optional point and up to 6 decimals, with 400 invalid; nothing trades."""
    slug = create_market(client, editor)["slug"]
    before = snapshot()
    assert_error(post(client, f"/markets/{slug}/trades", {"outcome": "yes", "shares": value}, reader.token), 400, "invalid", message)
    assert_error(post(client, f"/markets/{slug}/quote", {"outcome": "yes", "shares": value}), 400, "invalid", message)
    assert snapshot() == before


def test_the_largest_and_smallest_plain_amounts_are_accepted(client, editor, reader):
    """Accept "0.000001" and "1000000000" (quoted), and a leading zero such as "05"."""
    slug = create_market(client, editor)["slug"]
    for value in ("0.000001", "05", "1000000000"):
        response = post(client, f"/markets/{slug}/quote", {"outcome": "yes", "shares": value})
        assert response.status_code == 200, (value, response.content)


# --- cursor pagination ---------------------------------------------------------------------


def _pages(client, path: str, token=None, cursor=None, **params) -> list[dict]:
    """Return every page of a list, following `next` from ``cursor`` (the first page without one)."""
    pages = []
    while True:
        response = get(client, path, token, **params, **({"cursor": cursor} if cursor else {}))
        assert response.status_code == 200, response.content
        pages.append(response.json())
        cursor = pages[-1]["next"]
        if cursor is None:
            return pages
        assert len(pages) < 50


def test_markets_page_with_a_cursor_newest_first_without_gaps_or_repeats(client, editor):
    """Walk five markets two at a time: pages of 2, 2 and 1, newest first; a market created meanwhile does not shift the pages."""
    slugs = [create_market(client, editor, question=f"Market number {i}?")["slug"] for i in range(5)]
    first = get(client, "/markets", limit=2).json()
    assert [m["slug"] for m in first["items"]] == slugs[::-1][:2]
    create_market(client, editor, question="A newer market?")
    rest = _pages(client, "/markets", limit=2, cursor=first["next"])
    assert [[m["slug"] for m in page["items"]] for page in rest] == [slugs[::-1][2:4], slugs[::-1][4:]]
    assert rest[-1]["next"] is None


def test_markets_created_in_the_same_instant_page_by_id(client, editor):
    """Order markets with the same created_at by id, so a page boundary between them loses none."""
    slugs = [create_market(client, editor, question=f"Same instant {i}?")["slug"] for i in range(3)]
    Market.objects.update(created_at=timezone.now())
    pages = _pages(client, "/markets", limit=1)
    assert [page["items"][0]["slug"] for page in pages] == slugs[::-1]


@pytest.mark.parametrize(
    "cursor",
    [
        "garbage", "e30", "WzEsMl0", "WyJub3QgYSBkYXRlIiwxXQ", "WyIyMDI2LTEyLTAzVDA5OjMwOjAwIiwxXQ", "W251bGwsMV0", "x" * 201,
    ],
    ids=["garbage", "an object", "two ints", "not a date", "naive date", "null date", "too long"],
)
def test_a_cursor_this_list_did_not_give_out_is_a_400(client, reader, cursor):
    """Refuse an unreadable or foreign cursor with 400 invalid on every paged list."""
    for path, token in (("/markets", None), ("/me/transfers", reader.token)):
        response = get(client, path, token, cursor=cursor)
        assert response.status_code == 400, (path, response.content)
        assert response.json()["error"]["code"] == "invalid"
    assert_error(get(client, "/markets", cursor="garbage"), 400, "invalid", "cursor: the cursor is not one this list gave out")


def test_a_cursor_time_before_year_1_in_utc_is_a_400_not_a_500(client, reader):
    """Refuse a cursor at 0001-01-01T00:00:00+14:00 (before the calendar once in UTC) with 400 on every list it could reach."""
    cursor = "WyIwMDAxLTAxLTAxVDAwOjAwOjAwKzE0OjAwIiwxXQ"  # ["0001-01-01T00:00:00+14:00", 1]
    for path, token in (("/markets", None), ("/me/transfers", reader.token), ("/articles", None)):
        assert_error(get(client, path, token, cursor=cursor), 400, "invalid", "cursor: the cursor is not one this list gave out")


@pytest.mark.parametrize(("path", "limit"), [("/markets", 0), ("/markets", 101), ("/articles", 101), ("/me/transfers", 201)])
def test_page_sizes_are_bounded(client, reader, path, limit):
    """Refuse a page size of 0 or past the list's maximum with 400 invalid."""
    response = get(client, path, reader.token, limit=limit)
    assert response.status_code == 400 and response.json()["error"]["code"] == "invalid"


def test_my_transfers_page_with_a_cursor(client, editor, reader):
    """Walk the ledger lines one page at a time, newest first, each line once."""
    slug = create_market(client, editor)["slug"]
    for shares in ("1", "2", "3"):
        assert post(client, f"/markets/{slug}/trades", {"outcome": "yes", "shares": shares}, reader.token).status_code == 201
    pages = _pages(client, "/me/transfers", reader.token, limit=2)
    lines = [line for page in pages for line in page["items"]]
    assert [len(page["items"]) for page in pages] == [2, 2]
    assert [line["kind"] for line in lines] == ["buy", "buy", "buy", "grant"]
    assert [line["id"] for line in lines] == list(
        Transfer.objects.filter(credit__user=reader.user).union(Transfer.objects.filter(debit__user=reader.user))
        .order_by("-created_at", "-id").values_list("id", flat=True)
    )


def test_articles_page_with_a_cursor_and_undated_articles_last(client):
    """Walk published articles newest first; one without a publication time comes last on both databases."""
    articles = [make_article(headline=f"Paged story {i}") for i in range(3)]
    undated = articles[0]
    type(undated).objects.filter(pk=undated.pk).update(published_at=None)
    pages = _pages(client, "/articles", limit=2)
    ids = [a["id"] for page in pages for a in page["items"]]
    assert ids == [articles[2].pk, articles[1].pk, undated.pk]


def _add_trades(market: Market, count: int) -> None:
    """Store ``count`` trade rows one second apart (history rows only; no money moves in these tests)."""
    outcome = market.outcomes.get(slug="yes")
    start = market.created_at
    Trade.objects.bulk_create(
        Trade(
            market=market, outcome=outcome, user=market.created_by, side="buy", shares_micro=M, amount_micro=M // 2,
            probability_before=0.5, probabilities_after=[round(i / (count + 1), 9), round(1 - i / (count + 1), 9)],
            created_at=start + dt.timedelta(seconds=i),
        )
        for i in range(1, count + 1)
    )


def test_history_is_thinned_like_the_chart_and_pages_with_a_cursor(client, editor):
    """Thin 1,500 trades to 1,000 points (opening and latest kept, spread evenly), paged 400 at a time; a new trade does not shift later pages."""
    market = Market.objects.get(slug=create_market(client, editor)["slug"])
    _add_trades(market, 1500)
    first = get(client, f"/markets/{market.slug}/history", limit=400).json()
    latest = Trade.objects.filter(market=market).order_by("-created_at").first()
    Trade.objects.create(
        market=market, outcome=latest.outcome, user=market.created_by, side="buy", shares_micro=M, amount_micro=M,
        probability_before=0.5, probabilities_after=[0.9, 0.1], created_at=latest.created_at + dt.timedelta(seconds=5),
    )
    rest = _pages(client, f"/markets/{market.slug}/history", limit=400, cursor=first["next"])
    points = first["items"] + [p for page in rest for p in page["items"]]
    assert [len(first["items"])] + [len(page["items"]) for page in rest] == [400, 400, 200]
    picks = selectors._even_indices(1501, selectors.CHART_MAX_POINTS)
    assert len(points) == 1000 and picks[0] == 0 and picks[-1] == 1500
    expected = [{"yes": "0.500000", "no": "0.500000"}] + [
        {"yes": f"{round(i / 1501, 9):.6f}", "no": f"{round(1 - i / 1501, 9):.6f}"} for i in picks[1:]
    ]
    assert [p["probabilities"] for p in points] == expected
    # A fresh first page includes the new trade as its latest point.
    fresh = _pages(client, f"/markets/{market.slug}/history", limit=1000)
    assert fresh[-1]["items"][-1]["probabilities"] == {"yes": "0.900000", "no": "0.100000"}


def test_a_short_history_pages_at_full_resolution(client, editor):
    """Page a history of three trades two points at a time: every point, in time order."""
    market = Market.objects.get(slug=create_market(client, editor)["slug"])
    _add_trades(market, 3)
    pages = _pages(client, f"/markets/{market.slug}/history", limit=2)
    assert [len(page["items"]) for page in pages] == [2, 2]
    assert [p["probabilities"]["yes"] for page in pages for p in page["items"]] == ["0.500000", "0.250000", "0.500000", "0.750000"]


def test_a_history_cursor_past_the_end_is_a_400(client, editor):
    """Refuse a history cursor that counts more trades than the market has with 400 invalid."""
    from bellwether.paging import encode_cursor

    slug = create_market(client, editor)["slug"]
    assert_error(get(client, f"/markets/{slug}/history", cursor=encode_cursor(5, 1)), 400, "invalid", "cursor: the cursor is not one this list gave out")
    assert_error(get(client, f"/markets/{slug}/history", cursor=encode_cursor(0, 1)), 400, "invalid", "cursor: the cursor is not one this list gave out")


# --- the OpenAPI schema ----------------------------------------------------------------


def _schema(client) -> dict:
    response = client.get(f"{API}/openapi.json")
    assert response.status_code == 200
    return response.json()


def test_openapi_declares_every_status_each_route_can_answer(client):
    """Declare 400 and 429 everywhere, 401 behind auth, 413 with a body, 404 by id or slug, and the route's own 409 and 422."""
    paths = _schema(client)["paths"]
    expected = {
        ("/api/v1/markets", "get"): {"200", "400", "429"},
        ("/api/v1/markets", "post"): {"201", "400", "401", "403", "413", "429"},
        ("/api/v1/markets/{slug}", "get"): {"200", "400", "404", "429"},
        ("/api/v1/markets/{slug}/history", "get"): {"200", "400", "404", "429"},
        ("/api/v1/markets/{slug}/quote", "post"): {"200", "400", "404", "409", "413", "429"},
        ("/api/v1/markets/{slug}/trades", "post"): {"201", "400", "401", "403", "404", "409", "413", "422", "429"},
        ("/api/v1/markets/{slug}/resolve", "post"): {"200", "400", "401", "403", "404", "409", "413", "429"},
        ("/api/v1/me", "get"): {"200", "400", "401", "429"},
        ("/api/v1/me/transfers", "get"): {"200", "400", "401", "429"},
        ("/api/v1/articles", "get"): {"200", "400", "429"},
        ("/api/v1/articles/{article_id}", "get"): {"200", "400", "404", "429"},
    }
    for (path, method), statuses in expected.items():
        responses = paths[path][method]["responses"]
        assert set(responses) == statuses, (path, method)
        for status in statuses - {"200", "201"}:
            assert responses[status]["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/Error"}
        assert responses["429"]["headers"]["Retry-After"]["schema"] == {"type": "integer", "minimum": 0}


def test_openapi_declares_patterns_enums_and_limits(client):
    """Declare the decimal and probability patterns, the side and status enums, the idempotency headers and every size limit."""
    schema = _schema(client)
    components = schema["components"]["schemas"]
    trade_in, market_in, resolve_in = components["TradeIn"]["properties"], components["MarketIn"]["properties"], components["ResolveIn"]["properties"]
    for field in ("shares", "amount", "max_cost", "min_proceeds"):
        assert trade_in[field]["anyOf"][0]["pattern"] == DECIMAL_PATTERN
    assert market_in["liquidity_b"]["pattern"] == DECIMAL_PATTERN
    assert resolve_in["probabilities"]["anyOf"][0]["additionalProperties"]["pattern"] == PROBABILITY_PATTERN
    assert resolve_in["probabilities"]["anyOf"][0]["maxProperties"] == limits.OUTCOMES_MAX
    assert trade_in["side"]["enum"] == ["buy", "sell"]
    listing = {p["name"]: p for p in schema["paths"]["/api/v1/markets"]["get"]["parameters"]}
    assert listing["status"]["schema"]["anyOf"][0]["enum"] == ["open", "closed", "resolved", "cancelled", "draft"]
    assert (listing["limit"]["schema"]["minimum"], listing["limit"]["schema"]["maximum"]) == (1, 100)
    assert market_in["question"]["maxLength"] == limits.QUESTION_MAX_CHARS
    assert market_in["description"]["maxLength"] == limits.DESCRIPTION_MAX_CHARS
    assert market_in["resolution_criteria"]["maxLength"] == limits.CRITERIA_MAX_CHARS
    assert market_in["slug"]["maxLength"] == limits.SLUG_MAX_CHARS
    outcomes = market_in["outcomes"]["anyOf"][0]
    assert (outcomes["minItems"], outcomes["maxItems"], outcomes["items"]["maxLength"]) == (2, limits.OUTCOMES_MAX, limits.OUTCOME_NAME_MAX_CHARS)
    assert market_in["articles"]["maxItems"] == limits.ARTICLES_MAX
    assert resolve_in["note"]["maxLength"] == limits.NOTE_MAX_CHARS
    assert (resolve_in["sources"]["maxItems"], resolve_in["sources"]["items"]["maxLength"]) == (limits.SOURCES_MAX, limits.SOURCE_MAX_CHARS)
    trade = schema["paths"]["/api/v1/markets/{slug}/trades"]["post"]
    key = next(p for p in trade["parameters"] if p["name"] == "Idempotency-Key")
    assert (key["in"], key["schema"]["maxLength"]) == ("header", 200)
    assert trade["responses"]["201"]["headers"]["Idempotent-Replayed"]["schema"] == {"type": "string", "enum": ["true"]}
    assert components["Error"]["properties"]["error"] == {"$ref": "#/components/schemas/ErrorDetail"}
    assert components["ErrorDetail"]["required"] == ["code", "message"]
