"""Market endpoints: list, create, detail, history, quote, trade, resolve."""

from __future__ import annotations

import datetime as dt
import re
from typing import Annotated, Literal

from django.http import HttpRequest, HttpResponse
from ninja import Field, Query, Router, Schema, Status
from pydantic import BeforeValidator, ConfigDict, StrictBool, StrictInt, StringConstraints, WithJsonSchema

from bellwether.accounts.services import authenticate_token, has_role
from bellwether.api_common import (
    ANY_ROUTE, DECIMAL_RE, MAX_PAGE_ID, PROBABILITY_RE, WITH_AUTH, WITH_BODY, DecimalString, ProbabilityString, cursor_param, errors,
)
from bellwether.ledger.services import format_micro
from bellwether.paging import decode_cursor, encode_cursor

from . import limits, selectors, services
from .exceptions import Forbidden, InvalidTrade, MarketNotFound
from .models import Market, Position, Trade

router = Router(tags=["markets"])
MICRO = services.MICRO
LIST_PAGE_MAX = 100
HISTORY_PAGE_MAX = selectors.CHART_MAX_POINTS
IDEMPOTENCY_KEY_PATTERN = r"^[!-~]{1,200}$"  # visible ASCII, no spaces
_IDEMPOTENCY_KEY_RE = re.compile(IDEMPOTENCY_KEY_PATTERN)
# Any text that is not only white space (Python's split() also counts \x1c-\x1f as space).
_HAS_TEXT = r"[^\s\x1c-\x1f]"
_SIGNED_DECIMAL = re.compile(r"-?[0-9]+(\.[0-9]+)?")


def to_micro(value: str | None, name: str, *, allow_zero: bool = False) -> int | None:
    """Parse a plain decimal string (DECIMAL_PATTERN) into micro-units, saying exactly what is wrong with anything else.

    >>> to_micro("12.5", "amount")
    12500000
    >>> to_micro("1_000", "amount")
    Traceback (most recent call last):
    ...
    bellwether.markets.exceptions.InvalidTrade: amount must be a decimal string such as "12.5"
    """
    if value is None:
        return None
    if not isinstance(value, str) or not DECIMAL_RE.fullmatch(value):
        if isinstance(value, str) and _SIGNED_DECIMAL.fullmatch(value):
            if value.startswith("-"):
                raise InvalidTrade(f"{name} must not be negative" if allow_zero else f"{name} must be greater than zero")
            if len(value.partition(".")[2]) > 6:
                raise InvalidTrade(f"{name} has more than 6 decimal places")
            raise InvalidTrade(f"{name} is too large (at most 1000000000)")
        raise InvalidTrade(f'{name} must be a decimal string such as "12.5"')
    whole, _, fraction = value.partition(".")
    micro = int(whole) * MICRO + int(fraction.ljust(6, "0") or 0)
    if micro == 0 and not allow_zero:
        raise InvalidTrade(f"{name} must be greater than zero")
    if micro > services.MAX_TRADE_MICRO:
        raise InvalidTrade(f"{name} is too large (at most 1000000000)")
    return micro


def prob(p: float) -> str:
    return f"{p:.6f}"


class OutcomeOut(Schema):
    slug: str
    name: str
    probability: str
    shares: str


class MarketOut(Schema):
    slug: str
    question: str
    description: str
    resolution_criteria: str
    kind: Literal["binary", "multiple"]
    status: Literal["draft", "open", "closed", "resolved", "cancelled"]
    liquidity_b: str
    close_at: dt.datetime
    created_at: dt.datetime
    volume: str
    trade_count: int
    outcomes: list[OutcomeOut]
    resolution: dict | None = None
    resolved_at: dt.datetime | None = None
    resolution_note: str = ""
    resolution_sources: list[str] = []
    articles: list[int] = []


class MarketPage(Schema):
    items: list[MarketOut]
    next: str | None = Field(None, description="send as ?cursor= for the next page; null on the last page")


