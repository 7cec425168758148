"""Errors the market services raise; each carries its stable API code."""

from bellwether.ledger.exceptions import InsufficientFunds, InvalidAmount, LedgerError  # noqa: F401


class MarketError(Exception):
    code = "invalid"


class InvalidTrade(MarketError):
    """Input that is well-formed but not a trade this market can take."""

    code = "invalid"


class MarketNotFound(MarketError):
    code = "not_found"


class MarketClosed(MarketError):
    """The market is not open for trading (draft, past close, resolved or cancelled)."""

    code = "market_closed"


class SlippageExceeded(MarketError):
    """The trade would cost more than max_cost or pay less than min_proceeds."""

    code = "slippage_exceeded"


class IdempotencyConflict(MarketError):
    """The Idempotency-Key was used before with a different request."""

    code = "idempotency_conflict"


class Forbidden(MarketError):
    code = "forbidden"


class StalePreview(MarketError):
    """A trade happened after the payout preview that a resolution was confirmed from."""

    code = "conflict"


class ResolutionConflict(MarketError):
    """The market was already settled another way; a settlement is never changed."""

    code = "conflict"


class InvalidForecast(MarketError):
    """An expert forecast that cannot be recorded; the message says why."""

    code = "invalid"
