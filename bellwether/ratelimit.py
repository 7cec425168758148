"""Counters shared by every process: rate limits, backoffs and the cache they live in.

Failed-login lockouts (allauth), the API's rate limits and the highlights
sign-up limits must hold however many processes serve the site and however
much page traffic there is, so they live in a cache of their own, the
"counters" alias (``CACHES["counters"]``): Redis when ``CACHE_URL`` names
one, otherwise the database through ``CounterCache``. Rendered pages use the
per-process "pages" cache and can never evict a counter.

- ``hit`` counts one event in a fixed window and says whether it is allowed.
- ``take_backoff`` allows one event now and makes the next one wait twice as
  long as the last (confirmation mails to one address).
- ``ApiRateLimitMiddleware`` answers API requests past their limits with 429.
"""

from __future__ import annotations

import base64
import hashlib
import ipaddress
import math
import pickle
import re
import time
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime

from django.conf import settings
from django.core.cache import caches
from django.core.cache.backends.base import DEFAULT_TIMEOUT
from django.core.cache.backends.db import DatabaseCache
from django.db import DatabaseError, IntegrityError, connections, router, transaction
from django.http import JsonResponse
from django.utils.connection import ConnectionProxy
from django.utils.timezone import now as tz_now

from bellwether.api_common import API_PREFIX, error_body

COUNTERS = "counters"
counters = ConnectionProxy(caches, COUNTERS)

# A window's counter outlives the window by this much, so a request that read
# the clock just before the window ended still finds its counter.
WINDOW_SLACK_S = 60
IPV6_PREFIX = 64  # one subscriber usually holds a whole /64


def clock() -> float:
    """Return the current time in seconds; tests replace it to move time on."""
    return time.time()


# --- the database backend -------------------------------------------------------------


class CounterCache(DatabaseCache):
    """Django's database cache, made safe for counters that every process shares.

    ``add`` and ``incr`` are atomic across processes: each locks the row it
    reads (``SELECT ... FOR UPDATE`` on PostgreSQL; on SQLite the
    IMMEDIATE transactions serialise writers). Culling only ever deletes
    expired rows, so a live counter survives any number of other keys;
    MAX_ENTRIES only decides when the expired rows are swept.
    """

    def _cull(self, db, cursor, now, num):
        connection = connections[db]
        table = connection.ops.quote_name(self._table)
        expires = connection.ops.quote_name("expires")
        cursor.execute(f"DELETE FROM {table} WHERE {expires} < %s", [connection.ops.adapt_datetimefield_value(now)])

    def _encode(self, value) -> str:
        return base64.b64encode(pickle.dumps(value, self.pickle_protocol)).decode("latin1")

    @contextmanager
    def _transaction(self, connection):
        """Open a transaction (or a savepoint inside the caller's) and yield a cursor.

        On PostgreSQL a transaction of its own commits without waiting for the
        disk: losing the last instant of counts in a crash matters less than
        a disk flush on every request. Inside a caller's transaction the
        caller's durability stands.
        """
        own = not connection.in_atomic_block
        with transaction.atomic(using=connection.alias), connection.cursor() as cursor:
            if own and connection.vendor == "postgresql":
                cursor.execute("SET LOCAL synchronous_commit TO OFF")
            yield cursor

    def _locked_row(self, cursor, connection, key: str):
        """Return (value, alive) of ``key``'s row, locked, or None. Call inside a transaction."""
        quote = connection.ops.quote_name
        lock = " FOR UPDATE" if connection.features.has_select_for_update else ""
        now = connection.ops.adapt_datetimefield_value(tz_now().replace(microsecond=0))
        cursor.execute(
            f"SELECT {quote('value')}, {quote('expires')} >= %s FROM {quote(self._table)} WHERE {quote('cache_key')} = %s{lock}",
            [now, key],
        )
        return cursor.fetchone()

    def add(self, key, value, timeout=DEFAULT_TIMEOUT, version=None) -> bool:
        """Store ``value`` unless a live entry holds ``key``; return whether it was stored."""
        key = self.make_and_validate_key(key, version=version)
        timeout = self.get_backend_timeout(timeout)
        db = router.db_for_write(self.cache_model_class)
        connection = connections[db]
        quote = connection.ops.quote_name
        table = quote(self._table)
        if timeout is None:
            expires = datetime.max
        else:
            expires = datetime.fromtimestamp(timeout, tz=UTC if settings.USE_TZ else None)
        expires = connection.ops.adapt_datetimefield_value(expires.replace(microsecond=0))
        if not connection.in_atomic_block:
            self._sweep(db)
        try:
            with self._transaction(connection) as cursor:
                row = self._locked_row(cursor, connection, key)
                if row is not None and row[1]:
                    return False
                if row is not None:
                    cursor.execute(
                        f"UPDATE {table} SET {quote('value')} = %s, {quote('expires')} = %s WHERE {quote('cache_key')} = %s",
                        [self._encode(value), expires, key],
                    )
                else:
                    cursor.execute(
                        f"INSERT INTO {table} ({quote('cache_key')}, {quote('value')}, {quote('expires')}) VALUES (%s, %s, %s)",
                        [key, self._encode(value), expires],
                    )
        except IntegrityError:
            # Another process inserted the key first: the key exists. Any
            # other database error is an error, not a "no".
            return False
        return True

    def incr(self, key, delta=1, version=None) -> int:
        """Add ``delta`` to a live counter and return the new value; raise ValueError when there is none."""
        key = self.make_and_validate_key(key, version=version)
        db = router.db_for_write(self.cache_model_class)
        connection = connections[db]
        quote = connection.ops.quote_name
        with self._transaction(connection) as cursor:
            row = self._locked_row(cursor, connection, key)
            if row is None or not row[1]:
                raise ValueError(f"Key '{key}' not found.")
            value = pickle.loads(base64.b64decode(row[0].encode("latin1"))) + delta
            cursor.execute(
                f"UPDATE {quote(self._table)} SET {quote('value')} = %s WHERE {quote('cache_key')} = %s",
                [self._encode(value), key],
            )
        return value

    def _sweep(self, db) -> None:
        """Delete the expired rows once the table holds more than MAX_ENTRIES rows.

        Runs in its own short statements, outside any transaction, so the
        locks of the deleted rows are held for no longer than the delete.
        """
        try:
            with connections[db].cursor() as cursor:
                cursor.execute(f"SELECT COUNT(*) FROM {connections[db].ops.quote_name(self._table)}")
                if cursor.fetchone()[0] > self._max_entries:
                    self._cull(db, cursor, tz_now().replace(microsecond=0), 0)
        except DatabaseError:
            pass  # another process is sweeping; the next add tries again