OutcomeName = Annotated[str, StringConstraints(max_length=limits.OUTCOME_NAME_MAX_CHARS, pattern=_HAS_TEXT)]
OutcomeSlug = Annotated[str, StringConstraints(min_length=1, max_length=limits.OUTCOME_SLUG_MAX_CHARS)]
# JSON has no integers posing as booleans or strings posing as numbers: refuse
# them rather than guess (pydantic's lax mode would read 0 as false and a
# number as a time), so every body the schema refuses, the API refuses too.
ArticleId = Annotated[StrictInt, Field(ge=1, le=MAX_PAGE_ID)]


def _text_only(value):
    if not isinstance(value, (str, dt.datetime)):
        raise ValueError("give a date and time as text, such as 2030-01-01T00:00:00Z")
    return value


DateTimeText = Annotated[dt.datetime, BeforeValidator(_text_only)]
SOURCE_PATTERN = r"^[Hh][Tt][Tt][Pp][Ss]?://[^\s]+$"
_SOURCE_RE = re.compile(SOURCE_PATTERN)
SourceUrl = Annotated[
    str,
    StringConstraints(max_length=limits.SOURCE_MAX_CHARS),
    WithJsonSchema({"type": "string", "format": "uri", "pattern": SOURCE_PATTERN, "maxLength": limits.SOURCE_MAX_CHARS}),
]


class MarketIn(Schema):
    model_config = ConfigDict(json_schema_extra={"examples": [
        {"question": "Will the talks yield substantive progress?", "liquidity_b": "100", "close_at": "2030-01-01T00:00:00Z"},
    ]})

    question: str = Field(..., max_length=limits.QUESTION_MAX_CHARS, pattern=_HAS_TEXT)
    outcomes: list[OutcomeName] | None = Field(
        None, min_length=2, max_length=limits.OUTCOMES_MAX, description="2 to 50 distinct names; omit for a yes/no market",
    )
    liquidity_b: DecimalString = Field(..., description='decimal credits, e.g. "100"')
    close_at: DateTimeText
    description: str = Field("", max_length=limits.DESCRIPTION_MAX_CHARS)
    resolution_criteria: str = Field("", max_length=limits.CRITERIA_MAX_CHARS)
    slug: str = Field("", max_length=limits.SLUG_MAX_CHARS)
    articles: list[ArticleId] = Field([], max_length=limits.ARTICLES_MAX)


class TradeIn(Schema):
    model_config = ConfigDict(json_schema_extra={"examples": [
        {"outcome": "yes", "side": "buy", "shares": "10", "max_cost": "6"},
        {"outcome": "no", "side": "buy", "amount": "2.5"},
    ]})

    outcome: OutcomeSlug
    side: Literal["buy", "sell"] = "buy"
    shares: DecimalString | None = None
    amount: DecimalString | None = Field(None, description="a buy's budget in credits")
    all: StrictBool = Field(False, description="sell every share held")
    max_cost: DecimalString | None = None
    min_proceeds: DecimalString | None = None


class QuoteOut(Schema):
    outcome: str
    side: Literal["buy", "sell"]
    shares: str
    cost: str | None = None
    proceeds: str | None = None
    average_price: str
    probability_before: str
    probability_after: str
    probabilities_after: dict[str, str]
    max_payout: str


class PositionAfter(Schema):
    shares: str
    cost_basis: str


class TradeOut(Schema):
    trade_id: int
    market: str
    outcome: str
    side: Literal["buy", "sell"]
    shares: str
    amount: str
    average_price: str
    probability_before: str
    probabilities: dict[str, str]
    balance: str
    position: PositionAfter
    created_at: dt.datetime


class ResolveIn(Schema):
    model_config = ConfigDict(json_schema_extra={"examples": [
        {"outcome": "yes", "note": "Joint statement issued", "sources": ["https://example.org/statement"]},
    ]})

    outcome: OutcomeSlug | None = None
    probabilities: dict[OutcomeSlug, ProbabilityString] | None = Field(None, max_length=limits.OUTCOMES_MAX)
    cancel: StrictBool = False
    note: str = Field("", max_length=limits.NOTE_MAX_CHARS)
    sources: list[SourceUrl] = Field([], max_length=limits.SOURCES_MAX, description="http(s) addresses")


