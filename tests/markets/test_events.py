"""The trade announcement: sent once per committed trade, never for a refused or rolled-back one."""

from __future__ import annotations

import datetime as dt

import pytest
from django.utils import timezone

from bellwether.accounts.services import create_user
from bellwether.markets import services
from bellwether.markets.events import trade_committed
from bellwether.markets.exceptions import SlippageExceeded

pytestmark = pytest.mark.django_db(transaction=True)
M = services.MICRO


def test_a_committed_trade_is_announced_once_with_its_prices(announced):
    """After the commit, listeners get the trade, the new prices and the market's totals."""
    ana = create_user(username="ana")
    market = services.create_market(question="Will it rain?", liquidity_b_micro=100 * M, close_at=timezone.now() + dt.timedelta(days=1))
    body = services.place_trade(user=ana, market_slug=market.slug, request=services.TradeRequest(outcome="yes", side="buy", shares_micro=10 * M))
    assert len(announced) == 1
    event = announced[0]
    assert event["trade_id"] == body["trade_id"]
    assert (event["market"], event["outcome"], event["side"], event["user"]) == (market.slug, "yes", "buy", "ana")
    assert (event["shares"], event["amount"], event["volume"], event["trade_count"]) == ("10.000000", "5.124948", "5.124948", 1)
    assert event["probabilities"] == {"yes": "0.524979", "no": "0.475021"}


def test_a_refused_trade_and_a_listener_failure_change_nothing(announced):
    """A slippage refusal announces nothing; a listener that raises does not undo or fail the trade."""
    ana = create_user(username="ana")
    market = services.create_market(question="Will it rain?", liquidity_b_micro=100 * M, close_at=timezone.now() + dt.timedelta(days=1))
    with pytest.raises(SlippageExceeded):
        services.place_trade(user=ana, market_slug=market.slug, request=services.TradeRequest(outcome="yes", side="buy", shares_micro=10 * M, max_cost_micro=M))
    assert announced == []

    def broken(sender, event, **kwargs):
        raise RuntimeError("listener down")

    trade_committed.connect(broken, weak=False)
    try:
        services.place_trade(user=ana, market_slug=market.slug, request=services.TradeRequest(outcome="no", side="buy", shares_micro=M))
    finally:
        trade_committed.disconnect(broken)
    market.refresh_from_db()
    assert market.trade_count == 1 and len(announced) == 1
