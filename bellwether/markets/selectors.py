"""Reads over markets shared by the API, pages and the audit."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from django.contrib.auth import get_user_model
from django.core.paginator import Page, Paginator
from django.db.models import (
    BigIntegerField, Case, Count, Exists, F, JSONField, Max, OuterRef, Prefetch, Q, QuerySet, Subquery, Sum, When, Window,
)
from django.db.models.functions import Coalesce, RowNumber, TruncHour
from django.utils import timezone
from taggit.models import Tag

from bellwether.ledger.models import Account
from bellwether.ledger.selectors import account_transfers
from bellwether.news.models import ArticlePage, Region, SectionPage
from bellwether.paging import BadCursor, newest_first_after

from . import lmsr
from .exceptions import MarketNotFound
from .models import ExpertForecast, Market, MarketArticle, Outcome, Position, Trade


STATUS_FILTERS = ("open", "closed", "resolved", "cancelled")


def _with_outcomes(qs: QuerySet[Market]) -> QuerySet[Market]:
    return qs.prefetch_related(
        Prefetch("outcomes", queryset=Outcome.objects.order_by("position")),
        Prefetch("article_links", queryset=MarketArticle.objects.only("id", "market_id", "article_id")),
    )


def market_detail(*, slug: str, drafts: bool = False) -> Market:
    """Return a market with its outcomes, or raise MarketNotFound; a draft is found only with ``drafts`` (editors)."""
    qs = Market.objects.filter(slug=slug)
    if not drafts:
        qs = qs.exclude(status=Market.Status.DRAFT)
    market = _with_outcomes(qs).first()
    if market is None:
        raise MarketNotFound(f"no market {slug!r}")
    return market


def is_draft(*, slug: str) -> bool:
    """Return whether the market ``slug`` is a draft (False when there is none)."""
    return Market.objects.filter(slug=slug, status=Market.Status.DRAFT).exists()


def list_markets(
    *, status: str | None = None, tag: str | None = None, section: str | None = None, limit: int = 50,
    after: tuple | None = None, drafts: bool = False,
) -> list[Market]:
    """Return markets, newest first, filtered by status and by their articles' tag or section.

    ``after`` is the (created_at, id) of the last market of the previous
    page. Drafts are listed only with ``drafts`` (editors), and only when
    asked for with ``status="draft"``.
    """
    qs = Market.objects.order_by("-created_at", "-id")
    if status == Market.Status.DRAFT:
        if not drafts:
            return []
        qs = qs.filter(status=Market.Status.DRAFT)
    else:
        qs = qs.exclude(status=Market.Status.DRAFT)
    if after is not None:
        qs = qs.filter(newest_first_after("created_at", *after))
    now = timezone.now()
    if status == "open":
        qs = qs.filter(status=Market.Status.OPEN, close_at__gt=now)
    elif status == "closed":
        qs = qs.filter(status=Market.Status.OPEN, close_at__lte=now)
    elif status in (Market.Status.RESOLVED, Market.Status.CANCELLED):
        qs = qs.filter(status=status)
    if tag:
        qs = qs.filter(articles__tags__slug=tag).distinct()
    if section:
        paths = list(SectionPage.objects.filter(slug=section).values_list("path", flat=True))
        if not paths:
            return []
        condition = Q()
        for path in paths:
            condition |= Q(articles__path__startswith=path)
        qs = qs.filter(condition).distinct()
    return list(_with_outcomes(qs)[:limit])


def articles_by_id(ids: list[int]):
    """Return the articles with these ids (drafts too: a market can be prepared with its story)."""
    return list(ArticlePage.objects.filter(pk__in=ids)) if ids else []


def usernames(user_ids) -> dict[int, str]:
    return dict(get_user_model().objects.filter(pk__in=list(user_ids)).values_list("pk", "username"))


def user_positions(*, user) -> list[dict]:
    """Return the user's positions with current value and profit or loss, in micro-credits."""
    positions = list(
        Position.objects.filter(user=user).exclude(shares_micro=0, payout_micro__isnull=True)
        .select_related("outcome", "market").order_by("-id")
    )
    markets = {p.market_id: p.market for p in positions}
    outcomes: dict[int, list[Outcome]] = {}
    for o in Outcome.objects.filter(market_id__in=markets).order_by("market_id", "position"):
        outcomes.setdefault(o.market_id, []).append(o)
    prices = {
        mid: dict(zip([o.pk for o in outs], lmsr.prices_after_micro([o.shares_micro for o in outs], markets[mid].liquidity_b_micro)))
        for mid, outs in outcomes.items()
    }
    result = []
    for p in positions:
        settled = p.payout_micro is not None
        price = prices[p.market_id][p.outcome_id]
        value = p.payout_micro if settled else int(p.shares_micro * price)
        result.append({
            "market": p.market.slug,
            "question": p.market.question,
            "outcome": p.outcome.slug,
            "shares_micro": p.shares_micro,
            "average_cost": (p.cost_basis_micro / p.shares_micro) if p.shares_micro else 0.0,
            "price": price,
            "value_micro": value,
            "cost_basis_micro": p.cost_basis_micro,
            "pnl_micro": value + p.received_micro - p.spent_micro if settled else value - p.cost_basis_micro,
            "settled": settled,
        })
    return result


