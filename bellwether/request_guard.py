"""Refuse, before any view runs, requests carrying what the database cannot store, and API bodies over the size limit.

PostgreSQL cannot store a NUL character in text, and neither database can
store a lone UTF-16 surrogate; either one, sent in a path, a query
parameter, a form field or a JSON body, used to reach a query and end as a
500. This middleware answers 400 instead, on both databases: the API's
JSON error body under /api/, Django's plain 400 page elsewhere.

API bodies larger than API_MAX_BODY_BYTES (1 MB unless the setting says
otherwise) are answered 413 with the JSON error body before they are read,
and any other error under /api/ that is not JSON already (Django's 404 page,
ninja's plain 405) is answered with the JSON error body too.
"""

from __future__ import annotations

import json
import re

from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.defaults import bad_request

from bellwether.api_common import API_PREFIX, CODE_BY_STATUS, error_body

API_MAX_BODY_BYTES = 1_048_576
# A JSON \u0000 escape: preceded by an even number of backslashes (zero included),
# so an escaped backslash followed by the text "u0000" does not count.
_JSON_NUL = re.compile(rb"(?<!\\)(?:\\\\)*\\u0000")
# A JSON escape in the surrogate range: only then can a lone surrogate hide in the body.
_JSON_SURROGATE = re.compile(rb"\\u[dD][89abcdefABCDEF]")
_FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")


class Refused(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


class RequestGuardMiddleware:
    """Answer 400 to a NUL character (or a lone surrogate) anywhere in the request, 413 to an API body over the limit."""

    def __init__(self, get_response) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        is_api = request.path.startswith(API_PREFIX)
        try:
            check_request(request)
        except Refused as refused:
            if is_api:
                return JsonResponse(error_body(refused.code, refused.message), status=refused.status)
            return bad_request(request, refused)
        response = self.get_response(request)
        if is_api and response.status_code >= 400 and not response.get("Content-Type", "").startswith("application/json"):
            return as_api_error(response)
        return response


def as_api_error(response: HttpResponse) -> HttpResponse:
    """Return ``response`` (an error Django or ninja answered in plain text or HTML) as the API's JSON error body.

    An unknown address under /api/ (Django's 404 page) and a method a route
    does not take (ninja's plain 405) are errors of the API like any other,
    and a client reads them the same way. Headers such as ``Allow`` are kept.
    """
    status = response.status_code
    code = CODE_BY_STATUS.get(status, "invalid" if status < 500 else "server_error")
    message = {404: "no such address in the API", 405: "this address does not take that method"}.get(status, response.reason_phrase)
    answer = JsonResponse(error_body(code, message), status=status)
    for header in ("Allow", "Retry-After", "WWW-Authenticate"):
        if header in response:
            answer[header] = response[header]
    return answer


def api_max_body_bytes() -> int:
    return getattr(settings, "API_MAX_BODY_BYTES", API_MAX_BODY_BYTES)


def check_request(request: HttpRequest) -> None:
    """Raise Refused when the request cannot be served as sent."""
    if "\x00" in request.path:
        raise Refused(400, "invalid", "the address contains a NUL character")
    for name, values in request.GET.lists():
        if "\x00" in name or any("\x00" in value for value in values):
            raise Refused(400, "invalid", f"the query parameter {_shown(name)!r} contains a NUL character")
    is_api = request.path.startswith(API_PREFIX)
    if is_api and _content_length(request) > api_max_body_bytes():
        raise Refused(413, "payload_too_large", f"the request body is larger than {api_max_body_bytes():,} bytes")
    content_type = request.content_type or ""
    # The API reads every body as JSON whatever its declared type, so its bodies are checked as JSON.
    if is_api or content_type == "application/json" or content_type.endswith("+json"):
        _check_json(request, is_api=is_api)
    elif request.method == "POST" and content_type in _FORM_TYPES:
        for name, values in request.POST.lists():
            if "\x00" in name or any("\x00" in value for value in values):
                raise Refused(400, "invalid", f"the form field {_shown(name)!r} contains a NUL character")


def _check_json(request: HttpRequest, *, is_api: bool) -> None:
    try:
        body = request.body
    except RequestDataTooBig:
        if not is_api:
            raise
        raise Refused(413, "payload_too_large", f"the request body is larger than {api_max_body_bytes():,} bytes") from None
    if b"\x00" in body or _JSON_NUL.search(body):
        raise Refused(400, "invalid", "the JSON body contains a NUL character (\\u0000), which cannot be stored")
    if _JSON_SURROGATE.search(body) and _has_lone_surrogate(body):
        raise Refused(400, "invalid", "the JSON body contains a lone surrogate (\\ud800 to \\udfff), which is not text")


def _has_lone_surrogate(body: bytes) -> bool:
    """Return True when the JSON ``body`` decodes to text that is not valid Unicode (unparseable JSON is the view's to refuse)."""
    try:
        data = json.loads(body)
    except ValueError:
        return False
    try:
        json.dumps(data, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def _content_length(request: HttpRequest) -> int:
    try:
        return int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        return 0


def _shown(name: str) -> str:
    return name.replace("\x00", "\\0")[:50]