class ResolveOut(Schema):
    market: MarketOut
    payouts: dict[str, str]
    returned_to_treasury: str
    already_resolved: bool


class HistoryPoint(Schema):
    at: dt.datetime
    probabilities: dict[str, str]


class HistoryPage(Schema):
    items: list[HistoryPoint]
    next: str | None = Field(None, description="send as ?cursor= for the next page; null on the last page")


def market_out(market: Market) -> dict:
    outcomes = list(market.outcomes.all())
    prices = services.lmsr.prices_after_micro([o.shares_micro for o in outcomes], market.liquidity_b_micro)
    return {
        "slug": market.slug,
        "question": market.question,
        "description": market.description,
        "resolution_criteria": market.resolution_criteria,
        "kind": market.kind,
        "status": market.display_status,
        "liquidity_b": format_micro(market.liquidity_b_micro),
        "close_at": market.close_at,
        "created_at": market.created_at,
        "volume": format_micro(market.volume_micro),
        "trade_count": market.trade_count,
        "outcomes": [
            {"slug": o.slug, "name": o.name, "probability": prob(p), "shares": format_micro(o.shares_micro)}
            for o, p in zip(outcomes, prices)
        ],
        "resolution": market.resolution,
        "resolved_at": market.resolved_at,
        "resolution_note": market.resolution_note,
        "resolution_sources": market.resolution_sources,
        "articles": [link.article_id for link in market.article_links.all()],
    }


def _request(payload: TradeIn) -> services.TradeRequest:
    return services.TradeRequest(
        outcome=payload.outcome,
        side=payload.side,
        shares_micro=to_micro(payload.shares, "shares"),
        amount_micro=to_micro(payload.amount, "amount"),
        sell_all=payload.all,
        max_cost_micro=to_micro(payload.max_cost, "max_cost"),
        min_proceeds_micro=to_micro(payload.min_proceeds, "min_proceeds", allow_zero=True),
    )


def optional_user(request: HttpRequest):
    """Return the caller when a token or session identifies one, else None."""
    header = request.headers.get("Authorization", "")
    if header.lower().startswith("bearer "):
        return authenticate_token(header[7:].strip())
    user = getattr(request, "user", None)
    return user if user is not None and user.is_authenticated else None


def sees_drafts(user) -> bool:
    """Return whether ``user`` may see draft markets: editors only; to anyone else a draft does not exist."""
    return user is not None and has_role(user, "editor")


def visible_market(request: HttpRequest, slug: str, *, user=None) -> Market:
    """Return the market ``slug`` with its outcomes; a draft only to editors, to anyone else MarketNotFound.

    The caller (``user``, else whoever the request carries) and their roles
    are looked up only when the market is a draft, so a market that is open
    to everyone costs no query for them.
    """
    market = selectors.market_detail(slug=slug, drafts=True)
    if market.status == Market.Status.DRAFT and not sees_drafts(user if user is not None else optional_user(request)):
        raise MarketNotFound(f"no market {slug!r}")
    return market


def refuse_hidden_draft(slug: str, user) -> None:
    """Raise MarketNotFound when ``slug`` is a draft and ``user`` is no editor (roles looked up for drafts only)."""
    if selectors.is_draft(slug=slug) and not sees_drafts(user):
        raise MarketNotFound(f"no market {slug!r}")


def _utc(when: dt.datetime) -> dt.datetime:
    """Return ``when`` in UTC (naive means UTC); refuse an instant outside the calendar."""
    try:
        return when.replace(tzinfo=dt.timezone.utc) if when.tzinfo is None else when.astimezone(dt.timezone.utc)
    except OverflowError:
        raise InvalidTrade("close_at is out of range") from None