# --- for the market page, its ticket and the portfolio (views/trading.py) ---

# Chart ranges: key -> (label, span); None spans the whole history.
CHART_RANGES = {"1d": ("1D", dt.timedelta(days=1)), "1w": ("1W", dt.timedelta(days=7)), "1m": ("1M", dt.timedelta(days=30)), "all": ("All", None)}
CHART_MAX_POINTS = 1000
RECENT_TRADES = 20
TOP_HOLDERS = 10
PAYOUT_ROWS = 100
LEDGER_PAGE_SIZE = 25


def market_for_page(*, slug: str, user=None) -> Market:
    """Return a market with its outcomes (in order) and resolver; drafts are found only by staff."""
    market = (
        Market.objects.filter(slug=slug).select_related("resolved_by")
        .prefetch_related(Prefetch("outcomes", queryset=Outcome.objects.order_by("position"))).first()
    )
    if market is None or (market.status == Market.Status.DRAFT and not getattr(user, "is_staff", False)):
        raise MarketNotFound(f"no market {slug!r}")
    return market


def _opening_odds(n: int) -> list[float]:
    return [1 / n] * n


def _odds_as_of(market: Market, when, n: int) -> list[float]:
    """Return the probabilities after the last trade at or before ``when`` (the opening odds before any)."""
    after = (
        market.trades.filter(created_at__lte=when).order_by("-created_at", "-id")
        .values_list("probabilities_after", flat=True).first()
    )
    return list(after) if after else _opening_odds(n)


def market_odds(*, market: Market, change_since=None) -> list[dict]:
    """Return each outcome with its probability now and the change since ``change_since`` (default: a day ago)."""
    outcomes = list(market.outcomes.all())
    prices = lmsr.prices_after_micro([o.shares_micro for o in outcomes], market.liquidity_b_micro)
    since = change_since or timezone.now() - dt.timedelta(days=1)
    before = _odds_as_of(market, since, len(outcomes))
    return [
        {"outcome": o, "index": i, "probability": p, "change": p - b}
        for i, (o, p, b) in enumerate(zip(outcomes, prices, before))
    ]


def _position_row(position: Position, price: float) -> dict:
    settled = position.payout_micro is not None
    value = position.payout_micro if settled else int(position.shares_micro * price)
    pnl = value + position.received_micro - position.spent_micro if settled else value - position.cost_basis_micro
    return {
        "position": position,
        "outcome": position.outcome,
        "market": position.market,
        "shares_micro": position.shares_micro,
        # Micro-credits per whole share.
        "average_cost_micro": position.cost_basis_micro * lmsr.MICRO // position.shares_micro if position.shares_micro else 0,
        "average_cost": position.cost_basis_micro / position.shares_micro if position.shares_micro else 0.0,
        "cost_basis_micro": position.cost_basis_micro,
        "price": price,
        "value_micro": value,
        "pnl_micro": pnl,
        "payout_micro": position.payout_micro,
        "settled": settled,
    }


def market_holdings(*, market: Market, user) -> list[dict]:
    """Return ``user``'s positions in ``market`` with value and profit or loss (micro-credits); [] for anonymous readers."""
    if user is None or not user.is_authenticated:
        return []
    outcomes = list(market.outcomes.all())
    prices = dict(zip((o.pk for o in outcomes), lmsr.prices_after_micro([o.shares_micro for o in outcomes], market.liquidity_b_micro)))
    by_id = {o.pk: o for o in outcomes}
    rows = []
    for position in Position.objects.filter(market=market, user=user).exclude(shares_micro=0, payout_micro__isnull=True).order_by("outcome__position"):
        position.outcome = by_id[position.outcome_id]
        position.market = market
        rows.append(_position_row(position, prices[position.outcome_id]))
    return rows


