"""The SSE views: headers, resume from Last-Event-ID or ?since=, heartbeats, disconnects."""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import json

import pytest
from django.db import connection
from django.test import AsyncClient

from bellwether.live import hub as live_hub
from bellwether.live.handler import LiveStreamsHandler
from bellwether.markets.models import Market
from tests.live.conftest import buy, new_market, run_async, trade_in_thread

pytestmark = pytest.mark.django_db(transaction=True)
TIMEOUT_S = 2.0


run = run_async


def parse(frame: bytes) -> dict:
    """Return the fields of one SSE frame: {"id": "...", "event": "...", "data": "..."} or a comment."""
    fields = {}
    for line in frame.decode().strip("\n").split("\n"):
        name, _, value = line.partition(": ") if not line.startswith(":") else ("comment", "", line[2:])
        fields[name] = value
    return fields


async def next_frame(stream, timeout: float = TIMEOUT_S) -> bytes:
    async with asyncio.timeout(timeout):
        return await anext(stream)


async def open_stream(path: str, **headers):
    response = await AsyncClient().get(path, headers=headers)
    return response, aiter(response.streaming_content)


class Frames:
    """Read a stream frame by frame, whatever chunks they come in (a replay page is one chunk of many frames)."""

    def __init__(self, stream) -> None:
        self.stream = stream
        self.pending: collections.deque[bytes] = collections.deque()

    async def next(self, timeout: float = TIMEOUT_S) -> bytes:
        while not self.pending:
            chunk = await next_frame(self.stream, timeout)
            self.pending.extend(part + b"\n\n" for part in chunk.split(b"\n\n") if part)
        return self.pending.popleft()

    async def aclose(self) -> None:
        await self.stream.aclose()


def test_a_stream_answers_with_event_stream_headers_open_to_any_origin(ana, settings):
    """Both streams are text/event-stream, uncached, unbuffered, readable from any origin, and start with retry."""
    market = new_market()

    async def body():
        answers = []
        for path in ("/live/markets/", f"/live/markets/{market.slug}/"):
            response, stream = await open_stream(path)
            answers.append((response, await next_frame(stream)))
            await stream.aclose()
        preflight = await AsyncClient().options("/live/markets/")
        return answers, preflight

    answers, preflight = run(body)
    for response, first in answers:
        assert response.status_code == 200
        assert response["Content-Type"] == "text/event-stream"
        assert response["Cache-Control"] == "no-cache"
        assert response["X-Accel-Buffering"] == "no"
        assert response["Access-Control-Allow-Origin"] == "*"
        assert first == b"retry: 2000\n\n"
    assert preflight.status_code == 204
    assert preflight["Access-Control-Allow-Headers"] == "Last-Event-ID, Cache-Control"


def test_an_unknown_or_draft_market_has_no_stream(ana):
    """A missing or draft market answers 404 (EventSource then stops retrying); POST is refused."""
    draft = new_market("Secret?", status=Market.Status.DRAFT)

    async def body():
        client = AsyncClient()
        return [
            (await client.get("/live/markets/no-such-market/")).status_code,
            (await client.get(f"/live/markets/{draft.slug}/")).status_code,
            (await client.post("/live/markets/")).status_code,
        ]

    assert run(body) == [404, 404, 405]


def test_last_event_id_replays_later_trades_then_goes_live_without_repeats(ana, announced, settings):
    """Resuming at trade k replays exactly the market's trades after k in order, then live ones, never an id twice."""
    settings.LIVE_POLL_S = 0.05
    market, other = new_market("Will it rain?"), new_market("Will it snow?")
    ids = []
    for n in range(6):
        ids.append(buy(ana, market if n % 3 else other, credits=n + 1))
    mine = [i for n, i in enumerate(ids) if n % 3]
    k = mine[0]

    async def body():
        response, stream = await open_stream(f"/live/markets/{market.slug}/", **{"Last-Event-ID": str(k)})
        stream = Frames(stream)
        frames = [await stream.next()]
        frames += [await stream.next() for _ in mine[1:]]
        # The hub hears of a trade the replay already sent: the stream must not repeat it.
        live_hub.get_hub().publish(next(e for e in announced if e["trade_id"] == mine[1]))
        thread = trade_in_thread(ana, market, "no")
        await asyncio.to_thread(thread.join)
        frames.append(await stream.next())
        await stream.aclose()
        return frames

    frames = run(body)
    assert frames[0] == b"retry: 2000\n\n"
    events = [parse(f) for f in frames[1:]]
    live_id = announced[-1]["trade_id"]
    assert [int(e["id"]) for e in events] == [*mine[1:], live_id]
    assert {e["event"] for e in events} == {"trade"}
    by_id = {e["trade_id"]: e for e in announced}
    assert [json.loads(e["data"]) for e in events] == [by_id[int(e["id"])] for e in events]


