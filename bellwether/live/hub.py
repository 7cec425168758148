"""One hub per live process: trade events in from the database, out to every open stream.

Fan-in (started by the first subscriber, one per process):

- PostgreSQL: one connection LISTENs on ``bellwether_trades`` (see
  bellwether.live.publisher). If it drops, the hub reconnects with backoff
  and reads from the database what it may have missed, so no trade is lost.
- SQLite: one task reads the trades with an id above the last one seen every
  ``LIVE_POLL_S`` seconds. SQLite serialises writers, so ids commit in order
  and "above the last id seen" misses nothing.

Fan-out: each subscriber, for one market or for all, owns a bounded queue.
A subscriber too slow to keep its queue from filling is dropped: its stream
ends and the browser reconnects with Last-Event-ID, losing nothing.

Replays: the hub's ``replayer`` (bellwether.live.replay) reads what resumed
streams missed, with a bound on the process's memory.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import logging
from collections import deque
from dataclasses import dataclass

from django.conf import settings
from django.db import DatabaseError, connection
from django.utils import timezone

from . import selectors
from .db import run_db
from .publisher import CHANNEL, sse_frame
from .replay import Replayer

log = logging.getLogger(__name__)

QUEUE_SIZE = 256  # events a subscriber may fall behind before it is dropped
READY_TIMEOUT_S = 5.0  # longest a new subscriber waits for the fan-in to start
KEEPALIVE_S = 20.0  # how often an idle LISTEN connection is checked
RECONNECT_MAX_S = 10.0
# Trades created this long before the LISTEN connection was last known alive
# are read again after a reconnect: a PostgreSQL id is taken before commit, so
# a trade can commit (and be missed) after one with a higher id was heard.
CATCH_UP_SLACK = dt.timedelta(seconds=5)
CLOSED = object()  # put in a dropped subscriber's queue: its stream ends


@dataclass(frozen=True, slots=True)
class Message:
    """A trade event and its Server-Sent Events frame, encoded once for every stream."""

    trade_id: int
    market: str
    event: dict
    frame: bytes


def make_message(event: dict) -> Message:
    """Return the message for ``event``, its frame encoded once."""
    return Message(trade_id=event["trade_id"], market=event["market"], event=event, frame=sse_frame(event))


class RecentIds:
    """The last ``size`` ids added, to drop repeats."""

    def __init__(self, size: int) -> None:
        self._order: deque[int] = deque()
        self._ids: set[int] = set()
        self._size = size

    def add(self, trade_id: int) -> bool:
        """Remember ``trade_id``; return False if it was already there."""
        if trade_id in self._ids:
            return False
        self._ids.add(trade_id)
        self._order.append(trade_id)
        if len(self._order) > self._size:
            self._ids.discard(self._order.popleft())
        return True


class Subscription:
    """One open stream's place in the hub: the market it follows (None: all) and its queue."""

    __slots__ = ("market", "queue", "dropped")

    def __init__(self, market: str | None, size: int) -> None:
        self.market = market
        self.queue: asyncio.Queue = asyncio.Queue(maxsize=size)
        self.dropped = False