def recent_trades(*, market: Market, limit: int = RECENT_TRADES) -> list[Trade]:
    """Return the market's latest trades, newest first, with trader and outcome."""
    return list(
        Trade.objects.filter(market=market).select_related("user", "outcome").order_by("-created_at", "-id")[:limit]
    )


def top_holders(*, market: Market, limit: int = TOP_HOLDERS) -> list[dict]:
    """Return, for each outcome in order, its ``limit`` largest holders (one query for all outcomes)."""
    ranked = (
        Position.objects.filter(market=market, shares_micro__gt=0)
        .annotate(rank=Window(RowNumber(), partition_by=[F("outcome_id")], order_by=[F("shares_micro").desc(), F("id").asc()]))
        .filter(rank__lte=limit).select_related("user").order_by("outcome_id", "rank")
    )
    by_outcome: dict[int, list[Position]] = {}
    for position in ranked:
        by_outcome.setdefault(position.outcome_id, []).append(position)
    return [{"outcome": o, "holders": by_outcome.get(o.pk, [])} for o in market.outcomes.all()]


def market_payouts(*, market: Market, limit: int = PAYOUT_ROWS) -> dict:
    """Return what each holder was paid at resolution or cancellation, largest first, and how many holders there were."""
    rows = list(
        Position.objects.filter(market=market, payout_micro__isnull=False)
        .values("user_id", "user__username").annotate(paid_micro=Sum("payout_micro"))
        .order_by("-paid_micro", "user__username")[: limit + 1]
    )
    return {"rows": rows[:limit], "more": len(rows) > limit}


def linked_articles(*, market: Market) -> list:
    """Return the live articles linked to ``market``, newest first."""
    return list(
        ArticlePage.objects.live().filter(market_links__market=market)
        .annotate(dated_at=Coalesce("published_at", "first_published_at"))
        .order_by(F("dated_at").desc(nulls_last=True), "-pk")
    )


def _even_indices(count: int, limit: int) -> list[int]:
    """Return at most ``limit`` indices spread evenly over ``range(count)``, keeping the first and the last.

    >>> _even_indices(11, 4)
    [0, 3, 7, 10]
    >>> _even_indices(3, 10)
    [0, 1, 2]
    """
    if count <= limit:
        return list(range(count))
    last = count - 1
    return sorted({round(i * last / (limit - 1)) for i in range(limit)})


def _thinned_trades(trades: QuerySet[Trade], *, max_points: int) -> tuple[list[tuple], list[float] | None]:
    """Return the (created_at, probabilities_after) points of ``trades`` a chart of ``max_points`` keeps, and the last odds.

    The chart's points are an opening point, the trades in time order and a
    closing point with the last trade's odds; an even spread over all of
    them picks the trades kept. The database returns only those rows (and
    the last trade), so a market with a million trades sends a thousand
    rows, not a million. The last odds are None when there is no trade.
    """
    ordered = trades.order_by("created_at", "id")
    count = ordered.count()
    if count == 0:
        return [], None
    picks = [i for i in _even_indices(count + 2, max_points) if 1 <= i <= count]
    rows = _numbered_trades(ordered, {*picks, count})
    return [rows[i] for i in picks], rows[count][1]


def _numbered_trades(ordered: QuerySet[Trade], numbers: set[int]) -> dict[int, tuple]:
    """Return {n: (created_at, probabilities_after)} for the n-th trades (from 1) of ``ordered`` (time order).

    A run of consecutive numbers is a plain slice; scattered ones are picked
    by row number in the database, so only the rows wanted travel.
    """
    if not numbers:
        return {}
    low, high = min(numbers), max(numbers)
    if high - low + 1 == len(numbers):
        return dict(zip(range(low, high + 1), ordered.values_list("created_at", "probabilities_after")[low - 1 : high]))
    numbered = ordered.annotate(row=Window(RowNumber(), order_by=[F("created_at").asc(), F("id").asc()]))
    return {
        row: (at, probs)
        for row, at, probs in numbered.filter(row__in=numbers).values_list("row", "created_at", "probabilities_after")
    }


