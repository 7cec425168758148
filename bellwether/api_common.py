"""What every API router shares: the error body, the declared error statuses and the decimal-string types.

Kept apart from ``bellwether.api`` (which imports every router) so that a
router, or the request guard middleware, can import it without a cycle.
"""

from __future__ import annotations

import re
from typing import Annotated

from ninja import Query, Schema
from pydantic import WithJsonSchema

from bellwether.paging import CURSOR_MAX_CHARS

# A plain ASCII decimal: digits, then optionally a point and 1 to 6 digits.
# No sign, exponent, spaces, underscores or non-ASCII digits. The API
# refuses zero and anything above 1,000,000,000 on top of this shape.
DECIMAL_PATTERN = r"^[0-9]{1,10}(\.[0-9]{1,6})?$"
DECIMAL_RE = re.compile(DECIMAL_PATTERN)
# A probability from 0 to 1 with at most 6 decimals.
PROBABILITY_PATTERN = r"^(0(\.[0-9]{1,6})?|1(\.0{1,6})?)$"
PROBABILITY_RE = re.compile(PROBABILITY_PATTERN)

# Declared here, checked by the adapters (``markets.api.to_micro``) so the
# messages can say what is wrong; the two use the same compiled pattern.
DecimalString = Annotated[
    str,
    WithJsonSchema({"type": "string", "pattern": DECIMAL_PATTERN, "maxLength": 17, "examples": ["12.5"]}),
]
ProbabilityString = Annotated[
    str,
    WithJsonSchema({"type": "string", "pattern": PROBABILITY_PATTERN, "maxLength": 8, "examples": ["0.25"]}),
]

# Wagtail's page ids (articles) are 32-bit: a larger id is refused as invalid
# instead of reaching the database, which cannot compare with it.
MAX_PAGE_ID = 2**31 - 1

# Every address of the API starts with this.
API_PREFIX = "/api/"

# The status of each error code a domain exception carries (docs/api.md, "Errors").
STATUS_BY_CODE = {
    "invalid": 400,
    "unauthorized": 401,
    "forbidden": 403,
    "not_found": 404,
    "market_closed": 409,
    "slippage_exceeded": 409,
    "conflict": 409,
    "payload_too_large": 413,
    "insufficient_funds": 422,
    "idempotency_conflict": 422,
    "rate_limited": 429,
}
# The code of an error answered by status alone (no domain exception names it).
CODE_BY_STATUS = {
    401: "unauthorized", 403: "forbidden", 404: "not_found", 405: "method_not_allowed", 409: "conflict",
    413: "payload_too_large", 429: "rate_limited", 500: "server_error",
}


class ErrorDetail(Schema):
    code: str
    message: str


class Error(Schema):
    """Every error answer: ``{"error": {"code": "...", "message": "..."}}``; the code is stable, the message is for people."""

    error: ErrorDetail


def error_body(code: str, message: str) -> dict:
    return {"error": {"code": code, "message": message}}


# Statuses any route can answer without reaching its view: a NUL byte or a
# malformed parameter (400) and the rate limit (429). Routes with a body add
# 413 (body over the API's size limit); routes behind auth add 401 and 403
# (a session without the CSRF token).
ANY_ROUTE = (400, 429)
WITH_BODY = (413,)
WITH_AUTH = (401, 403)


def errors(*statuses: int) -> dict[int, type[Error]]:
    """Return the response declarations for these error statuses, each with the Error body."""
    return {status: Error for status in sorted(set(statuses))}


def cursor_param():
    """Return the declaration of the ``cursor`` query parameter every paged list takes."""
    return Query(None, max_length=CURSOR_MAX_CHARS, description="the `next` of the previous page; omit for the first page")