class Hub:
    """Fan trade events in from the database and out to this process's subscribers."""

    def __init__(self, *, queue_size: int = QUEUE_SIZE) -> None:
        self.loop = asyncio.get_running_loop()
        self.queue_size = queue_size
        self.replayer = Replayer(readers=settings.LIVE_REPLAY_READERS, page_size=settings.LIVE_REPLAY_PAGE)
        self._by_market: dict[str, set[Subscription]] = {}
        self._everywhere: set[Subscription] = set()
        self._published = RecentIds(10_000)
        self._ready = asyncio.Event()
        self._task: asyncio.Task | None = None
        self.listen_pid: int | None = None  # the LISTEN connection's PostgreSQL backend

    @property
    def subscriber_count(self) -> int:
        """Return how many subscribers are registered."""
        return len(self._everywhere) + sum(len(subs) for subs in self._by_market.values())

    async def subscribe(self, *, market: str | None = None) -> Subscription:
        """Register a subscriber for ``market``'s events (every market's when None).

        Returns once the fan-in is running, so a trade committed after this
        returns reaches the subscriber (a replay read after it cannot leave a gap).
        """
        subscription = Subscription(market, self.queue_size)
        if market is None:
            self._everywhere.add(subscription)
        else:
            self._by_market.setdefault(market, set()).add(subscription)
        self._start()
        if not self._ready.is_set():
            try:
                async with asyncio.timeout(READY_TIMEOUT_S):
                    await self._ready.wait()
            except TimeoutError:
                log.warning("live: the trade feed is not running yet; the stream starts without it")
        return subscription

    def unsubscribe(self, subscription: Subscription) -> None:
        """Remove ``subscription``; removing it twice is harmless."""
        if subscription.market is None:
            self._everywhere.discard(subscription)
            return
        subs = self._by_market.get(subscription.market)
        if subs is not None:
            subs.discard(subscription)
            if not subs:
                del self._by_market[subscription.market]

    def publish(self, event: dict) -> None:
        """Queue ``event`` for its market's subscribers and the site-wide ones, once per trade id."""
        if not self._published.add(event["trade_id"]):
            return
        message = make_message(event)
        for subscription in [*self._by_market.get(message.market, ()), *self._everywhere]:
            try:
                subscription.queue.put_nowait(message)
            except asyncio.QueueFull:
                log.info("live: dropping a subscriber %s events behind", subscription.queue.qsize())
                self._drop(subscription)

    def _drop(self, subscription: Subscription) -> None:
        self.unsubscribe(subscription)
        subscription.dropped = True
        while not subscription.queue.empty():
            subscription.queue.get_nowait()
        subscription.queue.put_nowait(CLOSED)

    async def stop(self) -> None:
        """Stop the fan-in and end every stream."""
        for subscription in [*self._everywhere, *(s for subs in self._by_market.values() for s in subs)]:
            self._drop(subscription)
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None
        self._ready.clear()

    def _start(self) -> None:
        if self._task is None or self._task.done():
            feed = self._listen if connection.vendor == "postgresql" else self._poll
            self._task = self.loop.create_task(feed(), name="bellwether-live-feed")

    async def _poll(self) -> None:
        """Publish trades with an id above the last one seen, every LIVE_POLL_S seconds."""
        last_id: int | None = None
        while True:
            try:
                if last_id is None:
                    last_id = await run_db(selectors.latest_trade_id)
                    self._ready.set()
                else:
                    for event in await run_db(selectors.trade_events_after, after_id=last_id, limit=None):
                        last_id = max(last_id, event["trade_id"])
                        self.publish(event)
            except DatabaseError as exc:
                log.warning("live: reading new trades failed: %s", exc)
            await asyncio.sleep(settings.LIVE_POLL_S)

    async def _listen(self) -> None:
        """Publish what arrives on the LISTEN connection; reconnect and catch up when it drops."""
        import psycopg

        last_id: int | None = None
        alive_at = timezone.now()
        backoff = 0.25
        while True:
            try:
                async with await psycopg.AsyncConnection.connect(**listen_params(), autocommit=True) as conn:
                    await conn.execute(f"LISTEN {CHANNEL}")
                    self.listen_pid = conn.info.backend_pid
                    if last_id is None:
                        last_id = await run_db(selectors.latest_trade_id)
                    else:
                        missed = await run_db(
                            selectors.trade_events_after, after_id=last_id, since_at=alive_at - CATCH_UP_SLACK, limit=None
                        )
                        for event in missed:
                            last_id = max(last_id, event["trade_id"])
                            self.publish(event)
                    self._ready.set()
                    alive_at, backoff = timezone.now(), 0.25
                    while True:
                        async for notice in conn.notifies(timeout=KEEPALIVE_S):
                            event = await self._event_from(notice.payload)
                            if event is not None:
                                last_id = max(last_id, event["trade_id"])
                                self.publish(event)
                            alive_at = timezone.now()
                        await conn.execute("SELECT 1")
                        alive_at = timezone.now()
            except asyncio.CancelledError:
                raise
            except (psycopg.Error, DatabaseError, OSError) as exc:
                log.warning("live: the LISTEN connection failed (%s); retrying in %.2fs", exc, backoff)
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, RECONNECT_MAX_S)

    @staticmethod
    async def _event_from(payload: str) -> dict | None:
        event = json.loads(payload)
        if "probabilities" in event:
            return event
        # The publisher sent only the ids: the whole event was too large.
        return await run_db(selectors.trade_event, trade_id=event["trade_id"])


def listen_params() -> dict:
    """Return psycopg connection arguments for the database Django uses."""
    params = connection.get_connection_params()
    for key in ("cursor_factory", "context", "prepare_threshold"):
        params.pop(key, None)
    return params


_hub: Hub | None = None


def get_hub() -> Hub:
    """Return this process's hub, made on first use (a new event loop gets a new hub)."""
    global _hub
    if _hub is None or _hub.loop is not asyncio.get_running_loop():
        _hub = Hub()
    return _hub


async def stop_hub() -> None:
    """Stop this process's hub if it runs in the current loop."""
    global _hub
    if _hub is not None and _hub.loop is asyncio.get_running_loop():
        await _hub.stop()
    _hub = None