def history_page(*, market: Market, through: int | None = None, start: int = 0, limit: int, max_points: int = CHART_MAX_POINTS) -> dict:
    """Return one page of the market's price history, thinned like the chart, and where the next page starts.

    The history is the opening odds at ``created_at``, then the odds after
    each trade in time order, spread evenly down to ``max_points`` points
    (the first and the latest always kept) the way the chart thins its
    line. ``through`` is how many trades the history covers: the count
    when the first page was read, so later pages pick from the same points
    while new trades arrive (a market's trades only ever add at the end).
    Returns {"points": [(at, [p_i])], "through", "next_start" (None on the
    last page)}; raises BadCursor when ``through`` or ``start`` cannot come
    from an earlier page.
    """
    ordered = market.trades.order_by("created_at", "id")
    count = ordered.count()
    through = count if through is None else through
    if through > count:
        raise BadCursor("the cursor is not one this list gave out")
    picks = _even_indices(through + 1, max_points)
    if start >= len(picks):
        raise BadCursor("the cursor is not one this list gave out")
    page = picks[start : start + limit]
    rows = _numbered_trades(ordered, {i for i in page if i >= 1})
    n = len(market.outcomes.all())
    points = [(market.created_at, _opening_odds(n)) if i == 0 else (rows[i][0], list(rows[i][1])) for i in page]
    end = start + len(page)
    return {"points": points, "through": through, "next_start": end if end < len(picks) else None}


def chart_series(*, market: Market, range_key: str = "all", now=None, max_points: int = CHART_MAX_POINTS) -> dict:
    """Return the step-line price history for one range, with the linked articles inside it.

    Points: the odds at the range's start (the opening odds at created_at for
    "all"), then after every trade in the range, then a last point at
    resolution for settled markets or at ``now``. Long histories are thinned
    to ``max_points``, always keeping the last point.
    """
    now = now or timezone.now()
    outcomes = list(market.outcomes.all())
    n = len(outcomes)
    settled = market.status in (Market.Status.RESOLVED, Market.Status.CANCELLED) and market.resolved_at
    end = market.resolved_at if settled else now
    span = CHART_RANGES[range_key][1]
    start = market.created_at if span is None else max(market.created_at, end - span)
    trades = market.trades.filter(created_at__lte=end)
    if start > market.created_at:
        first = _odds_as_of(market, start, n)
        trades = trades.filter(created_at__gt=start)
    else:
        first = _opening_odds(n)
    kept, last = _thinned_trades(trades, max_points=max_points)
    points = [(start, first), *kept, (max(end, start), list(last or first))]
    articles = [
        a for a in linked_articles(market=market)
        if a.dated_at is not None and start <= a.dated_at <= end
    ]
    return {
        "outcomes": outcomes,
        "times": [round(at.timestamp(), 3) for at, _ in points],
        "series": [[round(probs[i], 6) for _, probs in points] for i in range(n)],
        "articles": sorted(articles, key=lambda a: a.dated_at),
        "start": start,
        "end": end,
        "trade_count": market.trade_count,
    }


def portfolio_positions(*, user) -> dict:
    """Return ``user``'s open positions and, per settled market, what was paid; all values in micro-credits.

    Like ``user_positions`` but with the outcome and market rows the page
    shows; a settled market's positions are grouped because a cancellation
    refund is paid per market, not per outcome. Two queries in all.
    """
    positions = list(
        Position.objects.filter(user=user).exclude(shares_micro=0, payout_micro__isnull=True)
        .select_related("outcome", "market").order_by("-market__created_at", "market_id", "outcome__position")
    )
    market_ids = {p.market_id for p in positions}
    outcomes: dict[int, list[Outcome]] = {}
    for o in Outcome.objects.filter(market_id__in=market_ids).order_by("market_id", "position"):
        outcomes.setdefault(o.market_id, []).append(o)
    liquidity = {p.market_id: p.market.liquidity_b_micro for p in positions}
    prices: dict[int, float] = {}
    for market_id, outs in outcomes.items():
        prices.update(zip((o.pk for o in outs), lmsr.prices_after_micro([o.shares_micro for o in outs], liquidity[market_id])))
    open_rows, settled = [], {}
    for p in positions:
        row = _position_row(p, prices[p.outcome_id])
        if not row["settled"]:
            open_rows.append(row)
            continue
        group = settled.setdefault(p.market_id, {
            "market": p.market, "outcomes": [], "spent_micro": 0, "received_micro": 0, "payout_micro": 0, "pnl_micro": 0,
        })
        if p.shares_micro:
            group["outcomes"].append({"outcome": p.outcome, "shares_micro": p.shares_micro})
        group["spent_micro"] += p.spent_micro
        group["received_micro"] += p.received_micro
        group["payout_micro"] += p.payout_micro
        group["pnl_micro"] += row["pnl_micro"]
    for group in settled.values():
        group["net_spent_micro"] = group["spent_micro"] - group["received_micro"]
    settled_rows = sorted(settled.values(), key=lambda g: g["market"].resolved_at or g["market"].created_at, reverse=True)
    return {
        "open": open_rows,
        "settled": settled_rows,
        "open_value_micro": sum(r["value_micro"] for r in open_rows),
        "open_pnl_micro": sum(r["pnl_micro"] for r in open_rows),
    }


