"""The failed-login lockout holds across worker processes and under page traffic.

The counts live in the shared counters cache (the database, or Redis with
CACHE_URL), not in each process's memory beside the page cache: two workers
allow 5 guesses between them, not 5 each, and 20,000 distinct page requests
cannot push a lockout out of the cache.
"""

from __future__ import annotations

import http.client
import os
import re
import subprocess
import sys
import uuid
from pathlib import Path
from urllib.parse import urlencode

import pytest
from django.core.cache import caches
from django.db import connection
from django.http import HttpResponse
from django.test import RequestFactory

from bellwether.accounts.services import create_user
from bellwether.news.middleware import PublicPageCacheMiddleware
from tests.servers import database_url, free_port_pair, health_ok, stop, wait_until_up

from .helpers import PASSWORD

ROOT = Path(__file__).resolve().parents[2]
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
REDIS_URL = f"redis://127.0.0.1:6379/{1 + os.getpid() % 15}"
WRONG = "The username and/or password you specified are not correct."
LOCKED = "Too many failed attempts."
CSRF_INPUT = re.compile(r'name="csrfmiddlewaretoken" value="([^"]+)"')


# --- a real server with two workers ------------------------------------------------------------


def _request(port: int, method: str, path: str, body: str | None = None, headers: dict | None = None):
    """Send one request on a fresh connection (so the kernel may hand it to either worker); return (status, headers, text)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request(method, path, body, {"Connection": "close", **(headers or {})})
        response = conn.getresponse()
        return response.status, response, response.read().decode()
    finally:
        conn.close()


@pytest.fixture
def redis_db():
    """An empty Redis database for one test; a missing Redis fails in CI."""
    import redis

    client = redis.Redis.from_url(REDIS_URL)
    try:
        client.ping()
    except redis.ConnectionError:
        if IN_CI:
            pytest.fail(f"Redis is not reachable at {REDIS_URL}: CI needs it")
        pytest.skip(f"Redis is not reachable at {REDIS_URL}")
    client.flushdb()
    yield client
    client.flushdb()
    client.close()


@pytest.fixture
def serve(transactional_db, tmp_path):
    """Start `bellwether serve --workers 2` on the test database; return a function that starts it with CACHE_URL."""
    servers: list[subprocess.Popen] = []
    caches["counters"].clear()

    def start(cache_url: str = "") -> int:
        port = free_port_pair()
        env = {**os.environ, "DATABASE_URL": database_url(), "DJANGO_SETTINGS_MODULE": "bellwether.settings.base", "CACHE_URL": cache_url}
        env.pop("LIVE_URL", None)
        log = tmp_path / "serve.log"
        server = subprocess.Popen(
            [sys.executable, "-m", "bellwether.cli", "serve", "--port", str(port), "--workers", "2"],
            cwd=ROOT, env=env, stdout=log.open("w"), stderr=subprocess.STDOUT,
        )
        servers.append(server)
        wait_until_up(server, log=log, checks={"/health/ 200": lambda: health_ok(port, timeout_s=30)}, timeout_s=90)
        return port

    yield start
    for server in servers:
        stop(server, timeout_s=20)
    caches["counters"].clear()


def _both_workers_answer(port: int) -> bool:
    """Ask for one new page 20 times on fresh connections: each worker's page cache misses once, so 2 misses = 2 workers."""
    path = f"/authors/?page={uuid.uuid4().int % 10**9}"
    misses = sum(_request(port, "GET", path)[1].getheader("X-Page-Cache") == "miss" for _ in range(20))
    return misses == 2


def _log_in(port: int, username: str, password: str) -> str:
    """Try to log in on fresh connections; return "in", "wrong" or "locked"."""
    status, response, page = _request(port, "GET", "/accounts/login/")
    assert status == 200
    csrf = re.search(r"csrftoken=([^;]+)", response.getheader("Set-Cookie", "")).group(1)
    body = urlencode({"login": username, "password": password, "csrfmiddlewaretoken": CSRF_INPUT.search(page).group(1)})
    headers = {"Content-Type": "application/x-www-form-urlencoded", "Cookie": f"csrftoken={csrf}"}
    status, _, page = _request(port, "POST", "/accounts/login/", body, headers)
    if status == 302:
        return "in"
    assert status == 200, page[:500]
    if LOCKED in page:
        return "locked"
    assert WRONG in page, page[:2000]
    return "wrong"


def _guesses_let_through(port: int, username: str) -> list[str]:
    """Send 12 wrong passwords, then the right one; return the 13 outcomes."""
    outcomes = [_log_in(port, username, f"wrong-guess-{n}") for n in range(12)]
    return [*outcomes, _log_in(port, username, PASSWORD)]


@pytest.mark.parametrize("backend", ["database", "redis"])
def test_two_workers_allow_five_guesses_between_them(serve, backend, request):
    """With 2 workers taking the attempts, only 5 wrong passwords are checked; the rest, and then the right one, are refused.

    With counts kept per process the same attempts got 5 per worker (about 10).
    """
    cache_url = ""
    if backend == "redis":
        redis_db = request.getfixturevalue("redis_db")
        cache_url = REDIS_URL
    username = f"guess-{uuid.uuid4().hex[:8]}"
    create_user(username=username, password=PASSWORD)
    port = serve(cache_url)
    assert _both_workers_answer(port), "fresh connections should reach both workers"
    outcomes = _guesses_let_through(port, username)
    assert outcomes == ["wrong"] * 5 + ["locked"] * 8
    with connection.cursor() as cursor:
        cursor.execute("SELECT COUNT(*) FROM bellwether_counters WHERE cache_key LIKE %s", ["%login_failed%"])
        rows_in_database = cursor.fetchone()[0]
    if backend == "redis":
        assert rows_in_database == 0
        assert any(b"login_failed" in key for key in redis_db.keys("bellwether:*"))
    else:
        assert rows_in_database > 0


# --- page traffic --------------------------------------------------------------------------------


@pytest.mark.django_db
def test_a_lockout_survives_20000_distinct_page_requests(client, settings):
    """20,000 distinct public URLs fill and evict the page cache, and the locked username stays locked.

    The requests go through the page cache middleware (with a trivial view, to
    take seconds rather than minutes); the old shared cache lost the lockout.
    """
    settings.PAGE_CACHE_TTL_S = 300
    create_user(username="alice", password=PASSWORD)
    for attempt in range(5):
        assert WRONG in client.post("/accounts/login/", {"login": "alice", "password": f"wrong-{attempt}"}).content.decode()
    assert LOCKED in client.post("/accounts/login/", {"login": "alice", "password": PASSWORD}).content.decode()

    pages = PublicPageCacheMiddleware(lambda request: HttpResponse("a page"))
    factory = RequestFactory()
    for n in range(20_000):
        pages(factory.get("/feed/rss/", {"page": n}))
    # The flood did evict pages: the first one is rendered again.
    assert pages(factory.get("/feed/rss/", {"page": 0}))["X-Page-Cache"] == "miss"

    refused = client.post("/accounts/login/", {"login": "alice", "password": PASSWORD})
    assert LOCKED in refused.content.decode()
    assert client.session.get("_auth_user_id") is None
