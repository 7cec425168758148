"""Server-Sent Events streams of trades: one per market and one for the whole site.

Each event is ``id: <trade id>``, ``event: trade`` and ``data: <JSON>``
(bellwether.markets.events describes the JSON). A stream opens with
``retry: 2000`` and sends ``: ping`` after LIVE_HEARTBEAT_S seconds without an
event. A client that reconnects with ``Last-Event-ID`` (or opens with
``?since=<trade id>``) first gets every later trade from the database, then
the live ones, never the same id twice. The replay comes a page of trades at a
time, each page one chunk of frames (bellwether.live.replay).

Under ASGI (bellwether.asgi, the live server) a stream stays open and is fed
by this process's hub. Under WSGI, where an open stream would hold a worker
thread, it polls the database for a few seconds and ends; the browser
reconnects with Last-Event-ID and misses nothing. That fallback keeps a
single development or test server working; production routes /live/ to the
ASGI server (docs/live.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
from array import array

from django.conf import settings
from django.core.handlers.asgi import ASGIRequest
from django.db import close_old_connections
from django.http import HttpResponse, HttpResponseNotAllowed, StreamingHttpResponse

from bellwether.converters import IdConverter

from . import selectors
from .db import run_db
from .hub import CLOSED, get_hub, make_message
from .replay import read_page, replayed_before

RETRY = b"retry: 2000\n\n"
# A trade id as the URLs take ids: ASCII digits, few enough for a 64-bit column.
TRADE_ID_RE = re.compile(IdConverter.regex)
PING = b": ping\n\n"
# How long one stream stays open under WSGI before the client is told to reconnect.
WSGI_STREAM_S = 10.0
SSE_HEADERS = {
    "Cache-Control": "no-cache",
    "X-Accel-Buffering": "no",  # nginx: pass each event on at once
    "Access-Control-Allow-Origin": "*",  # public data, no cookies: any page may read it
}
PREFLIGHT_HEADERS = {
    "Access-Control-Allow-Origin": "*",
    "Access-Control-Allow-Methods": "GET",
    "Access-Control-Allow-Headers": "Last-Event-ID, Cache-Control",
    "Access-Control-Max-Age": "86400",
}


async def market_stream(request, slug: str):
    """Stream the trades of market ``slug``; 404 for a missing or draft market."""
    if request.method not in ("GET", "OPTIONS"):
        return HttpResponseNotAllowed(["GET", "OPTIONS"])
    if not await run_db(selectors.is_streamable, market_slug=slug):
        # Plain text: no page template (and its queries) for a machine client.
        return HttpResponse("No such market.\n", status=404, content_type="text/plain", headers=SSE_HEADERS)
    return _stream(request, market=slug)


async def site_stream(request):
    """Stream the trades of every market."""
    if request.method not in ("GET", "OPTIONS"):
        return HttpResponseNotAllowed(["GET", "OPTIONS"])
    return _stream(request, market=None)


def resume_point(request) -> int | None:
    """Return the trade id the client has seen up to: Last-Event-ID, else ?since=, else None.

    The header wins: a browser reconnecting to a ``?since=`` URL sends it with
    the newer id it last received.
    """
    for value in (request.headers.get("Last-Event-ID"), request.GET.get("since")):
        # ASCII digits only (str.isdigit also accepts "²"), and few enough to fit a 64-bit id.
        if value is not None and TRADE_ID_RE.fullmatch(value.strip()):
            return int(value)
    return None


def _stream(request, *, market: str | None):
    if request.method == "OPTIONS":
        return HttpResponse(status=204, headers=PREFLIGHT_HEADERS)
    after_id = resume_point(request)
    if isinstance(request, ASGIRequest):
        content = live_events(market=market, after_id=after_id)
    else:
        content = polled_events(market=market, after_id=after_id)
    return StreamingHttpResponse(content, content_type="text/event-stream", headers=SSE_HEADERS)


async def live_events(*, market: str | None, after_id: int | None):
    """Yield the SSE frames of one stream: a replay after ``after_id``, then live events.

    Subscribing before the replay is read means a trade committed in between
    arrives live or in the replay (or both, sent once). Closing the generator
    (the client went away) unsubscribes.
    """
    hub = get_hub()
    subscription = await hub.subscribe(market=market)
    try:
        yield RETRY
        # The hub never repeats a live event, so a repeat can only be a
        # replayed trade that also arrived live: remember just the replayed
        # ids (the replay plan's array, at most 500 of 8 bytes each, shared
        # by streams that resumed together), not every id the stream sent.
        replayed = array("q")
        if after_id is not None:
            async with contextlib.aclosing(hub.replayer.pages(market=market, after_id=after_id)) as pages:
                async for replayed, frames in pages:
                    yield frames
        heartbeat_s = settings.LIVE_HEARTBEAT_S
        while True:
            try:
                async with asyncio.timeout(heartbeat_s):
                    message = await subscription.queue.get()
            except TimeoutError:
                yield PING
                continue
            if message is CLOSED:
                return  # too slow to keep up: the client reconnects and resumes
            if replayed_before(replayed, message.trade_id):
                continue
            yield message.frame
    finally:
        hub.unsubscribe(subscription)


def polled_events(*, market: str | None, after_id: int | None, duration_s: float = WSGI_STREAM_S):
    """Yield SSE frames for a short while by polling the database (the WSGI fallback)."""
    yield RETRY
    try:
        if after_id is None:
            after_id = selectors.latest_trade_id()
        else:
            plan = selectors.replay_plan(after_id=after_id, market_slug=market)
            for start in range(0, len(plan), settings.LIVE_REPLAY_PAGE):
                yield read_page(plan=plan, start=start, stop=start + settings.LIVE_REPLAY_PAGE)
            if plan.ids:
                after_id = max(after_id, plan.ids[-1])
            del plan
        found: list[dict] = []
        deadline = time.monotonic() + duration_s
        idle_since = time.monotonic()
        while True:
            for event in found:
                after_id = max(after_id, event["trade_id"])
                idle_since = time.monotonic()
                yield make_message(event).frame
            close_old_connections()  # hand a pooled connection back while sleeping
            if time.monotonic() >= deadline:
                return
            if time.monotonic() - idle_since >= settings.LIVE_HEARTBEAT_S:
                idle_since = time.monotonic()
                yield PING
            time.sleep(settings.LIVE_POLL_S)
            found = selectors.trade_events_after(after_id=after_id, market_slug=market, limit=None)
    finally:
        close_old_connections()