def user_balance(*, user) -> tuple[Account | None, int]:
    """Return the user's cash account (None before it is opened) and its balance."""
    account = next(iter(Account.objects.filter(user=user)[:1]), None)
    return account, account.balance_micro if account else 0


def ledger_lines(*, account: Account | None, page_number=1, per_page: int = LEDGER_PAGE_SIZE):
    """Return one page of the account's transfers, newest first, seen from the account holder.

    Each line gains ``signed_micro`` (+ in, − out), ``balance_after_micro``
    (the running balance after it) and ``target`` (the market, and the
    trade, it was for). A fixed number of queries whatever the page.
    """
    if account is None:
        return Paginator([], per_page).get_page(1)
    transfers = account_transfers(account=account)
    page = Paginator(transfers, per_page).get_page(page_number)
    lines = list(page.object_list)
    signed = Case(When(credit_id=account.pk, then=F("amount_micro")), default=-F("amount_micro"), output_field=BigIntegerField())
    skipped = page.start_index() - 1 if lines else 0
    newer = transfers[:skipped].aggregate(total=Sum(signed))["total"] or 0 if skipped else 0
    balance = account.balance_micro - newer
    trade_ids, market_ids = set(), set()
    for line in lines:
        kind, _, ident = line.reference.partition(":")
        if ident.isdigit():
            (trade_ids if kind == "trade" else market_ids if kind == "market" else set()).add(int(ident))
    trades = {t.pk: t for t in Trade.objects.filter(pk__in=trade_ids).select_related("market", "outcome")} if trade_ids else {}
    markets = {m.pk: m for m in Market.objects.filter(pk__in=market_ids)} if market_ids else {}
    for line in lines:
        line.signed_micro = line.amount_micro if line.credit_id == account.pk else -line.amount_micro
        line.balance_after_micro = balance
        balance -= line.signed_micro
        kind, _, ident = line.reference.partition(":")
        line.trade = trades.get(int(ident)) if kind == "trade" and ident.isdigit() else None
        line.for_market = line.trade.market if line.trade else (markets.get(int(ident)) if kind == "market" and ident.isdigit() else None)
    page.object_list = lines
    return page


# --- for the markets index and the panels beside the news (views/browse.py) ---

INDEX_TABS = {"open": "Open", "closing": "Closing soon", "closed": "Awaiting result", "resolved": "Recently resolved"}
INDEX_SORTS = {"volume": "Volume", "move": "Biggest move", "close": "Close date"}
TAB_DEFAULT_SORT = {"open": "volume", "closing": "close", "closed": "close", "resolved": "close"}
INDEX_PAGE_SIZE = 20
CLOSING_SOON = dt.timedelta(days=7)
MOVE_WINDOW = dt.timedelta(hours=24)
HISTORY_WINDOW = dt.timedelta(days=7)
HISTORY_STEP = dt.timedelta(hours=6)
ACTIVITY_WINDOW = dt.timedelta(days=7)
_SHOWN = (Market.Status.OPEN, Market.Status.RESOLVED, Market.Status.CANCELLED)


@dataclass
class MarketRow:
    """One market as lists show it: the outcome in focus, its odds, its move and its week."""

    market: Market
    outcomes: list
    outcome: Outcome  # YES for a binary market, the current leader otherwise
    probability: float
    change_24h: float
    history: list
    since_publish: float | None = None

    @property
    def label(self) -> str:
        """Return the name shown beside the probability ("YES" or the leader's name)."""
        return "YES" if self.market.kind == Market.Kind.BINARY else self.outcome.name

    @property
    def resolution_label(self) -> str:
        """Return how the market ended, or "" while it has not."""
        market = self.market
        if market.status == Market.Status.CANCELLED:
            return "Cancelled (N/A)"
        if market.status != Market.Status.RESOLVED:
            return ""
        result = market.resolution or {}
        if "outcome" in result:
            names = {o.slug: o.name for o in self.outcomes}
            name = names.get(result["outcome"], result["outcome"])
            return f"Resolved {name.upper()}" if market.kind == Market.Kind.BINARY else f"Resolved: {name}"
        return "Resolved to probabilities"