def test_since_resumes_the_site_wide_stream_across_markets(ana, announced):
    """?since=k on the site-wide stream replays every market's trades after k; a Last-Event-ID header wins over it."""
    market, other = new_market("Will it rain?"), new_market("Will it snow?")
    ids = [buy(ana, m) for m in (market, other, market, other)]

    async def body():
        results = []
        for headers in ({}, {"Last-Event-ID": str(ids[2])}):
            response, stream = await open_stream(f"/live/markets/?since={ids[0]}", **headers)
            stream = Frames(stream)
            await stream.next()
            count = 3 if not headers else 1
            results.append([json.loads(parse(await stream.next())["data"]) for _ in range(count)])
            await stream.aclose()
        return results

    from_since, from_header = run(body)
    assert from_since == announced[1:]
    assert from_header == announced[3:]


def test_an_idle_stream_sends_heartbeats(ana, settings):
    """With no trades, a stream sends a ': ping' comment every LIVE_HEARTBEAT_S seconds."""
    settings.LIVE_HEARTBEAT_S = 0.2
    market = new_market()

    async def body():
        response, stream = await open_stream(f"/live/markets/{market.slug}/")
        frames = [await next_frame(stream) for _ in range(3)]
        await stream.aclose()
        return frames

    assert run(body) == [b"retry: 2000\n\n", b": ping\n\n", b": ping\n\n"]


def test_a_client_that_disconnects_is_unsubscribed(ana):
    """When the client goes away, the ASGI handler ends the stream and the hub forgets its subscriber."""
    market = new_market()
    handler = LiveStreamsHandler()

    async def body():
        gone = asyncio.Event()
        sent: list[dict] = []
        first_body = asyncio.Event()

        requests = [{"type": "http.request", "body": b"", "more_body": False}]

        async def receive():
            if requests:
                return requests.pop()
            await gone.wait()
            return {"type": "http.disconnect"}

        async def send(message):
            sent.append(message)
            if message["type"] == "http.response.body" and message.get("body"):
                first_body.set()

        scope = {
            "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "GET", "scheme": "http",
            "path": f"/live/markets/{market.slug}/", "raw_path": b"", "query_string": b"", "root_path": "",
            "headers": [(b"host", b"127.0.0.1")], "client": ("127.0.0.1", 5000), "server": ("127.0.0.1", 8001),
        }
        serving = asyncio.create_task(handler(scope, receive, send))
        async with asyncio.timeout(TIMEOUT_S):
            await first_body.wait()
        hub = live_hub.get_hub()
        while_open = hub.subscriber_count
        gone.set()
        async with asyncio.timeout(TIMEOUT_S):
            await serving
        return while_open, hub.subscriber_count, sent[0]["status"], sent[1]["body"]

    assert run(body) == (1, 0, 200, b"retry: 2000\n\n")


def test_under_wsgi_a_stream_polls_for_a_while_and_ends(ana, announced, client, settings):
    """Under WSGI the view streams synchronously: replay, trades found by polling, then the end (the browser reconnects)."""

    def body():
        from bellwether.live.views import polled_events

        settings.LIVE_POLL_S = 0.05
        market = new_market()
        first, second = buy(ana, market), buy(ana, market)
        response = client.get(f"/live/markets/{market.slug}/?since={first}")
        assert response.status_code == 200 and response.streaming and not response.is_async
        response.close()
        frames, thread = [], None
        for frame in polled_events(market=market.slug, after_id=first, duration_s=1.0):
            frames.append(frame)
            if len(frames) == 2:
                thread = trade_in_thread(ana, market, "no")  # found by the next poll
        thread.join()
        assert [parse(f).get("id") for f in frames] == [None, str(second), str(announced[2]["trade_id"])]
        assert frames[1] == f"id: {second}\nevent: trade\ndata: ".encode() + json.dumps(announced[1], separators=(",", ":")).encode() + b"\n\n"

    # In a thread of its own: a session-wide Playwright browser leaves an
    # event loop marked as running in the main thread, which Django's
    # test client then refuses to run its sync-to-async bridge under.
    def closing():
        try:
            body()
        finally:
            connection.close()

    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        pool.submit(closing).result()

@pytest.mark.parametrize(
    ("since", "header", "expected"),
    [("12", None, 12), (" 12 ", None, 12), ("12", "30", 30), ("²", None, None), ("١٢", None, None), ("9" * 30, None, None),
     ("-3", None, None), ("", None, None), ("abc", "²", None)],
)
def test_a_resume_point_is_ascii_digits_that_fit_a_trade_id(since, header, expected):
    """Take ?since= and Last-Event-ID only as 1 to 18 ASCII digits; anything else ("²", other scripts, 30 digits) resumes nothing."""
    from django.test import RequestFactory

    from bellwether.live.views import resume_point

    headers = {"HTTP_LAST_EVENT_ID": header} if header is not None else {}
    assert resume_point(RequestFactory().get("/live/markets/", {"since": since}, **headers)) == expected
