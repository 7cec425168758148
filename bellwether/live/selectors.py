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

A resumed stream's replay reads those totals once, for the whole replay, in
a compact plan (``replay_plan``: ids and totals as arrays of integers), then
the events themselves a page at a time (``replay_events``), so a replay never
holds more than one page of event dicts (bellwether.live.replay).
"""

from __future__ import annotations

from array import array
from collections import defaultdict
from dataclasses import dataclass

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


def _events(trades: QuerySet[Trade], *, totals: dict[int, tuple[int, int]] | None = None) -> list[dict]:
    """Return the events of ``trades`` in id order, in one query.

    Without ``totals``, ``trades`` must be closed under later trades per
    market (module docstring); with it, each trade's volume and trade count
    come from ``totals[trade id]`` (as ``replay_plan`` derived them) and
    ``trades`` may be any set. Joining the market's outcomes gives one row per
    trade and outcome, in outcome position order, which names the probabilities.
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
        market_id, amount_micro = event["market_id"], event.pop("_amount_micro")
        if totals is None:
            event["volume"] = format_micro(event["volume"] - later_volume[market_id])
            event["trade_count"] -= later_count[market_id]
            later_volume[market_id] += amount_micro
            later_count[market_id] += 1
        else:
            volume_micro, event["trade_count"] = totals[event["trade_id"]]
            event["volume"] = format_micro(volume_micro)
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
    trades = _after(after_id=after_id, market_slug=market_slug, since_at=since_at)
    return _events(_latest(trades, limit))


def _after(*, after_id: int, market_slug: str | None, since_at=None) -> QuerySet[Trade]:
    condition = Q(id__gt=after_id)
    if since_at is not None:
        condition |= Q(created_at__gte=since_at)
    trades = Trade.objects.filter(condition)
    if market_slug is not None:
        trades = trades.filter(market__slug=market_slug)
    return trades


def _latest(trades: QuerySet[Trade], limit: int | None) -> QuerySet[Trade]:
    """Return the latest ``limit`` of ``trades`` (all of them for None), still closed under later trades per market."""
    if limit is None:
        return trades
    return Trade.objects.filter(id__in=trades.order_by("-id").values("id")[:limit])


@dataclass(frozen=True, slots=True)
class ReplayPlan:
    """The trades a replay sends, oldest first, with each one's market volume and trade count right after it.

    Three arrays of 64-bit integers: about 24 bytes a trade, so a plan of
    500 trades is 12 KB where their events would be hundreds.
    """

    ids: array
    volumes_micro: array
    trade_counts: array

    def __len__(self) -> int:
        return len(self.ids)

    def totals(self, start: int, stop: int) -> dict[int, tuple[int, int]]:
        """Return {trade id: (volume_micro, trade_count)} for the trades from position ``start`` to ``stop``."""
        return {
            self.ids[i]: (self.volumes_micro[i], self.trade_counts[i]) for i in range(start, min(stop, len(self.ids)))
        }


def replay_plan(*, after_id: int, market_slug: str | None = None, limit: int = REPLAY_LIMIT) -> ReplayPlan:
    """Return the plan of a replay after ``after_id``: the latest ``limit`` such trades, in one query of integers.

    The same selection as ``trade_events_after`` (without ``since_at``),
    with the totals each event carries, but none of the events themselves.
    """
    rows = (
        _latest(_after(after_id=after_id, market_slug=market_slug), limit)
        .order_by("-id")
        .values_list("id", "market_id", "amount_micro", "market__volume_micro", "market__trade_count")
    )
    ids, volumes, counts = array("q"), array("q"), array("q")
    later_volume: dict[int, int] = defaultdict(int)
    later_count: dict[int, int] = defaultdict(int)
    for trade_id, market_id, amount_micro, volume_micro, trade_count in rows:
        ids.append(trade_id)
        volumes.append(volume_micro - later_volume[market_id])
        counts.append(trade_count - later_count[market_id])
        later_volume[market_id] += amount_micro
        later_count[market_id] += 1
    for column in (ids, volumes, counts):
        column.reverse()
    return ReplayPlan(ids=ids, volumes_micro=volumes, trade_counts=counts)


def replay_events(*, plan: ReplayPlan, start: int, stop: int) -> list[dict]:
    """Return the events of the plan's trades from position ``start`` to ``stop``, oldest first, in one query."""
    totals = plan.totals(start, stop)
    return _events(Trade.objects.filter(id__in=list(totals)), totals=totals)


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