def _last_probabilities(before=None) -> Subquery:
    """Return a subquery: the outcome prices after the market's last trade (at or before ``before``)."""
    trades = Trade.objects.filter(market_id=OuterRef("pk"))
    if before is not None:
        trades = trades.filter(created_at__lte=before)
    return Subquery(trades.order_by("-created_at", "-id").values("probabilities_after")[:1], output_field=JSONField())


def _with_price_marks(qs: QuerySet[Market], *, now) -> QuerySet[Market]:
    return qs.annotate(latest_probs=_last_probabilities(), day_ago_probs=_last_probabilities(now - MOVE_WINDOW))


def _focus_index(*, binary: bool, probabilities: list[float], yes_index: int = 0) -> int:
    """Return the position shown: YES for a binary market, else the leader (the first on a tie)."""
    if binary:
        return yes_index
    return max(range(len(probabilities)), key=lambda i: (probabilities[i], -i))


def _change(latest, before, index: int) -> float:
    """Return the change of one outcome's price from ``before`` to ``latest`` (opening odds if no trade yet)."""
    if not latest:
        return 0.0
    start = before[index] if before else 1 / len(latest)
    return latest[index] - start


def history_points(*, trades: list[tuple], start, end, step, start_value: float) -> list[float]:
    """Return a price series: ``start_value``, the price at each ``step`` after ``start``, then the last price.

    ``trades`` are (time, price) in time order, each after ``start``; the
    price at a step is that of the last trade at or before it, so a market
    with 1,000 trades a day still draws as a few dozen points.

    >>> t0 = dt.datetime(2026, 1, 1)
    >>> hour = dt.timedelta(hours=1)
    >>> history_points(trades=[(t0 + hour, 0.6), (t0 + 5 * hour, 0.7)], start=t0, end=t0 + 7 * hour, step=3 * hour, start_value=0.5)
    [0.5, 0.6, 0.7, 0.7]
    """
    values = [start_value]
    current, i = start_value, 0
    boundary = start + step
    while boundary < end:
        while i < len(trades) and trades[i][0] <= boundary:
            current = trades[i][1]
            i += 1
        values.append(current)
        boundary += step
    if trades:
        current = trades[-1][1]
    values.append(current)
    return values


def market_rows(ids: list[int], *, now=None) -> list[MarketRow]:
    """Return a MarketRow for each market id, in the order given, in four queries whatever the count.

    One query reads the markets with their latest prices and prices a day
    and a week ago, one their outcomes, and one the last trade of each hour
    of the past week for all of them together (the sparklines).
    """
    if not ids:
        return []
    now = now or timezone.now()
    week_start = (now - HISTORY_WINDOW).replace(minute=0, second=0, microsecond=0)
    markets = {
        m.pk: m
        for m in _with_price_marks(Market.objects.filter(pk__in=ids), now=now)
        .annotate(week_ago_probs=_last_probabilities(week_start))
        .prefetch_related(Prefetch("outcomes", queryset=Outcome.objects.order_by("position")))
    }
    hourly_last = (
        Trade.objects.filter(market_id__in=list(markets), created_at__gt=week_start)
        .annotate(hour=TruncHour("created_at", tzinfo=dt.timezone.utc))
        .values("market_id", "hour")
        .annotate(last_id=Max("id"))
        .values("last_id")
    )
    trades: dict[int, list[tuple]] = {}
    for market_id, at, probs in (
        Trade.objects.filter(pk__in=hourly_last).order_by("created_at", "id").values_list("market_id", "created_at", "probabilities_after")
    ):
        trades.setdefault(market_id, []).append((at, probs))
    rows = []
    for pk in ids:
        market = markets.get(pk)
        if market is None:
            continue
        outcomes = list(market.outcomes.all())
        uniform = [1 / len(outcomes)] * len(outcomes)
        latest = market.latest_probs or uniform
        binary = market.kind == Market.Kind.BINARY
        yes_index = next((i for i, o in enumerate(outcomes) if o.slug == "yes"), 0)
        index = _focus_index(binary=binary, probabilities=latest, yes_index=yes_index)
        start = market.week_ago_probs or uniform
        history = history_points(
            trades=[(at, probs[index]) for at, probs in trades.get(pk, [])],
            start=max(week_start, market.created_at), end=now, step=HISTORY_STEP, start_value=start[index],
        )
        rows.append(MarketRow(
            market=market, outcomes=outcomes, outcome=outcomes[index], probability=latest[index],
            change_24h=_change(market.latest_probs, market.day_ago_probs, index), history=history,
        ))
    return rows


