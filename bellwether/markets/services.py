"""Every write to markets: create, link, trade, resolve, cancel.

Trades follow one lock order everywhere: the market row, then the accounts
by id. On SQLite, IMMEDIATE transactions serialise writers instead; on
PostgreSQL, serialization failures and deadlocks are retried a bounded
number of times.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import functools
import hashlib
import json
import re
import secrets
import threading
import time
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import URLValidator
from django.db import IntegrityError, OperationalError, connection, transaction
from django.db.models import F
from django.utils import timezone
from django.utils.text import slugify

from bellwether.ledger.models import Account, Transfer
from bellwether.ledger.services import bigint, format_micro, get_treasury, lock_accounts, open_pool_account, open_user_account, post_transfer

from . import limits, lmsr
from .events import announce_trade, trade_event
from .exceptions import (
    IdempotencyConflict,
    MarketError,
    InsufficientFunds,
    InvalidTrade,
    MarketClosed,
    MarketNotFound,
    ResolutionConflict,
    SlippageExceeded,
    StalePreview,
    InvalidForecast,
)
from .models import ExpertForecast, IdempotencyKey, Market, MarketArticle, Outcome, Position, Trade

MICRO = lmsr.MICRO
MAX_TRADE_MICRO = 10**9 * MICRO  # one billion credits or shares: beyond any sane trade
RETRY_ATTEMPTS = 5
SLUG_ATTEMPTS = 5
_POSITION_SLUG = re.compile(r"o[0-9]+")
_RETRY_SQLSTATES = {"40001", "40P01"}


def retry_on_conflict(func):
    """Re-run ``func`` after a PostgreSQL serialization failure or deadlock.

    Nothing else is retried; the last failure is re-raised.
    """

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        for attempt in range(RETRY_ATTEMPTS):
            try:
                return func(*args, **kwargs)
            except OperationalError as exc:
                state = getattr(getattr(exc, "__cause__", None), "sqlstate", None)
                if state not in _RETRY_SQLSTATES or attempt == RETRY_ATTEMPTS - 1:
                    raise
                time.sleep(0.002 * 2**attempt)
        raise AssertionError("unreachable")

    return wrapper


class _FairLock:
    """A first-come, first-served lock (a ticket lock) for threads of one process.

    SQLite makes a blocked writer sleep and retry while the writer that just
    committed takes the lock again at once, so under load a few trades waited
    most of a second (docs/performance.md). Queuing this process's writers in
    arrival order before they reach SQLite keeps the wait in step with the
    queue. PostgreSQL queues row locks fairly itself and does not use this.
    """

    def __init__(self) -> None:
        self._condition = threading.Condition()
        self._next_ticket = 0
        self._now_serving = 0

    def __enter__(self) -> None:
        with self._condition:
            ticket = self._next_ticket
            self._next_ticket += 1
            while ticket != self._now_serving:
                self._condition.wait()

    def __exit__(self, *exc_info) -> None:
        with self._condition:
            self._now_serving += 1
            self._condition.notify_all()


_sqlite_writers = _FairLock()


def _write_turn():
    """Return the context to hold around a write transaction: a fair queue on SQLite, nothing elsewhere."""
    return _sqlite_writers if connection.vendor == "sqlite" else contextlib.nullcontext()


# --- creating and linking -------------------------------------------------


def create_market(
    *,
    question: str,
    outcomes: list[str] | None = None,
    liquidity_b_micro: int,
    close_at,
    created_by=None,
    description: str = "",
    resolution_criteria: str = "",
    slug: str = "",
    status: str = Market.Status.OPEN,
    articles: list | None = None,
) -> Market:
    """Create a market and fund its pool with the subsidy b*ln(n) from the treasury.

    ``outcomes`` None makes a binary market (yes/no); otherwise 2 to 50 named
    outcomes, exactly one of which will win.
    """
    question = " ".join(question.split())
    if not question:
        raise InvalidTrade("a market needs a question")
    if len(question) > limits.QUESTION_MAX_CHARS:
        raise InvalidTrade(f"the question is longer than {limits.QUESTION_MAX_CHARS} characters")
    _check_texts(description=description, resolution_criteria=resolution_criteria)
    if timezone.is_naive(close_at):
        close_at = timezone.make_aware(close_at, dt.timezone.utc)  # a time without an offset is UTC
    if close_at <= timezone.now():
        raise InvalidTrade("close_at must be in the future")
    if not isinstance(liquidity_b_micro, int) or not 0 < liquidity_b_micro <= MAX_TRADE_MICRO:
        raise InvalidTrade("liquidity b must be positive and at most 1,000,000,000 credits")
    if outcomes is None:
        kind, named = Market.Kind.BINARY, [("yes", "Yes"), ("no", "No")]
    else:
        names = [" ".join(str(o).split()) for o in outcomes]
        if not lmsr.MIN_OUTCOMES <= len(names) <= lmsr.MAX_OUTCOMES:
            raise InvalidTrade(f"a market has {lmsr.MIN_OUTCOMES} to {lmsr.MAX_OUTCOMES} outcomes")
        problem = outcome_names_problem(names)
        if problem:
            raise InvalidTrade(problem)
        slugs = outcome_slugs(names)
        kind, named = Market.Kind.MULTIPLE, list(zip(slugs, names))
        if sorted(slugs) == ["no", "yes"]:
            kind = Market.Kind.BINARY
    slug = slugify(slug or question)
    if len(slug) > 60:
        slug = slug[:61].rsplit("-", 1)[0]  # whole words only
    slug = slug or "market"
    subsidy = lmsr.max_loss_micro(liquidity_b_micro, len(named))
    for attempt in range(SLUG_ATTEMPTS):
        try:
            # After a collision, a random suffix stops racers picking the same next slug.
            candidate = slug if attempt == 0 else f"{slug}-{secrets.token_hex(3)}"
            return _insert_market(
                slug=_free_market_slug(candidate), question=question, description=description,
                resolution_criteria=resolution_criteria, kind=kind, status=status,
                liquidity_b_micro=liquidity_b_micro, close_at=close_at, created_by=created_by,
                named=named, subsidy=subsidy, articles=articles,
            )
        except IntegrityError:
            # Another market took the slug between the check and the insert.
            if attempt == SLUG_ATTEMPTS - 1:
                raise
    raise AssertionError("unreachable")


def _check_texts(*, description: str, resolution_criteria: str) -> None:
    """Refuse a description or resolution criteria beyond their size limits."""
    if len(description) > limits.DESCRIPTION_MAX_CHARS:
        raise InvalidTrade(f"the description is longer than {limits.DESCRIPTION_MAX_CHARS:,} characters")
    if len(resolution_criteria) > limits.CRITERIA_MAX_CHARS:
        raise InvalidTrade(f"the resolution criteria are longer than {limits.CRITERIA_MAX_CHARS:,} characters")


def outcome_names_problem(names: list[str]) -> str:
    """Return why these outcome names cannot make a market, or "" when they can.

    Names may be in any script; they must be non-empty, at most
    OUTCOME_NAME_MAX_CHARS long and distinct ignoring case ("C" and "C++"
    are different outcomes, "Seoul" and "seoul" are not).
    """
    seen: dict[str, str] = {}
    for name in names:
        if not name:
            return "outcome names must not be empty"
        if len(name) > limits.OUTCOME_NAME_MAX_CHARS:
            return f"the outcome {name[:30]!r}... is longer than {limits.OUTCOME_NAME_MAX_CHARS} characters"
        key = name.casefold()
        if key in seen:
            return f"the outcomes {seen[key]!r} and {name!r} are the same"
        seen[key] = name
    return ""


def outcome_slugs(names: list[str]) -> list[str]:
    """Return a stable, distinct slug for each outcome name, in order.

    A name's slug keeps its letters in any script ("대한민국" stays
    "대한민국", "Japan" becomes "japan"). A name with nothing left to slug
    ("+++"), or whose slug an earlier name took ("C++" after "C"), gets its
    position instead: "o2" for the second outcome. Outcomes never change
    after a market is created, so the slugs are stable.

    >>> outcome_slugs(["C", "C++", "日本", "대한민국", "?"])
    ['c', 'o2', '日本', '대한민국', 'o5']
    """
    slugs: list[str] = []
    for position, name in enumerate(names, start=1):
        slug = slugify(name, allow_unicode=True)[: limits.OUTCOME_SLUG_MAX_CHARS].strip("-")
        if not slug or slug in slugs or _POSITION_SLUG.fullmatch(slug):
            slug = f"o{position}"
        slugs.append(slug)
    return slugs


def clean_resolution_sources(sources: list[str] | None) -> list[str]:
    """Return the resolution sources as a clean list of web addresses; refuse anything else.

    Each source must be an http(s) URL of at most SOURCE_MAX_CHARS
    characters, and there are at most SOURCES_MAX of them. A "javascript:"
    address, or any other scheme, would become a link on the market page.
    """
    if sources is None:
        return []
    if not isinstance(sources, (list, tuple)):
        raise InvalidTrade("sources must be a list of web addresses")
    cleaned = [str(source).strip() for source in sources if str(source).strip()]
    if len(cleaned) > limits.SOURCES_MAX:
        raise InvalidTrade(f"give at most {limits.SOURCES_MAX} sources")
    check = URLValidator(schemes=["http", "https"])
    for source in cleaned:
        if len(source) > limits.SOURCE_MAX_CHARS:
            raise InvalidTrade(f"a source is longer than {limits.SOURCE_MAX_CHARS:,} characters")
        try:
            check(source)
        except ValidationError:
            raise InvalidTrade(f"{source[:80]!r} is not a web address (http:// or https://)") from None
    return cleaned


def _free_market_slug(base: str) -> str:
    slug, n = base, 2
    while Market.objects.filter(slug=slug).exists():
        slug, n = f"{base}-{n}", n + 1
    return slug


def _insert_market(*, slug, question, description, resolution_criteria, kind, status, liquidity_b_micro, close_at, created_by, named, subsidy, articles) -> Market:
    """Write the market, its outcomes, its funded pool and its article links, all or nothing."""
    with transaction.atomic():
        pool = open_pool_account(name=f"Pool: {question[:180]}")
        market = Market.objects.create(
            slug=slug,
            question=question[:300],
            description=description,
            resolution_criteria=resolution_criteria,
            kind=kind,
            status=status,
            liquidity_b_micro=liquidity_b_micro,
            close_at=close_at,
            pool=pool,
            created_by=created_by,
        )
        Outcome.objects.bulk_create(
            [Outcome(market=market, slug=s, name=name, position=i) for i, (s, name) in enumerate(named)]
        )
        treasury = get_treasury()
        locked = lock_accounts(ids=[treasury.pk, pool.pk])
        post_transfer(
            debit=locked[treasury.pk], credit=locked[pool.pk], amount_micro=subsidy,
            kind=Transfer.Kind.SUBSIDY, reference=f"market:{market.pk}", memo="LMSR subsidy b·ln(n)",
        )
        for article in articles or []:
            link_article(market=market, article=article)
    return market


def link_article(*, market: Market, article) -> MarketArticle:
    """Link ``market`` to ``article``, remembering the odds when the article was published.

    The odds are read from the price history at the article's publication
    time (or now, for an article published before the market existed).
    """
    published = getattr(article, "published_at", None) or getattr(article, "first_published_at", None) or timezone.now()
    link, _ = MarketArticle.objects.get_or_create(
        market=market, article=article, defaults={"probabilities_at_publish": probabilities_at(market=market, when=published)}
    )
    return link


def restamp_article_odds(*, article) -> None:
    """Reset every link of ``article`` to the odds at its publication time (call when it first goes live)."""
    published = getattr(article, "published_at", None) or article.first_published_at
    for link in MarketArticle.objects.filter(article=article).select_related("market"):
        MarketArticle.objects.filter(pk=link.pk).update(
            probabilities_at_publish=probabilities_at(market=link.market, when=published)
        )


def probabilities_at(*, market: Market, when) -> dict[str, float]:
    """Return each outcome's probability as of ``when``, from the trade history."""
    outcomes = list(market.outcomes.order_by("position"))
    trade = market.trades.filter(created_at__lte=when).order_by("-created_at", "-id").first()
    if trade is None:
        probs = [1 / len(outcomes)] * len(outcomes)
    else:
        probs = trade.probabilities_after
    return {o.slug: round(p, 6) for o, p in zip(outcomes, probs)}


