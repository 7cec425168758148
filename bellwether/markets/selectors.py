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
