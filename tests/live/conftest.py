"""Helpers for the live-stream tests: markets, traders, trades from another thread."""

from __future__ import annotations

import datetime as dt
import threading

import pytest
from asgiref.sync import async_to_sync
from django.db import connection, connections
from django.utils import timezone

from bellwether.accounts.services import create_user
from bellwether.markets.services import MICRO, TradeRequest, create_market, place_trade


def new_market(question: str = "Will it rain?", **kwargs):
    return create_market(question=question, liquidity_b_micro=100 * MICRO, close_at=timezone.now() + dt.timedelta(days=3), **kwargs)


def buy(user, market, outcome: str = "yes", credits: int = 5) -> int:
    """Buy ``credits`` worth of ``outcome`` and return the trade id."""
    return place_trade(user=user, market_slug=market.slug, request=TradeRequest(outcome=outcome, side="buy", amount_micro=credits * MICRO))["trade_id"]


def trade_in_thread(user, market, outcome: str = "yes", credits: int = 5) -> threading.Thread:
    """Start a thread that commits one buy, as another request of the server would."""

    def run():
        try:
            buy(user, market, outcome, credits)
        finally:
            connection.close()

    thread = threading.Thread(target=run)
    thread.start()
    return thread


@pytest.fixture
def ana(transactional_db):
    return create_user(username="ana")


def run_async(coroutine_function):
    """Run an async test body in a thread of its own and return its result; stop the hub afterwards.

    A thread of its own, because a session-wide Playwright browser leaves an
    event loop marked as running in the main thread. Its database
    connections are closed at the end, so none outlives the test.
    """
    from bellwether.live.hub import stop_hub

    async def main():
        try:
            return await coroutine_function()
        finally:
            await stop_hub()

    outcome: dict = {}

    def target():
        try:
            outcome["value"] = async_to_sync(main)()
        except BaseException as exc:  # re-raised in the test's thread
            outcome["error"] = exc
        finally:
            connections.close_all()

    thread = threading.Thread(target=target)
    thread.start()
    thread.join()
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]