# --- quoting and trading --------------------------------------------------


@dataclass(frozen=True)
class TradeRequest:
    """A validated trade (or quote) request, in micro-units."""

    outcome: str
    side: str  # "buy" or "sell"
    shares_micro: int | None = None
    amount_micro: int | None = None  # a buy's budget
    sell_all: bool = False
    max_cost_micro: int | None = None
    min_proceeds_micro: int | None = None

    def fingerprint(self, market_slug: str) -> str:
        """Return a hash of the request, to tell a replay from a different request."""
        body = json.dumps({"market": market_slug, **self.__dict__}, sort_keys=True)
        return hashlib.sha256(body.encode()).hexdigest()


@dataclass(frozen=True)
class Fill:
    """What a trade does: the outcome, shares, money and prices around it."""

    outcome_index: int
    side: str
    shares_micro: int
    amount_micro: int
    probability_before: float
    probabilities_after: list[float]

    @property
    def average_price(self) -> float:
        return self.amount_micro / self.shares_micro if self.shares_micro else 0.0


def _validate(request: TradeRequest) -> None:
    if request.side not in (Trade.Side.BUY, Trade.Side.SELL):
        raise InvalidTrade("side must be 'buy' or 'sell'")
    given = [request.shares_micro is not None, request.amount_micro is not None, request.sell_all]
    if sum(given) != 1:
        raise InvalidTrade("give exactly one of shares, amount (buys) or all (sells)")
    if request.amount_micro is not None and request.side != Trade.Side.BUY:
        raise InvalidTrade("amount is a buy's budget; sell by shares or all")
    if request.sell_all and request.side != Trade.Side.SELL:
        raise InvalidTrade("all applies to sells")
    if request.max_cost_micro is not None and request.side != Trade.Side.BUY:
        raise InvalidTrade("max_cost bounds a buy; a sell takes min_proceeds")
    if request.min_proceeds_micro is not None and request.side != Trade.Side.SELL:
        raise InvalidTrade("min_proceeds bounds a sell; a buy takes max_cost")
    for name in ("shares_micro", "amount_micro", "max_cost_micro", "min_proceeds_micro"):
        value = getattr(request, name)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int):
            raise InvalidTrade(f"{name.removesuffix('_micro')} must be a number")
        floor = 0 if name == "min_proceeds_micro" else 1
        if not floor <= value <= MAX_TRADE_MICRO:
            raise InvalidTrade(f"{name.removesuffix('_micro')} must be between {format_micro(floor)} and 1000000000")


