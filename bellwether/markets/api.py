"""Market endpoints: list, create, detail, history, quote, trade, resolve."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal, InvalidOperation
from typing import Literal

from django.http import HttpRequest
from ninja import Field, Router, Schema, Status

from bellwether.accounts.services import authenticate_token, has_role
from bellwether.ledger.services import format_micro

from . import selectors, services
from .exceptions import Forbidden, InvalidTrade
from .models import Market, Position, Trade

router = Router(tags=["markets"])
MICRO = services.MICRO


def to_micro(value: str | None, name: str, *, allow_zero: bool = False) -> int | None:
    """Parse a decimal string into micro-units, refusing anything odd."""
    if value is None:
        return None
    try:
        number = Decimal(value.strip())
    except (InvalidOperation, AttributeError):
        raise InvalidTrade(f"{name} must be a decimal string such as \"12.5\"") from None
    if not number.is_finite():
        raise InvalidTrade(f"{name} must be a finite number")
    if number < 0 or (number == 0 and not allow_zero):
        raise InvalidTrade(f"{name} must be greater than zero")
    if number.as_tuple().exponent < -6:
        raise InvalidTrade(f"{name} has more than 6 decimal places")
    if number > Decimal(services.MAX_TRADE_MICRO) / MICRO:
        raise InvalidTrade(f"{name} is too large (at most 1000000000)")
    return int(number * MICRO)


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
    kind: str
    status: str
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


class MarketIn(Schema):
    question: str = Field(..., max_length=300)
    outcomes: list[str] | None = Field(None, description="2 to 50 names; omit for a yes/no market")
    liquidity_b: str = Field(..., description="decimal credits, e.g. \"100\"")
    close_at: dt.datetime
    description: str = ""
    resolution_criteria: str = ""
    slug: str = ""
    articles: list[int] = []


class TradeIn(Schema):
    outcome: str
    side: Literal["buy", "sell"] = "buy"
    shares: str | None = None
    amount: str | None = Field(None, description="a buy's budget in credits")
    all: bool = Field(False, description="sell every share held")
    max_cost: str | None = None
    min_proceeds: str | None = None


class QuoteOut(Schema):
    outcome: str
    side: str
    shares: str
    cost: str | None = None
    proceeds: str | None = None
    average_price: str
    probability_before: str
    probability_after: str
    probabilities_after: dict[str, str]
    max_payout: str


class ResolveIn(Schema):
    outcome: str | None = None
    probabilities: dict[str, str] | None = None
    cancel: bool = False
    note: str = ""
    sources: list[str] = []


class ResolveOut(Schema):
    market: MarketOut
    payouts: dict[str, str]
    returned_to_treasury: str
    already_resolved: bool


class HistoryPoint(Schema):
    at: dt.datetime
    probabilities: dict[str, str]


class Error(Schema):
    error: dict[str, str]


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


@router.get("", response=list[MarketOut], auth=None, summary="List markets")
def list_markets(request, status: str | None = None, tag: str | None = None, section: str | None = None, limit: int = 50):
    """Open, closed, resolved or cancelled markets, newest first; filter by the linked articles' tag or section slug."""
    if status is not None and status not in selectors.STATUS_FILTERS:
        raise InvalidTrade(f"status must be one of {', '.join(selectors.STATUS_FILTERS)}")
    markets = selectors.list_markets(status=status, tag=tag, section=section, limit=min(max(limit, 1), 200))
    return [market_out(m) for m in markets]


@router.post("", response={201: MarketOut, 400: Error, 403: Error}, summary="Create a market (editors)")
def create_market(request, payload: MarketIn):
    if not has_role(request.auth, "editor"):
        raise Forbidden("only editors create markets")
    b = to_micro(payload.liquidity_b, "liquidity_b")
    articles = selectors.articles_by_id(payload.articles)
    missing = sorted(set(payload.articles) - {a.pk for a in articles})
    if missing:
        raise InvalidTrade(f"no article with id {', '.join(map(str, missing))}")
    market = services.create_market(
        question=payload.question, outcomes=payload.outcomes, liquidity_b_micro=b, close_at=payload.close_at,
        created_by=request.auth, description=payload.description, resolution_criteria=payload.resolution_criteria,
        slug=payload.slug, articles=articles,
    )
    return Status(201, market_out(selectors.market_detail(slug=market.slug)))


@router.get("/{slug}", response={200: MarketOut, 404: Error}, auth=None, url_name="market_detail", summary="One market")
def market_detail(request, slug: str):
    return market_out(selectors.market_detail(slug=slug))


@router.get("/{slug}/history", response={200: list[HistoryPoint], 404: Error}, auth=None, summary="Price history")
def market_history(request, slug: str):
    market = selectors.market_detail(slug=slug)
    return [
        {"at": at, "probabilities": {s: prob(p) for s, p in probs.items()}}
        for at, probs in selectors.price_history(market=market)
    ]


@router.post("/{slug}/quote", response={200: QuoteOut, 400: Error, 404: Error, 409: Error}, auth=None, summary="Quote a trade (dry run)")
def quote(request, slug: str, payload: TradeIn):
    market = selectors.market_detail(slug=slug)
    fill = services.quote(market=market, request=_request(payload), user=optional_user(request))
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
        "replayed": False,
    }


@router.post(
    "/{slug}/trades",
    response={201: dict, 200: dict, 400: Error, 401: Error, 404: Error, 409: Error, 422: Error},
    summary="Buy or sell (send an Idempotency-Key header to make retries safe)",
)
def trade(request, slug: str, payload: TradeIn):
    key = request.headers.get("Idempotency-Key") or None
    if key is not None and not 1 <= len(key) <= 200:
        raise InvalidTrade("Idempotency-Key must be 1 to 200 characters")
    body = services.place_trade(user=request.auth, market_slug=slug, request=_request(payload), idempotency_key=key, render=trade_body)
    return Status(200 if body.get("replayed") else 201, body)


@router.post("/{slug}/resolve", response={200: ResolveOut, 400: Error, 403: Error, 404: Error}, summary="Resolve or cancel (resolvers)")
def resolve(request, slug: str, payload: ResolveIn):
    if not has_role(request.auth, "resolver"):
        raise Forbidden("only resolvers resolve markets")
    result = services.resolve_market(
        market_slug=slug, by=request.auth, outcome=payload.outcome, probabilities=payload.probabilities,
        cancel=payload.cancel, note=payload.note, sources=payload.sources,
    )
    names = selectors.usernames(result.payouts)
    return {
        "market": market_out(selectors.market_detail(slug=slug)),
        "payouts": {names[uid]: format_micro(amount) for uid, amount in result.payouts.items()},
        "returned_to_treasury": format_micro(result.returned_micro),
        "already_resolved": result.already_done,
    }
