"""Reads over markets shared by the API, pages and the audit."""

from __future__ import annotations

from django.contrib.auth import get_user_model
from django.db.models import Prefetch, Q, QuerySet
from django.utils import timezone

from bellwether.news.models import ArticlePage, SectionPage

from . import lmsr
from .exceptions import MarketNotFound
from .models import Market, MarketArticle, Outcome, Position


STATUS_FILTERS = ("open", "closed", "resolved", "cancelled")


def _with_outcomes(qs: QuerySet[Market]) -> QuerySet[Market]:
    return qs.prefetch_related(
        Prefetch("outcomes", queryset=Outcome.objects.order_by("position")),
        Prefetch("article_links", queryset=MarketArticle.objects.only("id", "market_id", "article_id")),
    )


def market_detail(*, slug: str) -> Market:
    """Return a market with its outcomes, or raise MarketNotFound."""
    market = _with_outcomes(Market.objects.filter(slug=slug)).first()
    if market is None:
        raise MarketNotFound(f"no market {slug!r}")
    return market


def list_markets(*, status: str | None = None, tag: str | None = None, section: str | None = None, limit: int = 50) -> list[Market]:
    """Return markets, newest first, filtered by status and by their articles' tag or section."""
    qs = Market.objects.exclude(status=Market.Status.DRAFT).order_by("-created_at", "-id")
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


def price_history(*, market: Market) -> list[tuple]:
    """Return (time, {slug: probability}) points: the opening odds, then after every trade."""
    outcomes = list(market.outcomes.all())
    slugs = [o.slug for o in outcomes]
    points = [(market.created_at, dict(zip(slugs, [1 / len(slugs)] * len(slugs))))]
    for at, probs in market.trades.order_by("created_at", "id").values_list("created_at", "probabilities_after"):
        points.append((at, dict(zip(slugs, probs))))
    return points


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


# --- for the markets index and the panels beside the news (views/browse.py) ---

# Imports for this section sit here, so the sections above stay untouched.
import datetime as _dt  # noqa: E402
from dataclasses import dataclass as _dataclass  # noqa: E402

from django.core.paginator import Page as _Page, Paginator as _Paginator  # noqa: E402
from django.db.models import Count, Exists, JSONField, Max, OuterRef, Subquery  # noqa: E402
from django.db.models.functions import TruncHour  # noqa: E402
from taggit.models import Tag  # noqa: E402

from bellwether.news.models import Region  # noqa: E402

from .models import Trade  # noqa: E402

INDEX_TABS = {"open": "Open", "closing": "Closing soon", "closed": "Awaiting result", "resolved": "Recently resolved"}
INDEX_SORTS = {"volume": "Volume", "move": "Biggest move", "close": "Close date"}
TAB_DEFAULT_SORT = {"open": "volume", "closing": "close", "closed": "close", "resolved": "close"}
INDEX_PAGE_SIZE = 20
CLOSING_SOON = _dt.timedelta(days=7)
MOVE_WINDOW = _dt.timedelta(hours=24)
HISTORY_WINDOW = _dt.timedelta(days=7)
HISTORY_STEP = _dt.timedelta(hours=6)
ACTIVITY_WINDOW = _dt.timedelta(days=7)
_SHOWN = (Market.Status.OPEN, Market.Status.RESOLVED, Market.Status.CANCELLED)


@_dataclass
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

    >>> t0 = _dt.datetime(2026, 1, 1)
    >>> hour = _dt.timedelta(hours=1)
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
        .annotate(hour=TruncHour("created_at", tzinfo=_dt.timezone.utc))
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


@_dataclass
class MarketIndex:
    page: _Page
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
    page = _Paginator(ordered, per_page).get_page(page_number)
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
