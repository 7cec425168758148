"""Replays of resumed streams, with a bound on the live process's memory.

A stream resumed with Last-Event-ID or ``?since=`` first replays up to 500
trades from the database. Read whole, as event dicts, that is about a
megabyte of Python objects per stream: 2,000 streams resuming at once took a
live worker from 133 MiB to 716 MiB, and it still held 702 MiB after they had
closed (``benchmarks/live.py --resumed 2000``). Here a replay instead:

- reads its plan first: the trade ids and the volume and trade count each
  event carries, as arrays of integers (about 24 bytes a trade);
- then reads the events a page of ``LIVE_REPLAY_PAGE`` trades at a time and
  turns each page into one chunk of SSE frames before the next is read;
- takes a turn for every read: at most ``LIVE_REPLAY_READERS`` plans or pages
  are read at once in the process, the other replays wait, first come first
  served;
- shares what it reads with the streams replaying the same trades, for as
  long as any of them holds it: a page is read and held once however many
  streams send it, and streams resuming at the same point share one plan.
  A cached page gives every reader who loaded it the same ``?since=``, and
  after a live worker restarts its browsers reconnect with the same
  Last-Event-ID, so such waves of identical replays are the common case.

So the process builds at most READERS x PAGE event dicts at a time; each
replaying stream holds a plan and the one page being sent to it (shared with
its twins), and afterwards only the plan's ids (8 bytes each, shared with
its twins), to skip their live copies.
"""

from __future__ import annotations

import asyncio
import contextlib
from array import array
from bisect import bisect_left
from collections.abc import AsyncIterator, Hashable

from . import selectors
from .db import run_db
from .publisher import sse_frame


def read_page(*, plan: selectors.ReplayPlan, start: int, stop: int) -> bytes:
    """Read the plan's trades from position ``start`` to ``stop`` and return their SSE frames as one chunk."""
    return b"".join(sse_frame(event) for event in selectors.replay_events(plan=plan, start=start, stop=stop))


def replayed_before(ids: array, trade_id: int) -> bool:
    """Return True if ``trade_id`` is in ``ids``, the ascending array of the trade ids a stream replayed."""
    position = bisect_left(ids, trade_id)
    return position < len(ids) and ids[position] == trade_id


class _Shared:
    """A read that several streams may wait for and hold; forgotten when the last one lets go."""

    __slots__ = ("task", "users", "started")

    def __init__(self) -> None:
        self.task: asyncio.Future | None = None
        self.users = 0
        self.started = False  # its turn came: the query runs or has run


class Replayer:
    """Read the replays of one process's resumed streams (module docstring).

    ``waiting`` counts the reads queued for a turn and ``reading`` the reads
    running now (never more than ``readers``).
    """

    def __init__(self, *, readers: int, page_size: int) -> None:
        self.page_size = max(1, page_size)
        self._turns = asyncio.Semaphore(max(1, readers))
        self._shared: dict[Hashable, _Shared] = {}
        self.waiting = 0
        self.reading = 0

    @property
    def held(self) -> int:
        """Return how many plans and pages streams hold now."""
        return len(self._shared)

    @property
    def holds(self) -> int:
        """Return how many holds streams have on plans and pages (a page two streams share counts twice)."""
        return sum(shared.users for shared in self._shared.values())

    async def pages(self, *, market: str | None, after_id: int) -> AsyncIterator[tuple[array, bytes]]:
        """Yield the replay of ``market``'s trades (every market's when None) after ``after_id``, page by page.

        Each item is ``(ids, frames)``: ``ids`` every trade id of the whole
        replay, ascending (the same array each time, shared with the streams
        that share the plan), ``frames`` one page's SSE frames as one chunk.
        Call after subscribing to the hub: the plan is read after the call,
        so a trade committed since the subscription is in the plan or live.
        Close the iterator (``contextlib.aclosing``) when leaving it early,
        so the page it holds is let go at once.
        """
        # A plan read whose query has begun may predate this stream's
        # subscription and miss a trade: only a plan still waiting for its
        # turn is joined. Pages hold committed trades, so any page is.
        async with self._read(
            ("plan", market, after_id), selectors.replay_plan, join_started=False, after_id=after_id, market_slug=market
        ) as plan:
            for start in range(0, len(plan), self.page_size):
                stop = start + self.page_size
                key = ("page", *plan.ids[start:stop])
                async with self._read(key, read_page, join_started=True, plan=plan, start=start, stop=stop) as frames:
                    yield plan.ids, frames

    @contextlib.asynccontextmanager
    async def _read(self, key: Hashable, function, /, *, join_started: bool, **kwargs):
        """Yield what ``function`` returns, read once for every stream that asks for ``key`` while it is held."""
        shared = self._shared.get(key)
        if shared is None or (shared.started and not join_started):
            shared = _Shared()
            shared.task = asyncio.ensure_future(self._in_turn(shared, function, **kwargs))
            shared.task.add_done_callback(_retrieve)
            # Replacing a started plan read leaves it to the streams that hold it.
            self._shared[key] = shared
        shared.users += 1
        try:
            # Shielded: one stream going away must not cancel a read others wait for.
            yield await asyncio.shield(shared.task)
        finally:
            shared.users -= 1
            if not shared.users and self._shared.get(key) is shared:
                del self._shared[key]

    async def _in_turn(self, shared: _Shared, function, /, **kwargs):
        """Run ``function`` in a worker thread once fewer than ``readers`` reads are running."""
        self.waiting += 1
        try:
            await self._turns.acquire()
        finally:
            self.waiting -= 1
        shared.started = True
        self.reading += 1
        try:
            return await run_db(function, **kwargs)
        finally:
            self.reading -= 1
            self._turns.release()


def _retrieve(task: asyncio.Future) -> None:
    # A read every stream has left may still fail: take its exception so asyncio does not report it as lost.
    if not task.cancelled():
        task.exception()
