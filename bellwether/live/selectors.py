"""Trades read back from the database as the events the markets app announces.

The live streams replay these to a reconnecting client and, on SQLite, the
per-process poller finds new trades with them. Each event has exactly the
shape of ``bellwether.markets.events.trade_event``, including the market's
volume and trade count as they stood right after that trade.

Those two totals are not stored per trade. They are derived from the
market's current totals minus what the market's later trades added, which
is exact when the rows read include every later trade of each market they
touch ("closed under later trades per market"). A trade locks its market
row, so within one market ids, creation times and commits share one order;
every selection below (all trades after an id, the latest N trades, one
trade and everything after it in its market) has that property.
"""

from __future__ import annotations

from collections import defaultdict

from django.contrib.auth import get_user_model
from django.db.models import Max, Q, QuerySet

from bellwether.ledger.services import format_micro
from bellwether.markets.models import Market, Trade

# Most trades a resumed stream replays; older ones are left to a page reload.
REPLAY_LIMIT = 500


def _row_fields() -> tuple[str, ...]:
    return (
        "id", "market_id", "market__slug", "market__volume_micro", "market__trade_count", "outcome__slug",
        "side", "shares_micro", "amount_micro", "probabilities_after", f"user__{get_user_model().USERNAME_FIELD}",
        "created_at", "market__outcomes__slug",
    )


def _events(trades: QuerySet[Trade]) -> list[dict]:
    """Return the events of ``trades`` in id order, in one query.

    ``trades`` must be closed under later trades per market (module docstring).
    Joining the market's outcomes gives one row per trade and outcome, in
    outcome position order, which names the probabilities.
    """
    rows = trades.values_list(*_row_fields()).order_by("id", "market__outcomes__position")
    events: list[dict] = []
    slugs: list[str] = []
    for row in rows:
        (trade_id, market_id, market_slug, volume_micro, trade_count, outcome_slug, side, shares_micro,
         amount_micro, probabilities, username, created_at, listed_slug) = row
        if not events or events[-1]["trade_id"] != trade_id:
            slugs = []
            events.append({
                "trade_id": trade_id,
                "market": market_slug,
                "market_id": market_id,
                "outcome": outcome_slug,
                "side": side,
                "shares": format_micro(shares_micro),
                "amount": format_micro(amount_micro),
                "probabilities": {},
                "volume": volume_micro,  # current totals, made historical below
                "trade_count": trade_count,
                "user": username,
                "at": created_at.isoformat(),
                "_amount_micro": amount_micro,
                "_probabilities": probabilities,
                "_slugs": slugs,
            })
        slugs.append(listed_slug)
    later_volume: dict[int, int] = defaultdict(int)
    later_count: dict[int, int] = defaultdict(int)
    for event in reversed(events):
        market_id = event["market_id"]
        event["volume"] = format_micro(event["volume"] - later_volume[market_id])
        event["trade_count"] -= later_count[market_id]
        later_volume[market_id] += event.pop("_amount_micro")
        later_count[market_id] += 1
        probabilities = event.pop("_probabilities")
        event["probabilities"] = {slug: f"{p:.6f}" for slug, p in zip(event.pop("_slugs"), probabilities)}
    return events


def trade_events_after(
    *, after_id: int, market_slug: str | None = None, since_at=None, limit: int | None = REPLAY_LIMIT
) -> list[dict]:
    """Return the events of trades with an id above ``after_id``, oldest first.

    Only ``market_slug``'s trades when given, else every market's; with
    ``since_at``, also every trade created at or after that time whatever its
    id (on PostgreSQL a lower id can commit after a higher one). When more
    than ``limit`` trades qualify, return the latest ``limit`` of them.
    """
    condition = Q(id__gt=after_id)
    if since_at is not None:
        condition |= Q(created_at__gte=since_at)
    trades = Trade.objects.filter(condition)
    if market_slug is not None:
        trades = trades.filter(market__slug=market_slug)
    if limit is not None:
        latest = trades.order_by("-id").values("id")[:limit]
        trades = Trade.objects.filter(id__in=latest)
    return _events(trades)


def trade_event(*, trade_id: int) -> dict | None:
    """Return the event of one trade, or None if there is no such trade."""
    market_id = Trade.objects.filter(id=trade_id).values("market_id")
    events = _events(Trade.objects.filter(market_id__in=market_id, id__gte=trade_id))
    return events[0] if events and events[0]["trade_id"] == trade_id else None


def latest_trade_id() -> int:
    """Return the highest trade id so far (0 before the first trade)."""
    return Trade.objects.aggregate(latest=Max("id"))["latest"] or 0


def is_streamable(*, market_slug: str) -> bool:
    """Return True if ``market_slug`` names a market readers can see (any status but draft)."""
    return Market.objects.filter(slug=market_slug).exclude(status=Market.Status.DRAFT).exists()