@router.get("", response={200: MarketPage, **errors(*ANY_ROUTE)}, auth=None, summary="List markets")
def list_markets(
    request,
    status: Literal["open", "closed", "resolved", "cancelled", "draft"] | None = None,
    tag: str | None = Query(None, max_length=100),
    section: str | None = Query(None, max_length=100),
    limit: int = Query(50, ge=1, le=LIST_PAGE_MAX),
    cursor: str | None = cursor_param(),
):
    """Markets newest first, a page at a time; filter by status or by the linked articles' tag or section slug.

    Drafts are listed for editors only, with `status=draft`.
    """
    after = decode_cursor(cursor, "datetime", "int") if cursor else None
    drafts = sees_drafts(optional_user(request)) if status == "draft" else False
    markets = selectors.list_markets(status=status, tag=tag, section=section, limit=limit + 1, after=after, drafts=drafts)
    page = markets[:limit]
    more = len(markets) > limit
    return {"items": [market_out(m) for m in page], "next": encode_cursor(page[-1].created_at, page[-1].pk) if more else None}


@router.post("", response={201: MarketOut, **errors(*ANY_ROUTE, *WITH_AUTH, *WITH_BODY)}, summary="Create a market (editors)")
def create_market(request, payload: MarketIn):
    if not has_role(request.auth, "editor"):
        raise Forbidden("only editors create markets")
    b = to_micro(payload.liquidity_b, "liquidity_b")
    close_at = _utc(payload.close_at)
    articles = selectors.articles_by_id(payload.articles)
    missing = sorted(set(payload.articles) - {a.pk for a in articles})
    if missing:
        raise InvalidTrade(f"no article with id {', '.join(map(str, missing))}")
    market = services.create_market(
        question=payload.question, outcomes=payload.outcomes, liquidity_b_micro=b, close_at=close_at,
        created_by=request.auth, description=payload.description, resolution_criteria=payload.resolution_criteria,
        slug=payload.slug, articles=articles,
    )
    return Status(201, market_out(selectors.market_detail(slug=market.slug, drafts=True)))


@router.get(
    "/{slug}", response={200: MarketOut, **errors(*ANY_ROUTE, 404)}, auth=None, url_name="market_detail", summary="One market",
)
def market_detail(request, slug: str):
    """One market; a draft is not found except by editors."""
    return market_out(visible_market(request, slug))


@router.get("/{slug}/history", response={200: HistoryPage, **errors(*ANY_ROUTE, 404)}, auth=None, summary="Price history")
def market_history(request, slug: str, limit: int = Query(500, ge=1, le=HISTORY_PAGE_MAX), cursor: str | None = cursor_param()):
    """The opening odds, then the odds after each trade, thinned like the chart to at most 1,000 points, a page at a time."""
    market = visible_market(request, slug)
    through, start = decode_cursor(cursor, "int", "int") if cursor else (None, 0)
    page = selectors.history_page(market=market, through=through, start=start, limit=limit)
    slugs = [o.slug for o in market.outcomes.all()]
    return {
        "items": [{"at": at, "probabilities": {s: prob(p) for s, p in zip(slugs, probs)}} for at, probs in page["points"]],
        "next": None if page["next_start"] is None else encode_cursor(page["through"], page["next_start"]),
    }


@router.post(
    "/{slug}/quote", response={200: QuoteOut, **errors(*ANY_ROUTE, *WITH_BODY, 404, 409)}, auth=None, summary="Quote a trade (dry run)",
)
def quote(request, slug: str, payload: TradeIn):
    user = optional_user(request)
    market = visible_market(request, slug, user=user)
    fill = services.quote(market=market, request=_request(payload), user=user)
    return quote_out(market, fill)


def quote_out(market: Market, fill: services.Fill) -> dict:
    outcomes = list(market.outcomes.all())
    buy = fill.side == Trade.Side.BUY
    return {
        "outcome": outcomes[fill.outcome_index].slug,
        "side": fill.side,
        "shares": format_micro(fill.shares_micro),
        "cost": format_micro(fill.amount_micro) if buy else None,
        "proceeds": None if buy else format_micro(fill.amount_micro),
        "average_price": prob(fill.average_price),
        "probability_before": prob(fill.probability_before),
        "probability_after": prob(fill.probabilities_after[fill.outcome_index]),
        "probabilities_after": {o.slug: prob(p) for o, p in zip(outcomes, fill.probabilities_after)},
        "max_payout": format_micro(fill.shares_micro) if buy else "0.000000",
    }