def compute_fill(*, market: Market, outcomes: list[Outcome], request: TradeRequest, held_micro: int) -> Fill:
    """Return the fill for ``request`` at the current quantities (pure: writes nothing)."""
    _validate(request)
    index = next((i for i, o in enumerate(outcomes) if o.slug == request.outcome), None)
    if index is None:
        raise InvalidTrade(f"unknown outcome {request.outcome!r}; this market has {', '.join(o.slug for o in outcomes)}")
    q = [o.shares_micro for o in outcomes]
    b = market.liquidity_b_micro
    before = lmsr.prices_after_micro(q, b)[index]
    if request.side == Trade.Side.BUY:
        if request.amount_micro is not None:
            shares = lmsr.shares_for_budget_micro(q, b, index, request.amount_micro)
            if shares <= 0:
                raise InvalidTrade("the amount is too small to buy any shares")
        else:
            shares = request.shares_micro
        amount = lmsr.buy_cost_micro(q, b, index, shares)
        q[index] += shares
        if request.max_cost_micro is not None and amount > request.max_cost_micro:
            raise SlippageExceeded(f"costs {format_micro(amount)}, more than max_cost {format_micro(request.max_cost_micro)}")
    else:
        shares = held_micro if request.sell_all else request.shares_micro
        if shares <= 0:
            raise InvalidTrade("you hold no shares of this outcome")
        if shares > held_micro:
            raise InvalidTrade(f"you hold {format_micro(held_micro)} shares, cannot sell {format_micro(shares)}")
        amount = lmsr.sell_proceeds_micro(q, b, index, shares)
        q[index] -= shares
        if request.min_proceeds_micro is not None and amount < request.min_proceeds_micro:
            raise SlippageExceeded(f"pays {format_micro(amount)}, less than min_proceeds {format_micro(request.min_proceeds_micro)}")
    return Fill(index, request.side, shares, amount, before, lmsr.prices_after_micro(q, b))


