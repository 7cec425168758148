"""The per-process hub: one fan-in from the database, fan-out to every subscriber."""

from __future__ import annotations

import asyncio
import json

import pytest
from django.db import connection

from bellwether.live import hub as live_hub
from bellwether.live.publisher import MAX_PAYLOAD_BYTES, notification_payload
from tests.live.conftest import buy, new_market, run_async, trade_in_thread

TIMEOUT_S = 2.0


run = run_async


@pytest.mark.django_db(transaction=True)
def test_a_trade_reaches_its_market_and_the_site_wide_subscribers(ana, announced, settings):
    """A trade committed in another thread reaches a market subscriber and a site-wide one within 2 s, exactly as announced.

    The site-wide subscriber also gets another market's trade; the market subscriber does not.
    """
    settings.LIVE_POLL_S = 0.05
    market, other = new_market("Will it rain?"), new_market("Will it snow?")

    async def body():
        hub = live_hub.get_hub()
        one = await hub.subscribe(market=market.slug)
        everything = await hub.subscribe()
        assert hub.subscriber_count == 2
        for target in (other, market):
            thread = trade_in_thread(ana, target, "no" if target is other else "yes")
            await asyncio.to_thread(thread.join)
        async with asyncio.timeout(TIMEOUT_S):
            mine = await one.queue.get()
            first, second = await everything.queue.get(), await everything.queue.get()
        assert one.queue.empty()
        return mine, first, second

    mine, first, second = run(body)
    other_event, market_event = announced
    assert (other_event["market"], market_event["market"]) == (other.slug, market.slug)
    assert mine.event == market_event
    assert (first.event, second.event) == (other_event, market_event)
    assert market_event["probabilities"] == {"yes": "0.524385", "no": "0.475615"}
    assert mine.frame == (
        f"id: {market_event['trade_id']}\nevent: trade\ndata: {json.dumps(market_event, separators=(',', ':'))}\n\n"
    ).encode()


@pytest.mark.django_db(transaction=True)
def test_a_slow_subscriber_is_dropped_and_the_others_keep_their_events(ana):
    """A subscriber whose queue is full is unsubscribed and told to close; the others still get every event."""
    market = new_market()
    buy(ana, market)

    async def body():
        hub = live_hub.Hub(queue_size=2)
        slow = await hub.subscribe(market=market.slug)
        fast = await hub.subscribe()
        events = [{"trade_id": n, "market": market.slug} for n in (101, 102, 103)]
        received = []
        for event in events:
            hub.publish(event)
            received.append((await fast.queue.get()).trade_id)
        hub.publish(events[0])  # a repeat of an id is published once only
        closed = [slow.queue.get_nowait() for _ in range(slow.queue.qsize())]
        count, left = hub.subscriber_count, fast.queue.qsize()
        await hub.stop()
        return received, closed, slow.dropped, count, left

    received, closed, dropped, count, left = run(body)
    assert received == [101, 102, 103]
    assert closed == [live_hub.CLOSED] and dropped is True
    assert count == 1 and left == 0


def test_a_notification_too_large_for_postgresql_carries_only_the_ids():
    """Past PostgreSQL's 8000-byte limit the payload names the trade and market only; listeners read the rest."""
    small = {"trade_id": 7, "market": "m", "probabilities": {"yes": "0.5", "no": "0.5"}}
    assert json.loads(notification_payload(small)) == small
    large = {"trade_id": 7, "market": "m", "probabilities": {f"outcome-{i:04d}": "0.001000" for i in range(400)}}
    payload = notification_payload(large)
    assert json.loads(payload) == {"trade_id": 7, "market": "m"}
    assert len(json.dumps(large).encode()) > MAX_PAYLOAD_BYTES


@pytest.mark.django_db(transaction=True)
def test_an_ids_only_notification_is_completed_from_the_database(ana, announced):
    """The hub turns {"trade_id", "market"} into the full event, read from the database."""
    market = new_market()
    buy(ana, market)
    trade_id = announced[0]["trade_id"]

    async def body():
        return await live_hub.Hub._event_from(json.dumps({"trade_id": trade_id, "market": market.slug}))

    assert run(body) == announced[0]


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_a_dropped_listen_connection_reconnects_and_catches_up(ana, announced):
    """When PostgreSQL ends the LISTEN connection, a trade committed meanwhile still reaches the subscriber."""
    assert connection.vendor == "postgresql"  # the marker keeps this out of the SQLite pass
    market = new_market()

    async def body():
        hub = live_hub.get_hub()
        subscription = await hub.subscribe(market=market.slug)
        old_pid = hub.listen_pid

        def kill_listener_and_trade():
            try:
                with connection.cursor() as cursor:
                    cursor.execute("SELECT pg_terminate_backend(%s)", [old_pid])
                buy(ana, market)
            finally:
                connection.close()

        await asyncio.to_thread(kill_listener_and_trade)
        async with asyncio.timeout(5):
            message = await subscription.queue.get()
        return message, old_pid, hub.listen_pid

    message, old_pid, new_pid = run(body)
    assert message.event == announced[0]
    assert new_pid != old_pid