def trade_body(trade: Trade, market: Market, outcomes: list, position: Position, balance_micro: int) -> dict:
    return {
        "trade_id": trade.pk,
        "market": market.slug,
        "outcome": trade.outcome.slug,
        "side": trade.side,
        "shares": format_micro(trade.shares_micro),
        "amount": format_micro(trade.amount_micro),
        "average_price": prob(trade.amount_micro / trade.shares_micro),
        "probability_before": prob(trade.probability_before),
        "probabilities": {o.slug: prob(p) for o, p in zip(outcomes, trade.probabilities_after)},
        "balance": format_micro(balance_micro),
        "position": {"shares": format_micro(position.shares_micro), "cost_basis": format_micro(position.cost_basis_micro)},
        "created_at": trade.created_at.isoformat(),
    }


_TRADE_OPENAPI = {
    "parameters": [{
        "in": "header",
        "name": "Idempotency-Key",
        "required": False,
        "description": "1 to 200 visible ASCII characters; the same key and body again replays the first answer",
        "schema": {"type": "string", "pattern": IDEMPOTENCY_KEY_PATTERN, "maxLength": 200},
    }],
    "responses": {
        201: {"headers": {"Idempotent-Replayed": {
            "description": "true when this is the stored answer to an earlier request with the same Idempotency-Key",
            "schema": {"type": "string", "enum": ["true"]},
        }}},
    },
}


@router.post(
    "/{slug}/trades",
    response={201: TradeOut, **errors(*ANY_ROUTE, *WITH_AUTH, *WITH_BODY, 404, 409, 422)},
    openapi_extra=_TRADE_OPENAPI,
    summary="Buy or sell (send an Idempotency-Key header to make retries safe)",
)
def trade(request, slug: str, payload: TradeIn, response: HttpResponse):
    """Buy or sell; a retry with the same Idempotency-Key and body answers 201 with the first body and `Idempotent-Replayed: true`."""
    key = request.headers.get("Idempotency-Key")
    if key is not None and not _IDEMPOTENCY_KEY_RE.fullmatch(key):
        raise InvalidTrade("Idempotency-Key must be 1 to 200 visible ASCII characters")
    refuse_hidden_draft(slug, request.auth)
    body = services.place_trade(user=request.auth, market_slug=slug, request=_request(payload), idempotency_key=key, render=trade_body)
    # The service marks a replay; the answer is the stored body as it was, and the header says it is a replay.
    if body.pop("replayed", False):
        response["Idempotent-Replayed"] = "true"
    return Status(201, body)


@router.post(
    "/{slug}/resolve",
    response={200: ResolveOut, **errors(*ANY_ROUTE, *WITH_AUTH, *WITH_BODY, 404, 409)},
    summary="Resolve or cancel (resolvers)",
)
def resolve(request, slug: str, payload: ResolveIn):
    """Resolve to one outcome, to probabilities, or cancel; the same settlement again is a 200 with `already_resolved`, a different one a 409."""
    if not has_role(request.auth, "resolver"):
        raise Forbidden("only resolvers resolve markets")
    refuse_hidden_draft(slug, request.auth)
    for outcome, value in (payload.probabilities or {}).items():
        if not PROBABILITY_RE.fullmatch(value):
            raise InvalidTrade(f"probability for {outcome!r} must be a decimal string from 0 to 1 with at most 6 decimals")
    for source in payload.sources:
        if not _SOURCE_RE.fullmatch(source):
            raise InvalidTrade(f"{source[:80]!r} is not a web address (http:// or https://)")
    result = services.resolve_market(
        market_slug=slug, by=request.auth, outcome=payload.outcome, probabilities=payload.probabilities,
        cancel=payload.cancel, note=payload.note, sources=payload.sources,
    )
    names = selectors.usernames(result.payouts)
    return {
        "market": market_out(selectors.market_detail(slug=slug, drafts=True)),
        "payouts": {names[uid]: format_micro(amount) for uid, amount in result.payouts.items()},
        "returned_to_treasury": format_micro(result.returned_micro),
        "already_resolved": result.already_done,
    }