def _visible_markets() -> QuerySet[Market]:
    return Market.objects.filter(status__in=_SHOWN)


def _trading_markets(now) -> QuerySet[Market]:
    return Market.objects.filter(status=Market.Status.OPEN, close_at__gt=now)


def _ranked_by_move(qs: QuerySet[Market], *, now) -> list[int]:
    """Return the ids of ``qs`` by the size of their 24-hour move, biggest first (then volume, then newest).

    Reads one row per market (ids and two price lists), not the markets' trades.
    """
    marks = _with_price_marks(qs.order_by(), now=now).values_list("pk", "kind", "volume_micro", "latest_probs", "day_ago_probs")
    scored = []
    for pk, kind, volume, latest, before in marks:
        # For a binary market |change of YES| = |change of NO|, so the YES position does not matter.
        index = _focus_index(binary=kind == Market.Kind.BINARY, probabilities=latest or [0]) if latest else 0
        scored.append((abs(_change(latest, before, index)), volume, pk))
    scored.sort(reverse=True)
    return [pk for _, _, pk in scored]


def _linked_through_live_articles(condition: Q) -> Exists:
    return Exists(MarketArticle.objects.filter(condition, market_id=OuterRef("pk"), article__live=True))


@dataclass
class MarketIndex:
    page: Page
    rows: list[MarketRow]
    unknown_section: bool = False


def market_index(
    *, tab: str = "open", sort: str | None = None, section: str = "", region: str = "", tag: str = "",
    page_number=1, per_page: int = INDEX_PAGE_SIZE, now=None,
) -> MarketIndex:
    """Return one page of the markets index: a status tab, filtered by the linked articles, sorted.

    Tabs: open (trading), closing (trading and closing within 7 days),
    closed (past close, awaiting a result), resolved (resolved or
    cancelled). A market belongs to a section, region or tag through its
    published articles. Sorts: volume, move (absolute 24-hour change of YES
    or the leader), close (soonest first; for the resolved tab, the most
    recently resolved first).
    """
    now = now or timezone.now()
    tab = tab if tab in INDEX_TABS else "open"
    sort = sort if sort in INDEX_SORTS else TAB_DEFAULT_SORT[tab]
    qs = _visible_markets()
    paths: list[str] = []
    if tab == "open":
        qs = _trading_markets(now)
    elif tab == "closing":
        qs = _trading_markets(now).filter(close_at__lte=now + CLOSING_SOON)
    elif tab == "closed":
        qs = qs.filter(status=Market.Status.OPEN, close_at__lte=now)
    else:
        qs = qs.filter(status__in=(Market.Status.RESOLVED, Market.Status.CANCELLED))
    if section:
        paths = list(SectionPage.objects.live().filter(slug=section).values_list("path", flat=True))
        under = Q(pk__in=[])
        for path in paths:
            under |= Q(article__path__startswith=path)
        qs = qs.filter(_linked_through_live_articles(under)) if paths else qs.none()
    if region:
        qs = qs.filter(_linked_through_live_articles(Q(article__region__slug=region)))
    if tag:
        qs = qs.filter(_linked_through_live_articles(Q(article__tags__slug=tag)))
    if sort == "move":
        ordered = _ranked_by_move(qs, now=now)
    elif sort == "volume":
        ordered = qs.order_by("-volume_micro", "-id").values_list("pk", flat=True)
    elif tab == "resolved":
        ordered = qs.order_by("-resolved_at", "-id").values_list("pk", flat=True)
    else:
        ordered = qs.order_by("close_at", "id").values_list("pk", flat=True)
    page = Paginator(ordered, per_page).get_page(page_number)
    return MarketIndex(page=page, rows=market_rows(list(page.object_list), now=now), unknown_section=bool(section) and not paths)


def index_filter_choices() -> dict[str, list]:
    """Return the sections, regions and tags that lead to at least one market, for the index filters."""
    links = MarketArticle.objects.filter(article__live=True, market__status__in=_SHOWN)
    prefixes = set()
    for path in links.values_list("article__path", flat=True).distinct():
        prefixes.update(path[:end] for end in range(SectionPage.steplen, len(path), SectionPage.steplen))
    sections, seen = [], set()
    for section in SectionPage.objects.live().order_by("path").only("id", "title", "slug", "path", "depth"):
        if section.path in prefixes and section.slug not in seen:
            seen.add(section.slug)
            sections.append(section)
    regions = list(Region.objects.filter(pk__in=links.values("article__region_id")).order_by("name"))
    tags = list(Tag.objects.filter(news_articlepagetag_items__content_object__in=links.values("article_id")).distinct().order_by("name"))
    return {"sections": sections, "regions": regions, "tags": tags}