def quote(*, market: Market, request: TradeRequest, user=None) -> Fill:
    """Return what ``request`` would do now, without doing it."""
    _check_trading(market)
    outcomes = list(market.outcomes.order_by("position"))
    held = 0
    if user is not None and user.is_authenticated:
        held = Position.objects.filter(user=user, outcome__market=market, outcome__slug=request.outcome).values_list("shares_micro", flat=True).first() or 0
    return compute_fill(market=market, outcomes=outcomes, request=request, held_micro=held)


def _check_trading(market: Market) -> None:
    if market.status != Market.Status.OPEN:
        raise MarketClosed(f"the market is {market.get_status_display().lower()}")
    if not market.is_trading:
        raise MarketClosed("the market closed for trading")


@retry_on_conflict
def place_trade(
    *, user, market_slug: str, request: TradeRequest, idempotency_key: str | None = None, render=None
) -> dict[str, Any]:
    """Execute ``request`` for ``user`` completely or not at all; return the response body.

    ``render(trade, market, outcomes, position, balance_micro)`` builds the
    response stored with ``idempotency_key``; a repeat with the same key and
    request returns that stored body without trading again.
    """
    _validate(request)
    fingerprint = request.fingerprint(market_slug)
    _ensure_cash_account(user)
    try:
        with _write_turn(), transaction.atomic(durable=True):
            if idempotency_key:
                replay = _stored_response(user=user, key=idempotency_key, fingerprint=fingerprint)
                if replay is not None:
                    return replay
            market = _one(Market.objects.select_for_update().filter(slug=market_slug))
            if market is None:
                raise MarketNotFound(f"no market {market_slug!r}")
            if idempotency_key:
                # Look again under the market lock: a duplicate that queued
                # behind the first request must see the key it committed.
                replay = _stored_response(user=user, key=idempotency_key, fingerprint=fingerprint)
                if replay is not None:
                    return replay
            _check_trading(market)
            outcomes = list(market.outcomes.order_by("position"))
            position = _position_for(user=user, outcomes=outcomes, slug=request.outcome)
            fill = compute_fill(market=market, outcomes=outcomes, request=request, held_micro=position.shares_micro if position else 0)
            cash, pool = _lock_cash_and_pool(user=user, market=market)
            outcome = outcomes[fill.outcome_index]
            if fill.side == Trade.Side.BUY and cash.balance_micro < fill.amount_micro:
                raise InsufficientFunds(
                    f"this costs {format_micro(fill.amount_micro)} credits and you have {format_micro(cash.balance_micro)}"
                )
            trade = Trade.objects.create(
                market=market, outcome=outcome, user=user, side=fill.side, shares_micro=fill.shares_micro,
                amount_micro=fill.amount_micro, probability_before=fill.probability_before,
                probabilities_after=[round(p, 9) for p in fill.probabilities_after],
            )
            if fill.side == Trade.Side.BUY:
                post_transfer(debit=cash, credit=pool, amount_micro=fill.amount_micro, kind=Transfer.Kind.BUY, reference=f"trade:{trade.pk}")
                delta = fill.shares_micro
            else:
                if fill.amount_micro > 0:
                    post_transfer(debit=pool, credit=cash, amount_micro=fill.amount_micro, kind=Transfer.Kind.SELL, reference=f"trade:{trade.pk}")
                delta = -fill.shares_micro
            Outcome.objects.filter(pk=outcome.pk).update(shares_micro=F("shares_micro") + bigint(delta))
            outcome.shares_micro += delta
            position = _apply_to_position(user=user, market=market, outcome=outcome, position=position, fill=fill)
            Market.objects.filter(pk=market.pk).update(
                volume_micro=F("volume_micro") + bigint(fill.amount_micro), trade_count=F("trade_count") + 1
            )
            event = trade_event(
                trade=trade, market=market, outcomes=outcomes, volume_micro=market.volume_micro + fill.amount_micro,
                trade_count=market.trade_count + 1, username=user.get_username(),
            )
            transaction.on_commit(functools.partial(announce_trade, event))
            body = render(trade, market, outcomes, position, cash.balance_micro) if render else {"trade_id": trade.pk}
            if idempotency_key:
                IdempotencyKey.objects.create(user=user, key=idempotency_key, fingerprint=fingerprint, response=json.dumps(body))
            return body
    except IntegrityError:
        # Two requests with one key raced past the lookup; the loser's
        # transaction rolled back whole. Answer it as the replay it is.
        if idempotency_key:
            replay = _stored_response(user=user, key=idempotency_key, fingerprint=fingerprint)
            if replay is not None:
                return replay
        raise


