"""Rate limits: the API's 429s, and the counters cache they count in (database by default, Redis with CACHE_URL)."""

from __future__ import annotations

import copy
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from django.core.cache import caches
from django.db import connection

from bellwether import ratelimit
from bellwether.accounts.services import create_token, create_user
from bellwether.ledger.models import Account
from bellwether.markets.models import Trade
from tests.live.conftest import new_market

ROOT = Path(__file__).resolve().parents[2]
API = "/api/v1"
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
# A Redis database of its own per test run, so parallel runs do not share counters.
REDIS_URL = f"redis://127.0.0.1:6379/{1 + os.getpid() % 15}"
START = 1_800_000_000.0  # a whole hour, so every window starts here


@pytest.fixture
def clock(monkeypatch):
    """Freeze the counters' clock; move it with ``clock.now += seconds``."""

    class Clock:
        now = START

    monkeypatch.setattr(ratelimit, "clock", lambda: Clock.now)
    return Clock


@pytest.fixture
def limits(settings):
    """Low API limits for these tests: 3 per credential, 5 per IP address, 2 trades per user, each a minute."""
    settings.API_RATE_LIMIT_PER_MIN = 3
    settings.API_IP_RATE_LIMIT_PER_MIN = 5
    settings.API_TRADE_RATE_LIMIT_PER_MIN = 2
    return settings


def bearer(token: str, ip: str = "127.0.0.1") -> dict:
    return {"HTTP_AUTHORIZATION": f"Bearer {token}", "REMOTE_ADDR": ip}


def refused_body(message: str) -> dict:
    return {"error": {"code": "rate_limited", "message": message}}


# --- the API --------------------------------------------------------------------------------


@pytest.mark.django_db
def test_a_token_past_its_limit_gets_429_with_retry_after_and_the_error_body(client, limits, clock):
    """The 4th request of a token within a minute is refused with 429, Retry-After and the API's error body."""
    ana = create_user(username="ana")
    _, token = create_token(user=ana)
    clock.now += 15
    for _ in range(3):
        assert client.get(f"{API}/me", **bearer(token)).status_code == 200
    refused = client.get(f"{API}/me", **bearer(token))
    assert refused.status_code == 429
    assert refused["Retry-After"] == "45"
    assert refused["Content-Type"] == "application/json"
    assert refused.json() == refused_body("Too many requests with this token: at most 3 a minute. Try again in 45 seconds.")
    clock.now += 45  # the next minute
    assert client.get(f"{API}/me", **bearer(token)).status_code == 200


@pytest.mark.django_db
def test_tokens_and_addresses_are_counted_apart(client, limits, clock):
    """One token's limit does not touch another token's; the address's limit covers every request from it."""
    _, first = create_token(user=create_user(username="ana"))
    _, second = create_token(user=create_user(username="bo"))
    for _ in range(3):
        assert client.get(f"{API}/me", **bearer(first)).status_code == 200
    assert client.get(f"{API}/me", **bearer(first)).status_code == 429  # 4th from 127.0.0.1
    assert client.get(f"{API}/me", **bearer(second)).status_code == 200  # 5th from 127.0.0.1
    from_address = client.get(f"{API}/me", **bearer(second))  # 6th from 127.0.0.1
    assert from_address.status_code == 429
    assert from_address.json() == refused_body("Too many requests from your address: at most 5 a minute. Try again in 1 minute.")
    # Elsewhere, the second token is fine; the first is still over its own limit wherever it comes from.
    assert client.get(f"{API}/me", **bearer(second, ip="192.0.2.10")).status_code == 200
    elsewhere = client.get(f"{API}/me", **bearer(first, ip="192.0.2.10"))
    assert elsewhere.status_code == 429
    assert elsewhere.json()["error"]["message"].startswith("Too many requests with this token: at most 3 a minute.")


