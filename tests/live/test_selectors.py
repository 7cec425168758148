"""Trades read back from the database are the very events the markets app announced."""

from __future__ import annotations

import pytest

from bellwether.live import selectors
from bellwether.markets.services import MICRO, TradeRequest, place_trade
from tests.live.conftest import buy, new_market

pytestmark = pytest.mark.django_db(transaction=True)


def test_events_read_back_match_the_announced_ones_with_totals_as_they_stood(ana, announced):
    """Buys, a sell and a many-outcome market read back with the volume and count right after each trade."""
    rain, vote = new_market("Will it rain?"), new_market("Who wins?", outcomes=["Ada", "Bo", "Cy"])
    buy(ana, rain, credits=3)
    buy(ana, vote, outcome="bo", credits=4)
    buy(ana, rain, outcome="no", credits=2)
    place_trade(user=ana, market_slug=rain.slug, request=TradeRequest(outcome="yes", side="sell", shares_micro=MICRO))
    first = announced[0]["trade_id"]
    assert selectors.trade_events_after(after_id=first - 1) == announced
    assert [e["volume"] for e in announced if e["market"] == rain.slug] == ["3.000000", "5.000000", "5.503334"]
    assert selectors.trade_events_after(after_id=first, market_slug=rain.slug) == [announced[2], announced[3]]
    assert selectors.trade_events_after(after_id=first - 1, limit=2) == announced[2:]
    assert selectors.trade_event(trade_id=announced[1]["trade_id"]) == announced[1]
    assert selectors.trade_event(trade_id=announced[-1]["trade_id"] + 1) is None
    assert selectors.latest_trade_id() == announced[-1]["trade_id"]


@pytest.mark.parametrize("trades", [2, 12])
def test_reading_events_takes_one_query_however_many_trades(ana, trades, django_assert_num_queries):
    """One query reads the trades, their markets, outcomes and traders, for 2 trades as for 12."""
    markets = [new_market("Will it rain?"), new_market("Who wins?", outcomes=["Ada", "Bo", "Cy"])]
    for n in range(trades):
        buy(ana, markets[n % 2], outcome="yes" if n % 2 == 0 else "cy")
    with django_assert_num_queries(1):
        events = selectors.trade_events_after(after_id=0)
    assert len(events) == trades