def home_strip_rows(*, limit: int = 4, now=None) -> dict[str, list[MarketRow]]:
    """Return the front page's trading markets: most active (trades this week, then ever) and biggest 24-hour movers."""
    now = now or timezone.now()
    active_ids = list(
        _trading_markets(now).filter(trade_count__gt=0)
        .annotate(recent_trades=Count("trades", filter=Q(trades__created_at__gt=now - ACTIVITY_WINDOW)))
        .order_by("-recent_trades", "-trade_count", "-volume_micro", "-id")
        .values_list("pk", flat=True)[:limit]
    )
    moved = _with_price_marks(_trading_markets(now).order_by(), now=now).values_list("pk", "kind", "volume_micro", "latest_probs", "day_ago_probs")
    scored = []
    for pk, kind, volume, latest, before in moved:
        if latest:
            index = _focus_index(binary=kind == Market.Kind.BINARY, probabilities=latest)
            size = abs(_change(latest, before, index))
            if round(size * 100):  # a move that shows as 0 points is no move
                scored.append((size, volume, pk))
    mover_ids = [pk for _, _, pk in sorted(scored, reverse=True)[:limit]]
    rows = {row.market.pk: row for row in market_rows(list(dict.fromkeys(active_ids + mover_ids)), now=now)}
    return {"active": [rows[pk] for pk in active_ids if pk in rows], "movers": [rows[pk] for pk in mover_ids if pk in rows]}


def article_market_rows(*, article_id: int, now=None) -> list[MarketRow]:
    """Return the markets linked to a published article, trading ones first, each with its move since publication."""
    links = list(
        MarketArticle.objects.filter(article_id=article_id, article__live=True, market__status__in=_SHOWN)
        .order_by("id").values_list("market_id", "probabilities_at_publish")
    )
    at_publish = dict(links)
    rows = market_rows([market_id for market_id, _ in links], now=now)
    for row in rows:
        then = (at_publish.get(row.market.pk) or {}).get(row.outcome.slug)
        row.since_publish = None if then is None else row.probability - then
    rows.sort(key=lambda row: not row.market.is_trading)
    return rows


def section_market_rows(*, section_id: int, limit: int = 5, now=None) -> tuple[SectionPage | None, list[MarketRow], int]:
    """Return a live section, its busiest trading markets (through articles in its subtree) and how many it has."""
    now = now or timezone.now()
    section = SectionPage.objects.live().filter(pk=section_id).only("id", "title", "slug", "path", "url_path", "depth").first()
    if section is None:
        return None, [], 0
    qs = _trading_markets(now).filter(_linked_through_live_articles(Q(article__path__startswith=section.path)))
    ids = list(qs.order_by("-volume_micro", "-id").values_list("pk", flat=True)[: limit + 1])
    total = len(ids) if len(ids) <= limit else qs.count()
    return section, market_rows(ids[:limit], now=now), total


def latest_trade_id() -> int:
    """Return the id of the newest trade (0 before the first): a version number for every price on the site."""
    return Trade.objects.order_by("-id").values_list("id", flat=True).first() or 0


def market_expert_forecasts(*, market: Market) -> list[dict]:
    """Return the forecasts experts stated on ``market`` in live insights, newest first, beside each outcome's price now.

    One query: expert, insight and outcome come joined; the prices come from
    ``market.outcomes`` (prefetched by ``market_for_page``).
    """
    outcomes = list(market.outcomes.all())
    prices = dict(zip((o.pk for o in outcomes), lmsr.prices_after_micro([o.shares_micro for o in outcomes], market.liquidity_b_micro)))
    forecasts = (
        ExpertForecast.objects.filter(market=market, article__live=True)
        .select_related("expert", "article", "outcome")
        .defer("article__body", "article__stated_forecasts")
        .order_by("-stated_at", "-id")
    )
    rows = []
    for forecast in forecasts:
        price = prices.get(forecast.outcome_id)
        rows.append({
            "forecast": forecast,
            "expert": forecast.expert,
            "outcome": forecast.outcome,
            "article": forecast.article,
            "probability": forecast.probability,
            "stated_at": forecast.stated_at,
            "market_probability": price,
            "difference": None if price is None else forecast.probability - price,
        })
    return rows
