"""Tell every live process about a committed trade.

On PostgreSQL the ``trade_committed`` receiver sends the event with
``pg_notify`` on the channel ``bellwether_trades``; every live process holds
one LISTEN connection on it (bellwether.live.hub). The receiver runs after
the trade's commit (the markets app sends the signal from
``transaction.on_commit``), so a listener never hears of a trade it cannot
read yet, and a rolled-back trade is never announced.

On SQLite there is nothing to send: each live process polls the trades table.
"""

from __future__ import annotations

import json

from django.db import connection

CHANNEL = "bellwether_trades"
# PostgreSQL refuses NOTIFY payloads of 8000 bytes or more.
MAX_PAYLOAD_BYTES = 7999


def encode_event(event: dict) -> str:
    """Return ``event`` as one line of compact JSON."""
    return json.dumps(event, separators=(",", ":"), ensure_ascii=False)


def sse_frame(event: dict) -> bytes:
    """Return the Server-Sent Events frame of ``event``: ``id``, ``event: trade`` and the JSON on one ``data`` line."""
    return f"id: {event['trade_id']}\nevent: trade\ndata: {encode_event(event)}\n\n".encode()


def notification_payload(event: dict) -> str:
    """Return what to NOTIFY for ``event``: all of it, or just its ids when too large.

    A listener given only ``trade_id`` and ``market`` reads the rest from the
    database (a market with many outcomes can exceed the payload limit).
    """
    payload = encode_event(event)
    if len(payload.encode()) <= MAX_PAYLOAD_BYTES:
        return payload
    return encode_event({"trade_id": event["trade_id"], "market": event["market"]})


def publish_trade(sender, event: dict, **kwargs) -> None:
    """Send ``event`` to the live processes (PostgreSQL only; see the module docstring)."""
    if connection.vendor != "postgresql":
        return
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_notify(%s, %s)", [CHANNEL, notification_payload(event)])