def _one(queryset):
    """Return the first row of an unordered queryset, or None (no ORDER BY, unlike .first())."""
    return next(iter(queryset[:1]), None)


def _ensure_cash_account(user) -> None:
    """Open the trader's cash account (paying the grant from the treasury) if this is their first trade.

    It runs in a transaction of its own before the trade's, so the trade
    itself locks only the market and then the accounts, in that order: the
    treasury is never locked while a market row is held.
    """
    if not Account.objects.filter(user=user).exists():
        with _write_turn():
            open_user_account(user=user)


def _lock_cash_and_pool(*, user, market: Market):
    """Lock and return the trader's cash account and the market's pool. Call holding the market lock.

    The cash account exists already (``_ensure_cash_account`` ran first).
    """
    locked = lock_accounts(ids=[market.pool_id], user=user)
    cash = next((a for a in locked.values() if a.user_id == user.pk), None)
    if cash is None:
        raise AssertionError("the trader's cash account must be opened before the market is locked")
    return cash, locked[market.pool_id]


def _stored_response(*, user, key: str, fingerprint: str) -> dict | None:
    """Return the stored answer for ``key``, None if unused; a different request is a conflict.

    A key older than IDEMPOTENCY_KEY_TTL_S has expired: it is deleted here
    (the sweep may not have run yet) and the request counts as new.
    """
    stored = _one(IdempotencyKey.objects.filter(user=user, key=key))
    if stored is None:
        return None
    if stored.created_at < _idempotency_cutoff():
        IdempotencyKey.objects.filter(pk=stored.pk).delete()
        return None
    if stored.fingerprint != fingerprint:
        raise IdempotencyConflict("this Idempotency-Key was used for a different request")
    return {**json.loads(stored.response), "replayed": True}


def _idempotency_cutoff() -> dt.datetime:
    return timezone.now() - dt.timedelta(seconds=settings.IDEMPOTENCY_KEY_TTL_S)


def sweep_idempotency_keys() -> int:
    """Delete the stored trade answers whose Idempotency-Key has expired; return how many went.

    The worker runs this on its schedule, so the table holds about
    IDEMPOTENCY_KEY_TTL_S worth of trades, not every trade ever made.
    """
    deleted, _ = IdempotencyKey.objects.filter(created_at__lt=_idempotency_cutoff()).delete()
    return deleted


def _position_for(*, user, outcomes: list[Outcome], slug: str) -> Position | None:
    outcome = next((o for o in outcomes if o.slug == slug), None)
    if outcome is None:
        return None
    return _one(Position.objects.filter(user=user, outcome=outcome))


def _apply_to_position(*, user, market: Market, outcome: Outcome, position: Position | None, fill: Fill) -> Position:
    """Add a fill to the user's position. Call while holding the market row lock."""
    if position is None:
        # Only a buy can open a position (a sell needs shares held).
        return Position.objects.create(
            user=user, market=market, outcome=outcome, shares_micro=fill.shares_micro,
            cost_basis_micro=fill.amount_micro, spent_micro=fill.amount_micro,
        )
    if fill.side == Trade.Side.BUY:
        position.shares_micro += fill.shares_micro
        position.cost_basis_micro += fill.amount_micro
        position.spent_micro += fill.amount_micro
    else:
        # The shares sold take their average cost out of the basis.
        released = position.cost_basis_micro * fill.shares_micro // position.shares_micro
        position.shares_micro -= fill.shares_micro
        position.cost_basis_micro -= released
        position.received_micro += fill.amount_micro
    position.save(update_fields=["shares_micro", "cost_basis_micro", "spent_micro", "received_micro"])
    return position


# --- resolving -------------------------------------------------------------


@dataclass
class Resolution:
    market: Market
    payouts: dict[int, int]  # user id -> micro-credits paid
    returned_micro: int
    already_done: bool = False


