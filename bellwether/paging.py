"""Cursors for the API's lists: an opaque string that says where the next page starts.

A cursor is the sort key of the last row a page showed (for example its
``created_at`` and id), as JSON in URL-safe base64. Clients treat it as
opaque; the server refuses one it cannot read with ``BadCursor``.

>>> import datetime as dt
>>> at = dt.datetime(2026, 12, 3, 9, 30, tzinfo=dt.timezone.utc)
>>> cursor = encode_cursor(at, 42)
>>> decode_cursor(cursor, "datetime", "int") == (at, 42)
True
>>> decode_cursor("not a cursor", "int")
Traceback (most recent call last):
...
bellwether.paging.BadCursor: the cursor is not one this list gave out
>>> decode_cursor(encode_cursor("0001-01-01T00:00:00+14:00", 1), "datetime", "int")
Traceback (most recent call last):
...
bellwether.paging.BadCursor: the cursor is not one this list gave out
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import json

from django.db.models import Q

CURSOR_MAX_CHARS = 200
_MAX_INT = 2**63 - 1


class BadCursor(ValueError):
    """A cursor that this server did not give out (or that no longer fits the list)."""


def encode_cursor(*values) -> str:
    """Return the opaque cursor for a sort key (datetimes, ints or None)."""
    plain = [value.isoformat() if isinstance(value, dt.datetime) else value for value in values]
    raw = json.dumps(plain, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str, *kinds: str) -> tuple:
    """Return the sort key inside ``cursor``, checked against ``kinds``: "int", "datetime" or "datetime?" (may be None)."""
    message = "the cursor is not one this list gave out"
    if not isinstance(cursor, str) or not cursor.isascii() or len(cursor) > CURSOR_MAX_CHARS:
        raise BadCursor(message)
    try:
        raw = base64.b64decode(cursor + "=" * (-len(cursor) % 4), altchars=b"-_", validate=True)
        values = json.loads(raw)
    except (binascii.Error, ValueError):
        raise BadCursor(message) from None
    if not isinstance(values, list) or len(values) != len(kinds):
        raise BadCursor(message)
    return tuple(_checked(value, kind, message) for value, kind in zip(values, kinds))


def _checked(value, kind: str, message: str):
    if kind == "int":
        if type(value) is not int or not 0 <= value <= _MAX_INT:
            raise BadCursor(message)
        return value
    if value is None and kind == "datetime?":
        return None
    if not isinstance(value, str) or len(value) > 40:
        raise BadCursor(message)
    try:
        when = dt.datetime.fromisoformat(value)
        if when.tzinfo is None:
            raise ValueError("a cursor's time has a time zone")
        # Converted here, so an instant past the calendar's ends (year 1 at
        # +14:00) is a bad cursor instead of an error in the query.
        return when.astimezone(dt.timezone.utc)
    except (ValueError, OverflowError):
        raise BadCursor(message) from None


def newest_first_after(field: str, value, pk: int, *, nullable: bool = False) -> Q:
    """Return the filter for the rows after (``value``, ``pk``) in the order ``field`` descending (nulls last), then id descending."""
    if value is None:
        return Q(**{f"{field}__isnull": True, "pk__lt": pk})
    after = Q(**{f"{field}__lt": value}) | Q(**{field: value, "pk__lt": pk})
    return after | Q(**{f"{field}__isnull": True}) if nullable else after
