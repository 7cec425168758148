"""Errors the ledger raises; the API maps them to stable codes."""


class LedgerError(Exception):
    """Base class for ledger errors."""

    code = "invalid"


class InsufficientFunds(LedgerError):
    """The paying account holds less than the amount."""

    code = "insufficient_funds"


class InvalidAmount(LedgerError):
    """An amount that is not a positive whole number of micro-credits."""

    code = "invalid"
