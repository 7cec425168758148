"""The one JSON API, under /api/v1; each app adds its router.

Auth is a bearer token (``Authorization: Bearer bw_...``) or the browser
session with its CSRF token. Every error has the body
``{"error": {"code": "...", "message": "..."}}`` with a stable code.
"""

from __future__ import annotations

from django.http import HttpRequest
from ninja import NinjaAPI
from ninja.errors import AuthenticationError, HttpError, ValidationError
from ninja.security import APIKeyCookie, HttpBearer
from ninja.utils import check_csrf

from bellwether.accounts.services import authenticate_token
from bellwether.api_common import CODE_BY_STATUS, STATUS_BY_CODE, error_body
from bellwether.ledger.exceptions import LedgerError
from bellwether.markets.exceptions import MarketError
from bellwether.paging import BadCursor


class BearerToken(HttpBearer):
    def authenticate(self, request: HttpRequest, token: str):
        user = authenticate_token(token)
        if user is not None:
            request.user = user
        return user


class SessionWithCsrf(APIKeyCookie):
    """The browser's logged-in session; unsafe methods also need the CSRF token.

    The CSRF check runs only once a session user is found, so a request with
    neither a session nor a valid token is told 401, not a CSRF failure.
    """

    param_name = "sessionid"

    def __init__(self) -> None:
        super().__init__(csrf=False)

    def authenticate(self, request: HttpRequest, key):
        user = getattr(request, "user", None)
        if user is None or not user.is_authenticated:
            return None
        if request.method not in ("GET", "HEAD", "OPTIONS", "TRACE") and check_csrf(request):
            raise HttpError(403, "CSRF check failed: send the X-CSRFToken header")
        return user


class BellwetherAPI(NinjaAPI):
    """The NinjaAPI, with the headers every 429 answer carries declared in the OpenAPI schema."""

    def get_openapi_schema(self, *args, **kwargs):
        schema = super().get_openapi_schema(*args, **kwargs)
        retry_after = {"description": "seconds to wait before trying again", "schema": {"type": "integer", "minimum": 0}}
        for operations in schema.get("paths", {}).values():
            for operation in operations.values():
                limited = operation.get("responses", {}).get(429)
                if limited is not None:
                    limited.setdefault("headers", {})["Retry-After"] = retry_after
        return schema


api = BellwetherAPI(
    title="Bellwether API",
    version="1.0.0",
    urls_namespace="api-1.0.0",
    auth=[BearerToken(), SessionWithCsrf()],
    docs_url="/docs",
)


@api.exception_handler(MarketError)
@api.exception_handler(LedgerError)
def _domain_error(request, exc):
    return api.create_response(request, error_body(exc.code, str(exc)), status=STATUS_BY_CODE.get(exc.code, 400))


@api.exception_handler(BadCursor)
def _bad_cursor(request, exc: BadCursor):
    return api.create_response(request, error_body("invalid", f"cursor: {exc}"), status=400)


@api.exception_handler(ValidationError)
def _validation_error(request, exc: ValidationError):
    first = exc.errors[0] if exc.errors else {}
    loc = list(first.get("loc", ()))
    # ("body", "payload", "outcomes", 0) names the field "outcomes.0": the body's parameter name is ours, not the client's.
    where = ".".join(str(p) for p in loc[2 if loc[:1] == ["body"] else 1 :]) or "body"
    message = f"{where}: {first.get('msg', 'invalid input')}"
    return api.create_response(request, error_body("invalid", message), status=400)


@api.exception_handler(AuthenticationError)
def _unauthenticated(request, exc):
    return api.create_response(request, error_body("unauthorized", "log in or send Authorization: Bearer <token>"), status=401)


@api.exception_handler(HttpError)
def _http_error(request, exc: HttpError):
    code = CODE_BY_STATUS.get(exc.status_code, "invalid")
    return api.create_response(request, error_body(code, str(exc)), status=exc.status_code)


from bellwether.accounts.api import router as accounts_router  # noqa: E402
from bellwether.markets.api import router as markets_router  # noqa: E402
from bellwether.news.api import router as news_router  # noqa: E402

api.add_router("/markets", markets_router)
api.add_router("/me", accounts_router)
api.add_router("/articles", news_router)
