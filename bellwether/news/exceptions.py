"""Errors the news services raise; adapters turn them into messages."""


class NewsError(Exception):
    """Base class for news errors."""


class IngestError(NewsError):
    """An item could not be stored; the message says why in one line."""