@pytest.mark.django_db
def test_anonymous_requests_count_against_their_address(client, limits, clock):
    """Without a credential only the address counts: the 6th anonymous request from one address is refused, another address is not."""
    statuses = [client.get(f"{API}/markets", REMOTE_ADDR="198.51.100.1").status_code for _ in range(6)]
    assert statuses == [200] * 5 + [429]
    assert client.get(f"{API}/markets", REMOTE_ADDR="198.51.100.2").status_code == 200
    # Made-up tokens still count against the address, so rotating them gains nothing.
    assert client.get(f"{API}/markets", **bearer("bw_made-up", ip="198.51.100.1")).status_code == 429


@pytest.mark.django_db
def test_ipv6_clients_are_counted_by_their_64_bit_prefix(client, limits, clock):
    """Addresses of one /64 share a count, as one subscriber holds the whole /64."""
    statuses = [client.get(f"{API}/markets", REMOTE_ADDR=f"2001:db8:1:2::{n}").status_code for n in range(1, 7)]
    assert statuses == [200] * 5 + [429]
    assert client.get(f"{API}/markets", REMOTE_ADDR="2001:db8:1:3::1").status_code == 200


@pytest.mark.django_db
def test_a_session_counts_as_a_credential(client, limits, clock):
    """Browser calls to the API count against their session: the 4th in a minute is refused."""
    client.force_login(create_user(username="ana"))
    statuses = [client.get(f"{API}/me").status_code for _ in range(4)]
    assert statuses == [200, 200, 200, 429]
    assert client.get(f"{API}/me").json()["error"]["message"].startswith("Too many requests with this session: at most 3 a minute.")


@pytest.mark.django_db
def test_trades_past_the_per_user_limit_are_refused_and_change_nothing(client, limits, clock):
    """The 3rd trade of a user in a minute is a 429 and no trade, whichever of their tokens sends it; another user trades on."""
    limits.API_RATE_LIMIT_PER_MIN = 100
    limits.API_IP_RATE_LIMIT_PER_MIN = 100
    market = new_market()
    ana = create_user(username="ana")
    _, token = create_token(user=ana)
    _, other_token = create_token(user=ana, name="second")
    body = {"outcome": "yes", "side": "buy", "amount": "5"}
    url = f"{API}/markets/{market.slug}/trades"
    for _ in range(2):
        assert client.post(url, body, content_type="application/json", **bearer(token)).status_code == 201
    balance = Account.objects.get(user=ana).balance_micro
    for sender in (token, other_token):
        refused = client.post(url, body, content_type="application/json", **bearer(sender))
        assert refused.status_code == 429
        assert refused["Retry-After"] == "60"
        assert refused.json() == refused_body("Too many trades: at most 2 a minute. Try again in 1 minute.")
    assert Trade.objects.filter(user=ana).count() == 2
    assert Account.objects.get(user=ana).balance_micro == balance
    # Reads are not trades; another user's trades are their own.
    assert client.get(f"{API}/me", **bearer(token)).status_code == 200
    _, bo_token = create_token(user=create_user(username="bo"))
    assert client.post(url, body, content_type="application/json", **bearer(bo_token)).status_code == 201
    clock.now += 60
    assert client.post(url, body, content_type="application/json", **bearer(token)).status_code == 201


@pytest.mark.django_db
def test_pages_are_not_api_limited(client, limits, clock):
    """The limits cover /api/ only: pages stay reachable from an address the API refuses."""
    for _ in range(6):
        client.get(f"{API}/markets")
    assert client.get(f"{API}/markets").status_code == 429
    assert client.get("/health/").status_code == 200


