"""Replays of resumed streams: a page at a time, a few reads at once per process, shared between twins."""

from __future__ import annotations

import asyncio
import json
import threading

import pytest

from bellwether.live import hub as live_hub
from bellwether.live import selectors
from bellwether.live.views import live_events
from tests.live.conftest import buy, new_market, run_async, trade_in_thread
from tests.live.test_streams import Frames, next_frame, parse

pytestmark = pytest.mark.django_db(transaction=True)
TIMEOUT_S = 5.0


class Gauge:
    """Count the wrapped reads running at once, across selectors and threads."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.running = 0
        self.most = 0


class Calls:
    """Wrap a selector: count its calls and note what each returned; optionally hold the first call."""

    def __init__(self, monkeypatch, name: str, *, gauge: Gauge | None = None, hold_first: bool = False) -> None:
        self.function = getattr(selectors, name)
        self.gauge = gauge or Gauge()
        self.started = 0
        self.sizes: list[int] = []
        # The first call waits for this, keeping its turn, until the test lets it go.
        self.release = threading.Event()
        if not hold_first:
            self.release.set()
        monkeypatch.setattr(selectors, name, self)

    def __call__(self, *args, **kwargs):
        with self.gauge.lock:
            self.started += 1
            first = self.started == 1
            self.gauge.running += 1
            self.gauge.most = max(self.gauge.most, self.gauge.running)
        try:
            if first:
                assert self.release.wait(TIMEOUT_S), "the test never let the first read go"
            result = self.function(*args, **kwargs)
            self.sizes.append(len(result))
            return result
        finally:
            with self.gauge.lock:
                self.gauge.running -= 1


def open_stream(market, since: int):
    """Return the view's event generator for ``market``'s stream resumed after ``since``.

    Driven directly rather than through the test client, whose wrappers,
    when closed, leave this generator (and the pages it holds) to the
    garbage collector: closing it runs its cleanup at once, as the server
    does when a client goes.
    """
    return live_events(market=market.slug, after_id=since)


async def until(condition) -> None:
    """Wait a bounded while until ``condition()`` holds."""
    async with asyncio.timeout(TIMEOUT_S):
        while not condition():
            await asyncio.sleep(0.01)


def trades(user, market, count: int) -> list[int]:
    return [buy(user, market, "yes" if n % 2 else "no", credits=1 + n % 3) for n in range(count)]


def ids_in(chunk: bytes) -> list[int]:
    return [int(parse(frame)["id"]) for frame in chunk.split(b"\n\n") if frame]


def test_a_replay_builds_events_a_page_at_a_time(ana, announced, settings, monkeypatch):
    """Resumed before 10 trades with LIVE_REPLAY_PAGE=4, the replay builds 4, 4, then 2 events, each page one chunk.

    The stream still gets every trade once, in order, exactly as announced,
    then the live ones; afterwards the process holds no page.
    """
    settings.LIVE_REPLAY_PAGE = 4
    settings.LIVE_POLL_S = 0.05
    market = new_market()
    before = buy(ana, market)
    ids = trades(ana, market, 10)
    built = Calls(monkeypatch, "_events")

    async def body():
        stream = open_stream(market, before)
        assert await next_frame(stream) == b"retry: 2000\n\n"
        chunks = [await next_frame(stream) for _ in range(3)]
        thread = trade_in_thread(ana, market)
        await asyncio.to_thread(thread.join)
        frame = await Frames(stream).next()
        await stream.aclose()
        return chunks, frame, live_hub.get_hub().replayer.held

    chunks, frame, held = run_async(body)
    # Empty reads and the live trade are the SQLite poller's.
    assert [n for n in built.sizes if n][:3] == [4, 4, 2]
    assert [len(ids_in(chunk)) for chunk in chunks] == [4, 4, 2]
    frames = [part for chunk in chunks for part in chunk.split(b"\n\n") if part]
    by_id = {event["trade_id"]: event for event in announced}
    assert [int(parse(f)["id"]) for f in frames] == ids
    assert [json.loads(parse(f)["data"]) for f in frames] == [by_id[i] for i in ids]
    assert int(parse(frame)["id"]) == announced[-1]["trade_id"] > ids[-1]
    assert held == 0


def test_replays_beyond_the_readers_cap_wait_for_their_turn(ana, settings, monkeypatch):
    """With LIVE_REPLAY_READERS=1, while one replay's read runs, two other streams' reads wait; then all complete.

    The third stream resumes where the first does, but does not join its
    read, which had begun (its snapshot may predate the third stream's
    subscription): it queues a read of its own.
    """
    settings.LIVE_REPLAY_READERS = 1
    market = new_market()
    ids = trades(ana, market, 6)
    gauge = Gauge()
    plans = Calls(monkeypatch, "replay_plan", gauge=gauge, hold_first=True)
    pages = Calls(monkeypatch, "replay_events", gauge=gauge)
    points = [ids[0], ids[2], ids[0]]

    async def body():
        streams = []
        for since in points:
            stream = open_stream(market, since)
            assert await next_frame(stream) == b"retry: 2000\n\n"
            streams.append(stream)
        replayer = live_hub.get_hub().replayer
        firsts = [asyncio.ensure_future(anext(streams[0]))]
        await until(lambda: plans.started == 1)
        firsts += [asyncio.ensure_future(anext(stream)) for stream in streams[1:]]
        await until(lambda: replayer.waiting == 2)
        queued = (plans.started, replayer.reading, replayer.waiting)
        plans.release.set()
        async with asyncio.timeout(TIMEOUT_S):
            chunks = await asyncio.gather(*firsts)
        for stream in streams:
            await stream.aclose()
        return queued, chunks, replayer.held

    queued, chunks, held = run_async(body)
    assert queued == (1, 1, 2)
    assert gauge.most == 1
    assert plans.started == 3
    # The third stream's page has the first's trades, which the first still holds: shared, read once.
    assert pages.started == 2
    assert [ids_in(chunk) for chunk in chunks] == [ids[1:], ids[3:], ids[1:]]
    assert held == 0


def test_streams_resuming_together_share_one_plan_and_each_page(ana, settings, monkeypatch):
    """Two streams resuming at one point while the reader is busy read one plan and each page once.

    Read in step, each page reaches both streams as the same chunk; once
    they have closed, the process holds no plan or page.
    """
    settings.LIVE_REPLAY_READERS = 1
    settings.LIVE_REPLAY_PAGE = 4
    market, other = new_market("Will it rain?"), new_market("Will it snow?")
    ids = trades(ana, market, 10)
    buy(ana, other)
    gauge = Gauge()
    plans = Calls(monkeypatch, "replay_plan", gauge=gauge, hold_first=True)
    pages = Calls(monkeypatch, "replay_events", gauge=gauge)
    before = ids[0] - 1

    async def body():
        # A stream of another market takes the only turn and keeps it.
        busy = open_stream(other, before)
        await next_frame(busy)
        busy_first = asyncio.ensure_future(anext(busy))
        await until(lambda: plans.started == 1)
        twins = []
        for _ in range(2):
            stream = open_stream(market, before)
            await next_frame(stream)
            twins.append(stream)
        replayer = live_hub.get_hub().replayer
        firsts = [asyncio.ensure_future(anext(stream)) for stream in twins]
        await until(lambda: replayer.holds == 3)  # the busy stream's plan, and the twins' plan twice
        queued = replayer.waiting
        plans.release.set()
        async with asyncio.timeout(TIMEOUT_S):
            await busy_first
            await busy.aclose()
            received = [list(await asyncio.gather(*firsts))]
            for _ in range(2):
                received.append([await anext(stream) for stream in twins])
        held_open = replayer.held
        for stream in twins:
            await stream.aclose()
        return queued, received, held_open, replayer.held

    queued, received, held_open, held = run_async(body)
    assert queued == 1  # one read queued for both twins
    assert plans.started == 2  # the other market's plan and the twins' one
    assert sorted(pages.sizes) == [1, 2, 4, 4]  # the other market's page, then each of the twins' pages once
    assert gauge.most == 1
    assert all(a == b for a, b in received)
    assert [i for chunk, _ in received for i in ids_in(chunk)] == ids
    assert held_open == 2  # the twins' plan and their last page, while they are still replaying
    assert held == 0
