"""What the markets app announces to the rest of the site once a trade is committed.

The markets app knows nothing of who listens (the live streams do), so it
sends a Django signal after the commit with a plain, JSON-ready description
of the trade:

    {"trade_id": 42, "market": "will-it-rain", "market_id": 7, "outcome": "yes",
     "side": "buy", "shares": "10.000000", "amount": "5.124948",
     "probabilities": {"yes": "0.524979", "no": "0.475021"},
     "volume": "105.124948", "trade_count": 12, "user": "ana",
     "at": "2026-11-21T08:30:00.123456+00:00"}
"""

from __future__ import annotations

import logging

from django.dispatch import Signal

from bellwether.ledger.services import format_micro

trade_committed = Signal()  # sent with event=<dict above>
log = logging.getLogger(__name__)


def trade_event(*, trade, market, outcomes, volume_micro: int, trade_count: int, username: str) -> dict:
    """Return the description of a committed trade that listeners receive."""
    return {
        "trade_id": trade.pk,
        "market": market.slug,
        "market_id": market.pk,
        "outcome": outcomes[[o.pk for o in outcomes].index(trade.outcome_id)].slug,
        "side": trade.side,
        "shares": format_micro(trade.shares_micro),
        "amount": format_micro(trade.amount_micro),
        "probabilities": {o.slug: f"{p:.6f}" for o, p in zip(outcomes, trade.probabilities_after)},
        "volume": format_micro(volume_micro),
        "trade_count": trade_count,
        "user": username,
        "at": trade.created_at.isoformat(),
    }


def announce_trade(event: dict) -> None:
    """Send ``trade_committed``; a failing listener is logged and never fails the trade."""
    for receiver, result in trade_committed.send_robust(sender=None, event=event):
        if isinstance(result, Exception):
            log.error("trade_committed listener %r failed: %s", receiver, result, exc_info=result)