def test_the_limits_are_read_from_the_environment():
    """API_RATE_LIMIT_PER_MIN, API_IP_RATE_LIMIT_PER_MIN, API_TRADE_RATE_LIMIT_PER_MIN and TRUSTED_PROXY_COUNT come from the environment, with defaults."""
    code = (
        "from bellwether.settings import base as s; "
        "print(s.API_RATE_LIMIT_PER_MIN, s.API_IP_RATE_LIMIT_PER_MIN, s.API_TRADE_RATE_LIMIT_PER_MIN, s.ALLAUTH_TRUSTED_PROXY_COUNT, "
        "s.HIGHLIGHTS_CONFIRM_RESEND_S, s.HIGHLIGHTS_CONFIRM_RESEND_MAX_S, s.HIGHLIGHTS_SIGNUPS_PER_IP_PER_HOUR)"
    )
    names = [
        "API_RATE_LIMIT_PER_MIN", "API_IP_RATE_LIMIT_PER_MIN", "API_TRADE_RATE_LIMIT_PER_MIN", "TRUSTED_PROXY_COUNT",
        "HIGHLIGHTS_CONFIRM_RESEND_S", "HIGHLIGHTS_CONFIRM_RESEND_MAX_S", "HIGHLIGHTS_SIGNUPS_PER_IP_PER_HOUR",
    ]
    defaults = {name: value for name, value in os.environ.items() if name not in names}
    assert _settings_output(code, defaults).split() == ["600", "600", "60", "0", "60", "86400", "20"]
    chosen = {**defaults, **dict(zip(names, ["100", "200", "10", "1", "30", "3600", "5"], strict=True))}
    assert _settings_output(code, chosen).split() == ["100", "200", "10", "1", "30", "3600", "5"]


def _settings_output(code: str, env: dict) -> str:
    return subprocess.run([sys.executable, "-c", code], env=env, cwd=ROOT, capture_output=True, text=True, check=True).stdout


# --- the counters cache -----------------------------------------------------------------------


def test_cache_url_chooses_the_counters_backend():
    """No CACHE_URL: the database (CounterCache); redis://: Django's Redis backend; anything else is refused at start."""
    code = "from bellwether.settings import base as s; c = s.CACHES['counters']; print(c['BACKEND'], c['LOCATION'])"
    env = {name: value for name, value in os.environ.items() if name != "CACHE_URL"}
    assert _settings_output(code, env).split() == ["bellwether.ratelimit.CounterCache", "bellwether_counters"]
    assert _settings_output(code, {**env, "CACHE_URL": REDIS_URL}).split() == ["django.core.cache.backends.redis.RedisCache", REDIS_URL]
    bad = subprocess.run([sys.executable, "-c", code], env={**env, "CACHE_URL": "memcached://127.0.0.1"}, cwd=ROOT, capture_output=True, text=True)
    assert bad.returncode == 1
    assert "CACHE_URL must be empty (the database) or a redis://, rediss:// or unix:// URL." in bad.stderr


@pytest.mark.django_db
def test_the_pages_and_the_counters_are_separate_caches():
    """Pages go to a per-process cache; counters (and allauth's) to the shared one."""
    from allauth.core.internal import ratelimit as allauth_ratelimit

    from bellwether.news.middleware import page_cache

    assert caches["pages"].__class__.__name__ == "LocMemCache"
    assert isinstance(caches["counters"], ratelimit.CounterCache)
    assert page_cache._alias == "pages"
    assert allauth_ratelimit.cache is ratelimit.counters


@pytest.mark.django_db
def test_culling_never_drops_a_live_counter(settings):
    """Past MAX_ENTRIES only expired rows are deleted: 50 live counters survive in a cache of MAX_ENTRIES 10."""
    caches_setting = copy.deepcopy(settings.CACHES)
    caches_setting["counters"]["OPTIONS"] = {"MAX_ENTRIES": 10}
    settings.CACHES = caches_setting
    counters = caches["counters"]
    counters.clear()
    for n in range(5):
        counters.set(f"expired-{n}", n, timeout=0)  # stored already expired
    for n in range(50):
        assert ratelimit.hit(f"live-{n}", limit=1, window_s=3600).allowed
    assert all(not ratelimit.hit(f"live-{n}", limit=1, window_s=3600).allowed for n in range(50))
    counters.set("one-more", 1, timeout=3600)  # a set past MAX_ENTRIES culls
    with connection.cursor() as cursor:
        cursor.execute("SELECT cache_key FROM bellwether_counters")
        keys = {row[0] for row in cursor.fetchall()}
    assert not any("expired-" in key for key in keys)
    assert sum(":rl:live-" in key for key in keys) == 50


@pytest.mark.django_db
def test_a_database_error_is_raised_not_taken_for_a_taken_key():
    """add() answers False only when another process holds the key; a broken table raises instead of refusing every event."""
    from django.db import DatabaseError

    broken = ratelimit.CounterCache("no_such_counters_table", {})
    with pytest.raises(DatabaseError):
        broken.add("a-key", 1, 60)


