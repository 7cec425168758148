"""The trade ticket on the market page: read its form, describe quotes, word errors.

The ticket trades in two steps. A quote shows what a request would do and
carries, in hidden inputs, exactly what was quoted: the shares, the bound
(``max_cost`` for a buy, ``min_proceeds`` for a sell) and ``quote_for``, the
choices it was quoted for. Confirming trades those quoted shares with that
bound, so a fill is never worse than its quote; a form whose choices no
longer match its quote is quoted again instead of traded. Each rendered
ticket carries a fresh ``idempotency_key``, so a double submit trades once.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass

from bellwether.ledger.exceptions import InsufficientFunds, LedgerError
from bellwether.ledger.services import format_micro

from .api import to_micro
from .exceptions import (
    IdempotencyConflict,
    InvalidTrade,
    MarketClosed,
    MarketError,
    MarketNotFound,
    SlippageExceeded,
)
from .models import Market, Trade
from .services import Fill, TradeRequest
from .templatetags.market_format import credits

SIDES = ("buy", "sell")
MODES = ("amount", "shares")
KEY_MAX_LENGTH = 200


def new_key() -> str:
    """Return a fresh idempotency key for one rendered ticket."""
    return "ticket-" + secrets.token_urlsafe(18)


@dataclass
class Quote:
    """A fill as the ticket shows it, plus the hidden values that pin the trade to it."""

    side: str
    outcome_slug: str
    outcome_name: str
    shares_micro: int
    amount_micro: int
    average_price: float
    probability_before: float
    probability_after: float
    quote_for: str

    @classmethod
    def from_fill(cls, *, fill: Fill, market: Market, quote_for: str) -> "Quote":
        outcome = list(market.outcomes.all())[fill.outcome_index]
        return cls(
            side=fill.side, outcome_slug=outcome.slug, outcome_name=outcome.name, shares_micro=fill.shares_micro,
            amount_micro=fill.amount_micro, average_price=fill.average_price,
            probability_before=fill.probability_before, probability_after=fill.probabilities_after[fill.outcome_index],
            quote_for=quote_for,
        )

    @property
    def is_buy(self) -> bool:
        return self.side == Trade.Side.BUY

    @property
    def bound_name(self) -> str:
        return "max_cost" if self.is_buy else "min_proceeds"

    @property
    def amount(self) -> str:
        """Return the exact cost or proceeds as a decimal string (the bound sent back on confirm)."""
        return format_micro(self.amount_micro)

    @property
    def shares(self) -> str:
        return format_micro(self.shares_micro)

    @property
    def max_payout_micro(self) -> int:
        """Return what the shares pay if the outcome wins (1 credit each); a sell gives up this much."""
        return self.shares_micro

    @property
    def average_price_text(self) -> str:
        return f"{self.average_price:.4f}"

    @property
    def probability_before_text(self) -> str:
        return f"{self.probability_before * 100:.1f}%"

    @property
    def probability_after_text(self) -> str:
        return f"{self.probability_after * 100:.1f}%"

    @property
    def moves_up(self) -> bool:
        return self.probability_after >= self.probability_before


@dataclass
class Ticket:
    """The ticket's state: the reader's choices, the current quote and a message."""

    outcome: str
    side: str = "buy"
    mode: str = "amount"
    value: str = ""
    sell_all: bool = False
    key: str = ""
    quote: Quote | None = None
    message: str = ""
    message_kind: str = ""  # "error", "success" or "info"

    @property
    def is_sell(self) -> bool:
        return self.side == "sell"

    @property
    def quote_for(self) -> str:
        """Return the choices a quote was made for; confirming trades only if they still match."""
        mode = "all" if self.is_sell and self.sell_all else ("shares" if self.is_sell else self.mode)
        value = "" if mode == "all" else self.value.strip()
        return f"{self.outcome}|{self.side}|{mode}|{value}"

    def say(self, message: str, kind: str = "error") -> "Ticket":
        self.message, self.message_kind = message, kind
        return self


def blank_ticket(*, market: Market, outcome: str | None = None, side: str = "buy") -> Ticket:
    """Return a fresh ticket, on ``outcome`` if the market has it, else on its first outcome."""
    slugs = [o.slug for o in market.outcomes.all()]
    return Ticket(outcome=outcome if outcome in slugs else slugs[0], side=side if side in SIDES else "buy", key=new_key())


def ticket_from_form(*, data, market: Market) -> Ticket:
    """Return the ticket as submitted (unknown choices fall back to the defaults; the key is kept)."""
    key = (data.get("idempotency_key") or "").strip()[:KEY_MAX_LENGTH]
    ticket = blank_ticket(market=market, outcome=data.get("outcome"), side=data.get("side") or "buy")
    mode = data.get("mode") or "amount"
    ticket.mode = mode if mode in MODES else "amount"
    ticket.value = (data.get("value") or "").strip()[:40]
    ticket.sell_all = ticket.is_sell and data.get("sell_all") in ("1", "on", "true")
    ticket.key = key or ticket.key
    return ticket


def request_for(ticket: Ticket) -> TradeRequest:
    """Return the trade the ticket asks for, unbounded (for a quote); raise InvalidTrade on bad input.

    A buy is by amount (credits to spend) or by shares; a sell is by shares,
    or all the shares held.
    """
    if ticket.is_sell:
        if ticket.sell_all:
            return TradeRequest(outcome=ticket.outcome, side="sell", sell_all=True)
        return TradeRequest(outcome=ticket.outcome, side="sell", shares_micro=_parse(ticket.value, "shares"))
    if ticket.mode == "shares":
        return TradeRequest(outcome=ticket.outcome, side="buy", shares_micro=_parse(ticket.value, "shares"))
    return TradeRequest(outcome=ticket.outcome, side="buy", amount_micro=_parse(ticket.value, "amount"))


def _parse(value: str, name: str) -> int:
    if not value:
        raise InvalidTrade("Enter an amount in credits." if name == "amount" else "Enter a number of shares.")
    micro = to_micro(value, name)
    assert micro is not None
    return micro


def confirmed_request(*, ticket: Ticket, data) -> TradeRequest | None:
    """Return the quoted trade to execute, or None when the form holds no quote for exactly these choices.

    The trade is the quoted number of shares with the quoted cost as
    ``max_cost`` (a buy) or the quoted proceeds as ``min_proceeds`` (a sell).
    """
    if data.get("quote_for") != ticket.quote_for:
        return None
    bound_name = "min_proceeds" if ticket.is_sell else "max_cost"
    shares, bound = data.get("quoted_shares"), data.get(bound_name)
    if not shares or bound is None or bound == "":
        return None
    shares_micro = to_micro(shares, "quoted shares")
    bound_micro = to_micro(bound, bound_name, allow_zero=ticket.is_sell)
    if ticket.is_sell:
        return TradeRequest(outcome=ticket.outcome, side="sell", shares_micro=shares_micro, min_proceeds_micro=bound_micro)
    return TradeRequest(outcome=ticket.outcome, side="buy", shares_micro=shares_micro, max_cost_micro=bound_micro)


def error_message(exc: Exception) -> str:
    """Return what the reader is told when a quote or trade is refused."""
    detail = str(exc)
    if isinstance(exc, InsufficientFunds):
        return f"Not enough credits: {detail}."
    if isinstance(exc, MarketClosed):
        return f"Trading is closed: {detail}."
    if isinstance(exc, SlippageExceeded):
        return "The price moved since your quote, so nothing was traded. Here is the new quote: confirm again if it still suits you."
    if isinstance(exc, IdempotencyConflict):
        return "This ticket was already used for a different trade, so nothing was traded. The ticket is fresh now: check the quote and confirm again."
    if isinstance(exc, MarketNotFound):
        return "This market no longer exists."
    if isinstance(exc, (InvalidTrade, MarketError, LedgerError)):
        return detail[:1].upper() + detail[1:] + ("" if detail.endswith(".") else ".")
    raise exc


def done_message(*, body: dict, market: Market) -> str:
    """Return the success line for a placed (or replayed) trade, from the body ``place_trade`` stored.

    The body is the API's (``api.trade_body``) whichever way the trade came
    in, so a key first used by the API replays here too, and the reverse.
    """
    verb = "Bought" if body["side"] == Trade.Side.BUY else "Sold"
    name = next((o.name for o in market.outcomes.all() if o.slug == body["outcome"]), body["outcome"])
    shares, amount = credits(to_micro(body["shares"], "shares")), credits(to_micro(body["amount"], "amount", allow_zero=True))
    text = f"{verb} {shares} {name} for {amount} cr."
    if body.get("replayed"):
        return f"Already done: {text[0].lower()}{text[1:]} That ticket was sent twice and traded once."
    return text