def plan_payouts(*, market: Market, outcome: str | None = None, probabilities: dict[str, Any] | None = None, cancel: bool = False) -> tuple[dict[int, int], dict[str, int]]:
    """Return (user id -> payout, outcome slug -> payout per share) for a resolution, writing nothing.

    Payouts round down, in the house's favour.
    """
    outcomes = list(market.outcomes.order_by("position"))
    chosen = sum(x is not None and x is not False for x in (outcome, probabilities, cancel or None))
    if chosen != 1:
        raise InvalidTrade("resolve to one outcome, to probabilities, or cancel")
    per_share: dict[str, int] = {}
    if cancel:
        payouts: dict[int, int] = {}
        for position in Position.objects.filter(market=market):
            net = position.spent_micro - position.received_micro
            payouts[position.user_id] = payouts.get(position.user_id, 0) + net
        return {user: net for user, net in payouts.items() if net > 0}, per_share
    if outcome is not None:
        if outcome not in {o.slug for o in outcomes}:
            raise InvalidTrade(f"unknown outcome {outcome!r}")
        per_share = {o.slug: (MICRO if o.slug == outcome else 0) for o in outcomes}
    else:
        per_share = _probabilities_micro(probabilities, outcomes)
    payouts = {}
    for position in Position.objects.filter(market=market, shares_micro__gt=0).select_related("outcome"):
        amount = position.shares_micro * per_share[position.outcome.slug] // MICRO
        if amount:
            payouts[position.user_id] = payouts.get(position.user_id, 0) + amount
    return payouts, per_share


def _probabilities_micro(probabilities: dict[str, Any], outcomes: list[Outcome]) -> dict[str, int]:
    if not isinstance(probabilities, dict) or set(probabilities) != {o.slug for o in outcomes}:
        raise InvalidTrade("give a probability for every outcome: " + ", ".join(o.slug for o in outcomes))
    result = {}
    for slug, value in probabilities.items():
        try:
            number = Decimal(str(value))
        except InvalidOperation:
            raise InvalidTrade(f"probability for {slug!r} is not a number") from None
        if not number.is_finite() or number < 0 or number > 1 or number.as_tuple().exponent < -6:
            raise InvalidTrade(f"probability for {slug!r} must be between 0 and 1 with at most 6 decimals")
        result[slug] = int(number * MICRO)
    if sum(result.values()) != MICRO:
        raise InvalidTrade("probabilities must sum to 1")
    return result