# --- counting ------------------------------------------------------------------------


@dataclass(frozen=True)
class Decision:
    """Whether an event may go ahead and, when it may not, how many seconds until it may."""

    allowed: bool
    retry_after_s: int = 0


def hit(key: str, *, limit: int, window_s: int) -> Decision:
    """Count one event for ``key`` in the current window of ``window_s`` seconds; allow the first ``limit``.

    Fixed windows: the count starts again at every multiple of ``window_s``.
    A refused event counts too. A limit of 0 or less switches the limit off.
    """
    if limit <= 0:
        return Decision(True)
    now = clock()
    window = int(now // window_s)
    retry_after_s = max(1, math.ceil((window + 1) * window_s - now))
    counter = f"rl:{key}:{window_s}:{window}"
    try:
        count = counters.incr(counter)
    except ValueError:
        # The first event of the window; add() tells a racing process apart.
        if counters.add(counter, 1, retry_after_s + WINDOW_SLACK_S):
            count = 1
        else:
            count = counters.incr(counter)
    return Decision(count <= limit, 0 if count <= limit else retry_after_s)


def take_backoff(key: str, *, first_wait_s: int, max_wait_s: int) -> Decision:
    """Allow one event for ``key`` now unless the previous one is too recent; each allowed event doubles the wait.

    The waits after successive events are ``first_wait_s``, twice that, four
    times that ..., at most ``max_wait_s``. The series starts again after
    ``max_wait_s`` without an event, or after ``reset_backoff``. Atomic across
    processes: of two simultaneous events, only one is allowed.
    """
    if first_wait_s <= 0:
        return Decision(True)
    entry = f"bo:{key}"
    with _locked(entry) as locked:
        now = clock()
        if not locked:
            return Decision(False, 1)
        sent, last_at, next_at = counters.get(entry, (0, 0.0, 0.0))
        if now < next_at:
            return Decision(False, max(1, math.ceil(next_at - now)))
        if now - last_at > max_wait_s:
            sent = 0
        wait_s = min(max_wait_s, first_wait_s * 2 ** min(sent, 32))
        counters.set(entry, (sent + 1, now, now + wait_s), wait_s + max_wait_s)
    return Decision(True)


@contextmanager
def _locked(key: str, *, wait_s: float = 2.0):
    """Hold a short lock on ``key`` in the counters cache; yield whether it was taken within ``wait_s``."""
    lock = f"{key}:lock"
    deadline = time.monotonic() + wait_s
    pause = 0.01
    while not counters.add(lock, 1, 10):
        if time.monotonic() >= deadline:
            yield False
            return
        time.sleep(pause)  # another process holds it for a few milliseconds
        pause = min(pause * 2, 0.1)
    try:
        yield True
    finally:
        counters.delete(lock)


def reset_backoff(key: str) -> None:
    """Forget the waits of ``key``: its next event is allowed at once."""
    counters.delete(f"bo:{key}")


def digest(value: str) -> str:
    """Return a short, stable stand-in for a secret or personal value (tokens, addresses) in counter keys."""
    return hashlib.sha256(value.encode("utf-8", "surrogatepass")).hexdigest()[:32]


def client_ip(request) -> str:
    """Return the client's IP address as allauth sees it (ALLAUTH_TRUSTED_PROXY_COUNT), IPv6 cut to its /64."""
    from allauth.account.adapter import get_adapter

    ip = get_adapter().get_client_ip(request)
    try:
        address = ipaddress.ip_address(ip)
    except ValueError:
        return ip
    if address.version == 6:
        return str(ipaddress.IPv6Network(f"{address}/{IPV6_PREFIX}", strict=False).network_address)
    return ip


def format_wait(seconds: int) -> str:
    """Return a wait in words, rounded up to whole minutes or hours past a minute.

    >>> format_wait(1), format_wait(45), format_wait(60), format_wait(61), format_wait(3600), format_wait(5401)
    ('1 second', '45 seconds', '1 minute', '2 minutes', '1 hour', '2 hours')
    """
    if seconds < 60:
        value, unit = max(1, seconds), "second"
    elif seconds < 3600:
        value, unit = math.ceil(seconds / 60), "minute"
    else:
        value, unit = math.ceil(seconds / 3600), "hour"
    return f"{value} {unit}{'' if value == 1 else 's'}"


# --- the API's limits ----------------------------------------------------------------

TRADE_PATH = re.compile(r"^/api/v1/markets/[^/]+/trades/?$")
BEARER = re.compile(r"^\s*bearer\s+(\S+)\s*$", re.IGNORECASE)


def rate_limited_response(message: str, retry_after_s: int) -> JsonResponse:
    """Return the API's 429 answer: the usual error body and a Retry-After header."""
    response = JsonResponse(error_body("rate_limited", message), status=429)
    response["Retry-After"] = str(retry_after_s)
    response["Cache-Control"] = "no-store"
    return response


def _bearer_token(request) -> str | None:
    match = BEARER.match(request.headers.get("Authorization", ""))
    return match.group(1) if match else None


def _trader_key(request, token: str | None) -> str:
    """Return who a trade counts against: the user behind the token or session, else the credential itself."""
    if token is not None:
        from bellwether.accounts.services import user_id_for_token

        user_id = user_id_for_token(token)
        return f"user:{user_id}" if user_id is not None else f"token:{digest(token)}"
    user = getattr(request, "user", None)
    if user is not None and user.is_authenticated:
        return f"user:{user.pk}"
    return f"ip:{client_ip(request)}"


def check_api_limits(request) -> JsonResponse | None:
    """Count an API request against its limits; return the 429 answer when one is exceeded, else None.

    Every request counts against its IP address (API_IP_RATE_LIMIT_PER_MIN);
    one carrying a bearer token or a session counts against that credential
    too (API_RATE_LIMIT_PER_MIN), keyed by a digest, so no query is needed;
    a trade counts against its user (API_TRADE_RATE_LIMIT_PER_MIN).
    """
    ip = client_ip(request)
    decision = hit(f"api:ip:{ip}", limit=settings.API_IP_RATE_LIMIT_PER_MIN, window_s=60)
    if not decision.allowed:
        return rate_limited_response(
            f"Too many requests from your address: at most {settings.API_IP_RATE_LIMIT_PER_MIN} a minute. "
            f"Try again in {format_wait(decision.retry_after_s)}.",
            decision.retry_after_s,
        )
    token = _bearer_token(request)
    session = request.COOKIES.get(settings.SESSION_COOKIE_NAME)
    credential = f"token:{digest(token)}" if token else f"session:{digest(session)}" if session else None
    if credential is not None:
        decision = hit(f"api:{credential}", limit=settings.API_RATE_LIMIT_PER_MIN, window_s=60)
        if not decision.allowed:
            kind = "token" if token else "session"
            return rate_limited_response(
                f"Too many requests with this {kind}: at most {settings.API_RATE_LIMIT_PER_MIN} a minute. "
                f"Try again in {format_wait(decision.retry_after_s)}.",
                decision.retry_after_s,
            )
    if request.method == "POST" and TRADE_PATH.match(request.path):
        decision = hit(f"api:trades:{_trader_key(request, token)}", limit=settings.API_TRADE_RATE_LIMIT_PER_MIN, window_s=60)
        if not decision.allowed:
            return rate_limited_response(
                f"Too many trades: at most {settings.API_TRADE_RATE_LIMIT_PER_MIN} a minute. "
                f"Try again in {format_wait(decision.retry_after_s)}.",
                decision.retry_after_s,
            )
    return None


class ApiRateLimitMiddleware:
    """Refuse API requests past their rate limits before any view runs, so a refused request changes nothing."""

    def __init__(self, get_response) -> None:
        self.get_response = get_response

    def __call__(self, request):
        if request.path.startswith(API_PREFIX):
            refused = check_api_limits(request)
            if refused is not None:
                return refused
        return self.get_response(request)