@pytest.mark.django_db(transaction=True)
def test_counting_is_atomic_across_threads():
    """Four threads each count 25 events on one key: 100 in all, and exactly the limit's 60 are allowed."""
    caches["counters"].clear()
    allowed: list[bool] = []
    lock = threading.Lock()

    def count():
        try:
            for _ in range(25):
                decision = ratelimit.hit("race", limit=60, window_s=3600)
                with lock:
                    allowed.append(decision.allowed)
        finally:
            connection.close()

    threads = [threading.Thread(target=count) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert (len(allowed), allowed.count(True)) == (100, 60)
    caches["counters"].clear()


def test_a_backoff_lets_one_of_many_simultaneous_events_through(transactional_db, clock):
    """Eight threads ask for the same address at once: one is allowed, seven are told to wait 60 s."""
    caches["counters"].clear()
    decisions: list[ratelimit.Decision] = []
    start = threading.Barrier(8)

    def take():
        try:
            start.wait()
            decisions.append(ratelimit.take_backoff("inbox", first_wait_s=60, max_wait_s=3600))
        finally:
            connection.close()

    threads = [threading.Thread(target=take) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(decisions, key=lambda d: d.allowed) == [ratelimit.Decision(False, 60)] * 7 + [ratelimit.Decision(True)]
    caches["counters"].clear()


# --- Redis ------------------------------------------------------------------------------------


@pytest.fixture
def redis_counters(settings):
    """Point the counters at Redis (CACHE_URL=redis://...) for one test; a missing Redis fails in CI."""
    import redis

    client = redis.Redis.from_url(REDIS_URL)
    try:
        client.ping()
    except redis.ConnectionError:
        if IN_CI:
            pytest.fail(f"Redis is not reachable at {REDIS_URL}: CI needs it")
        pytest.skip(f"Redis is not reachable at {REDIS_URL}")
    client.flushdb()
    caches_setting = copy.deepcopy(settings.CACHES)
    caches_setting["counters"] = {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": REDIS_URL, "KEY_PREFIX": "bellwether"}
    settings.CACHES = caches_setting
    yield client
    client.flushdb()
    client.close()


@pytest.mark.django_db
def test_with_redis_the_counters_live_in_redis_and_every_process_shares_them(redis_counters, clock):
    """Counts made here and in another process add up in Redis, and a lockout key lands there, not in the database."""
    assert caches["counters"].__class__.__name__ == "RedisCache"
    for _ in range(3):
        assert ratelimit.hit("shared", limit=4, window_s=3600).allowed
    window = int(START // 3600)
    key = f"bellwether:1:rl:shared:3600:{window}"
    assert int(redis_counters.get(key)) == 3
    code = (
        "import django, sys; django.setup(); from bellwether import ratelimit; "
        f"ratelimit.clock = lambda: {START}; "
        "print([ratelimit.hit('shared', limit=4, window_s=3600).allowed for _ in range(2)])"
    )
    env = {**os.environ, "CACHE_URL": REDIS_URL, "DJANGO_SETTINGS_MODULE": "bellwether.settings.base"}
    other = subprocess.run([sys.executable, "-c", code], env=env, cwd=ROOT, capture_output=True, text=True, check=True)
    assert other.stdout.split("\n")[0] == "[True, False]"
    assert int(redis_counters.get(key)) == 5
    assert not ratelimit.hit("shared", limit=4, window_s=3600).allowed
    with connection.cursor() as cursor:
        cursor.execute("SELECT COUNT(*) FROM bellwether_counters WHERE cache_key LIKE %s", ["%shared%"])
        assert cursor.fetchone()[0] == 0


@pytest.mark.django_db
def test_with_redis_the_api_limit_holds(client, redis_counters, limits, clock):
    """The API's 429 works the same with the counters in Redis."""
    statuses = [client.get(f"{API}/markets").status_code for _ in range(6)]
    assert statuses == [200] * 5 + [429]
    assert any(b":rl:api:ip:127.0.0.1:" in key for key in redis_counters.keys("bellwether:*"))