@retry_on_conflict
def resolve_market(
    *, market_slug: str, by, outcome: str | None = None, probabilities: dict | None = None, cancel: bool = False,
    note: str = "", sources: list[str] | None = None, expected_trade_count: int | None = None,
) -> Resolution:
    """Resolve (or cancel) a market in one transaction and pay every holder.

    Idempotent: a market already resolved or cancelled pays nothing more and
    returns ``already_done``. The pool's remainder returns to the treasury;
    on cancellation, refunds the pool cannot cover come from the treasury.
    A draft can be cancelled but not resolved. With ``expected_trade_count``
    (the count a payout preview was made at), a trade since then raises
    StalePreview under the lock, so nobody is paid by a preview they did
    not see.
    """
    sources = clean_resolution_sources(sources)
    note = note or ""
    if len(note) > limits.NOTE_MAX_CHARS:
        raise InvalidTrade(f"the note is longer than {limits.NOTE_MAX_CHARS:,} characters")
    with _write_turn(), transaction.atomic(durable=True):
        market = Market.objects.select_for_update().filter(slug=market_slug).first()
        if market is None:
            raise MarketNotFound(f"no market {market_slug!r}")
        if market.status in (Market.Status.RESOLVED, Market.Status.CANCELLED):
            if not _same_settlement(market, outcome=outcome, probabilities=probabilities, cancel=cancel):
                raise ResolutionConflict(
                    f"the market was already {market.get_status_display().lower()} another way; "
                    "a settlement is final and is not changed"
                )
            return Resolution(market=market, payouts={}, returned_micro=0, already_done=True)
        if market.status == Market.Status.DRAFT and not cancel:
            raise InvalidTrade("a draft market cannot be resolved: open it first, or cancel it")
        if expected_trade_count is not None and market.trade_count != expected_trade_count:
            raise StalePreview(f"{market.trade_count - expected_trade_count} trade(s) happened since the preview")
        payouts, per_share = plan_payouts(market=market, outcome=outcome, probabilities=probabilities, cancel=cancel)
        treasury = get_treasury()
        holders = list(Account.objects.filter(user_id__in=payouts))
        locked = lock_accounts(ids=[market.pool_id, treasury.pk, *(a.pk for a in holders)])
        pool, treasury = locked[market.pool_id], locked[treasury.pk]
        by_user = {a.user_id: locked[a.pk] for a in holders}
        total = sum(payouts.values())
        if total > pool.balance_micro:
            if not cancel:
                raise AssertionError("pool cannot cover the payouts: the LMSR invariant is broken")
            post_transfer(debit=treasury, credit=pool, amount_micro=total - pool.balance_micro, kind=Transfer.Kind.COVER, reference=f"market:{market.pk}", memo="Refunds beyond the pool")
        kind = Transfer.Kind.REFUND if cancel else Transfer.Kind.PAYOUT
        for user_id, amount in sorted(payouts.items()):
            post_transfer(debit=pool, credit=by_user[user_id], amount_micro=amount, kind=kind, reference=f"market:{market.pk}")
        returned = pool.balance_micro
        if returned > 0:
            post_transfer(debit=pool, credit=treasury, amount_micro=returned, kind=Transfer.Kind.POOL_RETURN, reference=f"market:{market.pk}")
        for slug, value in per_share.items():
            Outcome.objects.filter(market=market, slug=slug).update(payout_per_share_micro=value)
        if cancel:
            Position.objects.filter(market=market).update(payout_micro=0)
            for user_id, amount in payouts.items():
                first = Position.objects.filter(market=market, user_id=user_id).order_by("pk").first()
                Position.objects.filter(pk=first.pk).update(payout_micro=amount)
        else:
            for position in Position.objects.filter(market=market).select_related("outcome"):
                Position.objects.filter(pk=position.pk).update(payout_micro=position.shares_micro * per_share[position.outcome.slug] // MICRO)
        market.status = Market.Status.CANCELLED if cancel else Market.Status.RESOLVED
        market.resolved_at = timezone.now()
        market.resolved_by = by
        market.resolution = {"cancel": True} if cancel else ({"outcome": outcome} if outcome else {"probabilities": {k: format_micro(v) for k, v in per_share.items()}})
        market.resolution_note = note
        market.resolution_sources = sources
        market.save(update_fields=["status", "resolved_at", "resolved_by", "resolution", "resolution_note", "resolution_sources"])
        return Resolution(market=market, payouts=payouts, returned_micro=returned)


def _same_settlement(market: Market, *, outcome, probabilities, cancel) -> bool:
    """Return whether a settled ``market`` was settled the way this request asks (a harmless repeat)."""
    record = market.resolution or {}
    if cancel:
        return bool(record.get("cancel"))
    if outcome is not None:
        return record.get("outcome") == outcome
    if probabilities is not None and record.get("probabilities"):
        try:
            asked = _probabilities_micro(probabilities, list(market.outcomes.all()))
        except InvalidTrade:
            return False
        stored = {slug: int(Decimal(str(value)) * MICRO) for slug, value in record["probabilities"].items()}
        return asked == stored
    return False


# --- editing from the admin --------------------------------------------------


_SETTLED = (Market.Status.RESOLVED, Market.Status.CANCELLED)


def update_market(*, market_slug: str, description: str, resolution_criteria: str, close_at) -> Market:
    """Change a market's description, resolution criteria and close time.

    The question, outcomes and liquidity b are fixed once traders can rely on
    them. A settled market is not edited. A new close time must lie in the
    future; moving it forward reopens trading on a market that had closed.
    """
    if timezone.is_naive(close_at):
        close_at = timezone.make_aware(close_at, dt.timezone.utc)  # a time without an offset is UTC
    _check_texts(description=description, resolution_criteria=resolution_criteria)
    with _write_turn(), transaction.atomic(durable=True):
        market = _one(Market.objects.select_for_update().filter(slug=market_slug))
        if market is None:
            raise MarketNotFound(f"no market {market_slug!r}")
        if market.status in _SETTLED:
            raise MarketClosed(f"the market is {market.get_status_display().lower()} and can no longer be edited")
        if close_at != market.close_at and close_at <= timezone.now():
            raise InvalidTrade("the close time cannot be moved into the past")
        market.description = description
        market.resolution_criteria = resolution_criteria
        market.close_at = close_at
        market.save(update_fields=["description", "resolution_criteria", "close_at"])
    return market


def open_market(*, market_slug: str) -> Market:
    """Open a draft market for trading; its close time must still be ahead."""
    with _write_turn(), transaction.atomic(durable=True):
        market = _one(Market.objects.select_for_update().filter(slug=market_slug))
        if market is None:
            raise MarketNotFound(f"no market {market_slug!r}")
        if market.status != Market.Status.DRAFT:
            raise InvalidTrade(f"only a draft can be opened; this market is {market.get_status_display().lower()}")
        if market.close_at <= timezone.now():
            raise InvalidTrade("the close time has passed: move it into the future before opening")
        market.status = Market.Status.OPEN
        market.save(update_fields=["status"])
    return market


def unlink_article(*, market: Market, article) -> bool:
    """Remove the link between ``market`` and ``article``; return False if there was none."""
    deleted, _ = MarketArticle.objects.filter(market=market, article=article).delete()
    return deleted > 0


@dataclass(frozen=True)
class HolderPayout:
    """One holder's shares in a market and what a resolution would pay them."""

    user_id: int
    username: str
    shares_micro: dict[str, int]  # outcome slug -> shares held
    net_spent_micro: int  # paid for buys minus received from sells
    payout_micro: int


@dataclass(frozen=True)
class ResolutionPreview:
    """What resolving a market a given way would pay, computed without writing anything."""

    holders: list[HolderPayout]
    per_share_micro: dict[str, int]
    total_micro: int
    pool_micro: int
    returned_micro: int  # the pool's remainder going back to the treasury
    cover_micro: int  # refunds beyond the pool, paid by the treasury (cancellation only)
    trade_count: int


def preview_resolution(
    *, market: Market, outcome: str | None = None, probabilities: dict | None = None, cancel: bool = False
) -> ResolutionPreview:
    """Return the payouts ``resolve_market`` would make now, holder by holder (a dry run).

    The arithmetic is ``plan_payouts``, the same function the resolution
    itself runs, so the preview and the payment cannot disagree while no
    trade happens in between (``trade_count`` tells).
    """
    fresh = Market.objects.select_related("pool").get(pk=market.pk)
    payouts, per_share = plan_payouts(market=fresh, outcome=outcome, probabilities=probabilities, cancel=cancel)
    rows: dict[int, dict] = {}
    positions = Position.objects.filter(market=fresh).select_related("outcome", "user").order_by("user__username", "outcome__position")
    for position in positions:
        row = rows.setdefault(position.user_id, {"username": position.user.username, "shares": {}, "net": 0})
        if position.shares_micro:
            row["shares"][position.outcome.slug] = position.shares_micro
        row["net"] += position.spent_micro - position.received_micro
    holders = [
        HolderPayout(
            user_id=user_id, username=row["username"], shares_micro=row["shares"],
            net_spent_micro=row["net"], payout_micro=payouts.get(user_id, 0),
        )
        for user_id, row in rows.items()
        if row["shares"] or payouts.get(user_id)
    ]
    total = sum(payouts.values())
    pool = fresh.pool.balance_micro
    return ResolutionPreview(
        holders=holders, per_share_micro=per_share, total_micro=total, pool_micro=pool,
        returned_micro=max(pool - total, 0), cover_micro=max(total - pool, 0), trade_count=fresh.trade_count,
    )


# --- expert forecasts -------------------------------------------------------




def check_expert_forecast(*, article, market: Market, outcome: Outcome | str, probability, expert=None) -> tuple[Outcome, Any, float]:
    """Return the outcome, expert and probability of a forecast that may be recorded; raise InvalidForecast if not.

    The rules: 0 < probability < 1, the market is linked to the article, the
    outcome is the market's, and there is an expert (given, or the insight's).
    """
    try:
        p = float(probability)
    except (TypeError, ValueError):
        raise InvalidForecast(f"probability is not a number: {probability!r}") from None
    if not (0 < p < 1):  # also refuses NaN
        raise InvalidForecast(f"probability must be between 0 and 1 (exclusive), got {probability!r}")
    if not MarketArticle.objects.filter(market=market, article=article).exists():
        raise InvalidForecast(f"market {market.slug!r} is not linked to the article {article.title!r}")
    if isinstance(outcome, str):
        found = Outcome.objects.filter(market=market, slug=outcome.strip().lower()).first()
        if found is None:
            raise InvalidForecast(f"market {market.slug!r} has no outcome {outcome!r}")
        outcome = found
    elif outcome.market_id != market.pk:
        raise InvalidForecast(f"outcome {outcome.slug!r} belongs to another market")
    expert = expert or getattr(article, "expert", None)
    if expert is None:
        raise InvalidForecast("no expert: the article is not an expert insight with a byline, and none was given")
    return outcome, expert, p


def forecast_time(*, article) -> dt.datetime:
    """Return when an article's forecasts count as stated: its publication time (now if it has none)."""
    return getattr(article, "published_at", None) or getattr(article, "first_published_at", None) or timezone.now()


def record_expert_forecast(
    *,
    article,
    market: Market,
    outcome: Outcome | str,
    probability: float | str,
    expert=None,
    stated_at: dt.datetime | None = None,
) -> ExpertForecast:
    """Record (or revise) the probability an insight states for one outcome of a linked market.

    ``expert`` defaults to the insight's expert (``article.expert``);
    ``stated_at`` to the article's publication time. One row per article,
    market and outcome: recording again updates it.
    """
    outcome, expert, p = check_expert_forecast(
        article=article, market=market, outcome=outcome, probability=probability, expert=expert
    )
    with transaction.atomic():
        forecast, _ = ExpertForecast.objects.update_or_create(
            article=article, market=market, outcome=outcome,
            defaults={"expert": expert, "probability": p, "stated_at": stated_at or forecast_time(article=article)},
        )
    return forecast


def record_stated_forecasts(*, article) -> tuple[list[ExpertForecast], list[str]]:
    """Turn the forecasts written in an insight's source (``article.stated_forecasts``) into rows.

    Each names its market by question or slug. Returns the recorded
    forecasts and one line per forecast that could not be recorded (unknown
    market, market not linked, bad outcome or probability).
    """
    recorded: list[ExpertForecast] = []
    problems: list[str] = []
    for entry in article.stated_forecasts or []:
        name = str(entry.get("question") or entry.get("market") or "").strip()
        market = Market.objects.filter(question=name).first() or Market.objects.filter(slug=name).first()
        if market is None:
            problems.append(f"no market {name!r}")
            continue
        try:
            recorded.append(record_expert_forecast(
                article=article, market=market, outcome=str(entry.get("outcome") or "yes"),
                probability=entry.get("probability"),
            ))
        except InvalidForecast as exc:
            problems.append(str(exc))
    return recorded, problems
