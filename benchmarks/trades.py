#!/usr/bin/env python
"""Measure trades/s and latency in process and over HTTP against a raw-SQL baseline.

One run, against one database (SQLite in ``var/bench-trades/`` by default, or
the PostgreSQL database named in ``--database-url``), measures:

- a raw baseline: ``--clients`` processes, each running TPC-B-like
  transactions (three UPDATEs and an INSERT on ``bench_*`` tables in the same
  database) straight through sqlite3 or psycopg;
- trades in process: ``--clients`` threads calling
  ``markets.services.place_trade``, on one hot market and spread over
  ``--markets`` markets;
- the LMSR math alone, against the time of one trade, and (with
  ``--profile``) where a trade's time goes;
- trades over HTTP: ``bellwether serve --workers 2`` (granian, WSGI, as
  production runs it; see docs/decisions/0001-serve-pages-over-wsgi.md), with
  ``--clients`` keep-alive connections POSTing ``/api/v1/markets/{slug}/trades``
  as fast as answers come (the peak), then open-loop at half that rate.

Every figure is printed as a fraction of the baseline, with the issue's
targets marked met or not. Afterwards ``bellwether audit`` must pass and the
number of new Trade rows must equal the number of trades that succeeded.

Run ``python benchmarks/trades.py --help`` for the options; the results are
recorded in docs/performance.md.
"""

from __future__ import annotations

import argparse
import array
import asyncio
import contextlib
import datetime as dt
import http.client
import json
import math
import multiprocessing
import os
import random
import signal
import subprocess
import sys
import threading
import time
import urllib.parse
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from common import (
    LOOPBACK,
    REPO,
    base_env,
    bellwether_command,
    database_label,
    format_ms,
    format_ratio,
    load_average,
    prepare_database,
    running_server,
    sqlite_path,
    start_django,
    warn_if_busy,
)

DEFAULT_VAR_DIR = REPO / "var" / "bench-trades"
MICRO = 1_000_000
LIQUIDITY_B_CREDITS = 1_000
# Enough that no trader runs short even if every round trip loses to slippage.
TRADER_BALANCE_CREDITS = 1_000_000
TRADER_PREFIX = "bench-trader-"
HOT_SLUG = "bench-hot"
SPREAD_PREFIX = "bench-spread-"
# Buys are 1 to 20 shares; on b = 1,000 credits one moves the price by at most ~0.5 points.
MIN_SHARES_MICRO = 1 * MICRO
MAX_SHARES_MICRO = 20 * MICRO
# The baseline's tables, sized like pgbench at scale 10.
BASELINE_BRANCHES = 10
BASELINE_TELLERS = 100
BASELINE_ACCOUNTS = 100_000
REQUEST_TIMEOUT_S = 30.0
# The targets.
TARGET_HTTP_PG_RATIO = 0.25
TARGET_HOT_VS_SPREAD = 0.5
TARGET_P99_OVER_P50 = 5.0
TARGET_LMSR_SHARE = 0.01
PEER_RATE, PEER_P95_MS = 100.0, 66.0  # an open-source peer's bets/s and p95 on 8 vCPUs
TARGET_RATE = 10 * PEER_RATE

if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))


# ---------------------------------------------------------------------------
# Options


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Return the command-line options."""
    parser = argparse.ArgumentParser(
        prog="benchmarks/trades.py",
        description=(
            "Measure trades/s and p50/p99 latency of Bellwether's trade path: in process "
            "(threads calling markets.services.place_trade) and over HTTP (`bellwether serve "
            "--workers N`: granian, WSGI, as production runs it; --clients keep-alive "
            "connections POSTing /api/v1/markets/{slug}/trades), on one hot market and spread "
            "over --markets markets, then over HTTP again open-loop at half the peak rate. The "
            "same run measures a raw-SQL baseline (--clients processes running TPC-B-like "
            "transactions, three UPDATEs and an INSERT, through sqlite3 or psycopg on tables in "
            "the same database) and prints every rate as a fraction of it, the LMSR math's share "
            "of a trade's time, and the issue's targets, met or not. Afterwards `bellwether "
            "audit` must pass and the new Trade rows must equal the trades that succeeded; the "
            "script exits 1 when either check fails, 0 otherwise (missed targets included). At "
            "the defaults a run takes about two minutes."
        ),
        epilog="Results and their interpretation: docs/performance.md (section Trades).",
    )
    parser.add_argument(
        "--database-url",
        metavar="URL",
        default="",
        help=(
            "PostgreSQL URL of a dedicated benchmark database, e.g. "
            "postgres://postgres@127.0.0.1:5432/bellwether_bench_trades; it is created (through "
            "the server's 'postgres' database) and migrated when missing. Default: SQLite in --var-dir."
        ),
    )
    parser.add_argument(
        "--var-dir",
        metavar="DIR",
        type=Path,
        default=DEFAULT_VAR_DIR,
        help=(
            "BELLWETHER_VAR_DIR for the benchmark: holds the SQLite database and the server log "
            f"(default: {DEFAULT_VAR_DIR.relative_to(REPO)})"
        ),
    )
    parser.add_argument(
        "--rebuild",
        action="store_true",
        help=(
            "delete the benchmark database first (the SQLite file in --var-dir, or the PostgreSQL "
            "database, whose name must contain 'bench') and build it afresh; without it the "
            "traders, markets and baseline tables of an earlier run are reused"
        ),
    )
    parser.add_argument(
        "--clients",
        metavar="N",
        type=int,
        default=8,
        help=(
            "concurrent clients in every scenario: baseline processes, in-process threads and HTTP "
            "connections, each with a trader of its own (default: 8)"
        ),
    )
    parser.add_argument(
        "--duration",
        metavar="S",
        type=float,
        default=10.0,
        help="seconds measured per scenario (default: 10)",
    )
    parser.add_argument(
        "--warmup",
        metavar="S",
        type=float,
        default=2.0,
        help=(
            "seconds of unrecorded trading before each closed-loop scenario, to open connections "
            "and fill caches (default: 2); its trades still count in the Trade-row check"
        ),
    )
    parser.add_argument(
        "--workers",
        metavar="N",
        type=int,
        default=2,
        help="server worker processes (bellwether serve --workers; default: 2, one per core here)",
    )
    parser.add_argument(
        "--markets",
        metavar="N",
        type=int,
        default=100,
        help="markets the spread scenarios trade on, chosen uniformly per buy (default: 100)",
    )
    parser.add_argument(
        "--seed", metavar="N", type=int, default=1, help="seeds the clients' choice of markets, outcomes and sizes (default: 1)"
    )
    parser.add_argument(
        "--profile",
        action="store_true",
        help=(
            "also run 300 trades through services.place_trade and 300 through the API (Django's test "
            "client, no socket) under cProfile and print where the time goes (5-10 s more)"
        ),
    )
    parser.add_argument("--no-in-process", action="store_true", help="skip the in-process scenarios")
    parser.add_argument("--no-http", action="store_true", help="skip the server and the HTTP scenarios")
    args = parser.parse_args(argv)
    for name in ("clients", "workers", "markets"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be at least 1")
    if args.clients > 64:
        parser.error("--clients must be at most 64 (the server's pool and PostgreSQL's max_connections)")
    if args.duration <= 0 or args.warmup < 0 or args.duration > 600:
        parser.error("--duration must be positive (at most 600) and --warmup not negative")
    if args.database_url and not args.database_url.startswith(("postgres://", "postgresql://")):
        parser.error("--database-url must be a postgres:// URL (SQLite is the default)")
    if args.database_url:
        host = urllib.parse.urlsplit(args.database_url).hostname
        if host not in (LOOPBACK, "localhost"):
            parser.error("--database-url must point at 127.0.0.1: the benchmark loads only this machine")
    args.var_dir = args.var_dir.resolve()
    return args


# ---------------------------------------------------------------------------
# Environment and database


def benchmark_env(args: argparse.Namespace) -> dict[str, str]:
    """Return the environment for this process, the server and `bellwether audit`."""
    env = base_env(args, unset=("DATABASE_POOL_SIZE",))
    env["STARTING_BALANCE_CREDITS"] = str(TRADER_BALANCE_CREDITS)
    # The API's rate limits count every request as in production but never
    # refuse the load (every client comes from 127.0.0.1); set them to 0 in
    # the environment to measure the trade path without the counting.
    for name in ("API_IP_RATE_LIMIT_PER_MIN", "API_RATE_LIMIT_PER_MIN", "API_TRADE_RATE_LIMIT_PER_MIN"):
        env.setdefault(name, str(10**9))
    return env


def set_up_django(args: argparse.Namespace) -> float:
    """Point Django at the benchmark database, start it and migrate; return the seconds migrate took."""
    env = benchmark_env(args)
    # Only this process: the in-process threads each hold a pooled connection,
    # and the main thread one more for counting. The server keeps the default.
    env["DATABASE_POOL_SIZE"] = str(max(8, args.clients + 1))
    return start_django(env)


@dataclass
class Trader:
    """A benchmark user with a fresh API token."""

    user: object
    token: str


def prepare_traders(count: int) -> list[Trader]:
    """Return ``count`` traders, creating the missing ones and topping up low balances.

    Each gets a new token: only a token's hash is stored, so an earlier run's
    token cannot be reused.
    """
    from django.contrib.auth import get_user_model
    from django.db import transaction

    from bellwether.accounts.services import create_token, create_user
    from bellwether.ledger.models import Account, Transfer
    from bellwether.ledger.services import get_treasury, lock_accounts, open_user_account, post_transfer

    User = get_user_model()
    target = TRADER_BALANCE_CREDITS * MICRO
    traders = []
    for index in range(count):
        username = f"{TRADER_PREFIX}{index:03d}"
        user = User.objects.filter(username=username).first() or create_user(username=username)
        account = open_user_account(user=user)
        if account.balance_micro < target // 2:
            with transaction.atomic():
                treasury = get_treasury()
                locked = lock_accounts(ids=[treasury.pk, account.pk])
                post_transfer(
                    debit=locked[treasury.pk], credit=locked[account.pk],
                    amount_micro=target - locked[account.pk].balance_micro, kind=Transfer.Kind.GRANT,
                    reference=f"user:{user.pk}", memo="Benchmark top-up",
                )
        _, raw = create_token(user=user, name="benchmarks/trades.py")
        traders.append(Trader(user=user, token=raw))
    short = Account.objects.filter(user__in=[t.user for t in traders], balance_micro__lt=target // 2).count()
    if short:
        raise RuntimeError(f"{short} traders still hold less than half of {TRADER_BALANCE_CREDITS:,} credits")
    return traders


def prepare_markets(count: int) -> tuple[str, list[str]]:
    """Return the hot market's slug and ``count`` spread markets' slugs, creating missing ones."""
    from django.utils import timezone

    from bellwether.markets import services
    from bellwether.markets.models import Market

    close_at = timezone.now() + dt.timedelta(days=3650)
    wanted = [(HOT_SLUG, "Benchmark: will the hot market close higher?")] + [
        (f"{SPREAD_PREFIX}{i:03d}", f"Benchmark: will spread market {i} close higher?") for i in range(count)
    ]
    have = set(Market.objects.filter(slug__startswith="bench-").values_list("slug", flat=True))
    for slug, question in wanted:
        if slug not in have:
            services.create_market(
                question=question, liquidity_b_micro=LIQUIDITY_B_CREDITS * MICRO, close_at=close_at, slug=slug
            )
    slugs = [slug for slug, _ in wanted]
    open_count = Market.objects.filter(slug__in=slugs, status=Market.Status.OPEN, close_at__gt=timezone.now()).count()
    if open_count != len(slugs):
        sys.exit("some benchmark markets are no longer open; run again with --rebuild")
    return slugs[0], slugs[1:]


def trade_count() -> int:
    """Return the number of Trade rows."""
    from bellwether.markets.models import Trade

    return Trade.objects.count()


# ---------------------------------------------------------------------------
# Statistics


@dataclass
class Measurement:
    """One scenario's figures."""

    key: str  # e.g. "http-hot-peak", for the target checks
    label: str
    rate: float  # successful operations per second
    latencies_s: list[float]
    ok: int
    errors: Counter = field(default_factory=Counter)
    server_cpu_ms: float | None = None  # per successful trade: the server's processes, or this one in process
    db_cpu_ms: float | None = None  # per successful trade, the PostgreSQL server's processes
    client_cpu_ms: float | None = None  # per request, the load generator (per transaction: the baseline's clients)

    def __post_init__(self) -> None:
        self.latencies_s = sorted(self.latencies_s)

    def percentile_ms(self, q: float) -> float | None:
        """Return the ``q`` quantile of the latencies in milliseconds (nearest rank)."""
        if not self.latencies_s:
            return None
        rank = max(0, math.ceil(q * len(self.latencies_s)) - 1)
        return self.latencies_s[rank] * 1000

    @property
    def error_count(self) -> int:
        return sum(self.errors.values())


# ---------------------------------------------------------------------------
# CPU accounting from /proc (Linux only; elsewhere the columns stay empty)


def _proc_stats() -> Iterator[tuple[int, str, list[str]]]:
    if not os.path.isdir("/proc"):
        return
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat") as stat:
                text = stat.read()
        except OSError:
            continue
        # The command name may contain spaces; the fields after it may not.
        head, tail = text.rsplit(")", 1)
        yield int(entry.name), head.split("(", 1)[1], tail.split()


def cpu_seconds(*, root: int | None = None, command: str | None = None) -> float | None:
    """Return CPU seconds used so far by the process tree under ``root`` (itself included) or by processes named ``command``.

    A process's own time plus that of its children that have exited: a
    PostgreSQL backend that ends during the window moves its time into the
    postmaster's children's time instead of vanishing from the sum. The tree
    is followed by parent ids, since `bellwether serve` starts each server
    in a process group (and session) of its own.
    """
    if not os.path.isdir("/proc"):
        return None
    parents: dict[int, int] = {}
    times: dict[int, int] = {}
    for pid, name, fields in _proc_stats():
        if command is not None and name != command:
            continue
        parents[pid] = int(fields[1])
        times[pid] = sum(int(f) for f in fields[11:15])  # utime, stime, cutime, cstime
    if root is not None:
        tree = {root}
        grew = True
        while grew:
            grown = {pid for pid, parent in parents.items() if parent in tree} | tree
            grew, tree = len(grown) > len(tree), grown
        times = {pid: ticks for pid, ticks in times.items() if pid in tree}
    return sum(times.values()) / os.sysconf("SC_CLK_TCK")


class CpuMeter:
    """Measure the CPU time of the server's process tree and of PostgreSQL across a block."""

    def __init__(self, *, root: int | None, postgres: bool) -> None:
        self.root, self.postgres = root, postgres
        self.server_s: float | None = None
        self.db_s: float | None = None

    def __enter__(self) -> CpuMeter:
        self._server0 = cpu_seconds(root=self.root) if self.root else None
        self._db0 = cpu_seconds(command="postgres") if self.postgres else None
        return self

    def __exit__(self, *exc) -> None:
        if self._server0 is not None:
            self.server_s = cpu_seconds(root=self.root) - self._server0
        if self._db0 is not None:
            self.db_s = cpu_seconds(command="postgres") - self._db0

    def per(self, count: int) -> tuple[float | None, float | None]:
        """Return (server, database) CPU milliseconds per ``count`` operations."""
        if not count:
            return None, None
        return (
            None if self.server_s is None else self.server_s * 1000 / count,
            None if self.db_s is None else self.db_s * 1000 / count,
        )


# ---------------------------------------------------------------------------
# Raw baseline: TPC-B-like transactions straight through the driver


def create_baseline_tables(connection) -> None:
    """Create and fill the ``bench_*`` tables when missing; empty the history table."""
    vendor = connection.vendor
    tables = connection.introspection.table_names()
    with connection.cursor() as cursor:
        if "bench_history" in tables:
            cursor.execute("DELETE FROM bench_history" if vendor == "sqlite" else "TRUNCATE bench_history")
            return
        serial = "INTEGER PRIMARY KEY AUTOINCREMENT" if vendor == "sqlite" else "BIGSERIAL PRIMARY KEY"
        for name in ("bench_branches", "bench_tellers", "bench_accounts"):
            cursor.execute(f"CREATE TABLE {name} (id INTEGER PRIMARY KEY, balance BIGINT NOT NULL DEFAULT 0, filler CHAR(84))")
        cursor.execute(
            f"CREATE TABLE bench_history (id {serial}, teller_id INTEGER NOT NULL, branch_id INTEGER NOT NULL, "
            "account_id INTEGER NOT NULL, delta BIGINT NOT NULL, created_at TIMESTAMP NOT NULL, filler CHAR(22))"
        )
        for name, rows in (
            ("bench_branches", BASELINE_BRANCHES),
            ("bench_tellers", BASELINE_TELLERS),
            ("bench_accounts", BASELINE_ACCOUNTS),
        ):
            if vendor == "sqlite":
                cursor.execute(
                    f"WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < {rows}) "
                    f"INSERT INTO {name} (id, balance) SELECT i, 0 FROM n"
                )
            else:
                cursor.execute(f"INSERT INTO {name} (id, balance) SELECT i, 0 FROM generate_series(1, {rows}) AS i")
        if vendor == "postgresql":
            cursor.execute("ANALYZE bench_branches, bench_tellers, bench_accounts, bench_history")


def _baseline_connect(target: dict):
    if target["kind"] == "sqlite":
        import sqlite3

        # The same settings as the application's connections (bellwether/settings/env.py).
        conn = sqlite3.connect(target["path"], isolation_level=None, timeout=20)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.execute("PRAGMA busy_timeout=20000")
        return conn
    import psycopg

    return psycopg.connect(target["url"], connect_timeout=10)


def baseline_worker(target: dict, slot: int, start_at: float, duration_s: float, seed: int) -> tuple[int, bytes, dict, float]:
    """Run TPC-B-like transactions from ``start_at`` for ``duration_s``; return (count, latencies, errors, CPU s).

    Runs in a process of its own, so the baseline is not held back by this
    script's GIL. The latencies come back as packed doubles.
    """
    rng = random.Random(seed * 1000 + slot)
    conn = _baseline_connect(target)
    sqlite = target["kind"] == "sqlite"
    mark = "?" if sqlite else "%s"
    update = "UPDATE {} SET balance = balance + {m} WHERE id = {m}"
    statements = [update.format(t, m=mark) for t in ("bench_accounts", "bench_tellers", "bench_branches")]
    insert = (
        "INSERT INTO bench_history (teller_id, branch_id, account_id, delta, created_at) "
        f"VALUES ({mark}, {mark}, {mark}, {mark}, CURRENT_TIMESTAMP)"
    )
    latencies = array.array("d")
    errors: Counter = Counter()
    while time.time() < start_at:
        time.sleep(min(0.01, max(0.0, start_at - time.time())))
    deadline = time.perf_counter() + duration_s
    cpu0 = time.process_time()
    cursor = conn.cursor()
    while time.perf_counter() < deadline:
        account = rng.randint(1, BASELINE_ACCOUNTS)
        teller = rng.randint(1, BASELINE_TELLERS)
        branch = (teller - 1) * BASELINE_BRANCHES // BASELINE_TELLERS + 1
        delta = rng.randint(-5000, 5000)
        began = time.perf_counter()
        try:
            if sqlite:
                cursor.execute("BEGIN IMMEDIATE")
            cursor.execute(statements[0], (delta, account))
            cursor.execute(statements[1], (delta, teller))
            cursor.execute(statements[2], (delta, branch))
            cursor.execute(insert, (teller, branch, account, delta))
            if sqlite:
                cursor.execute("COMMIT")
            else:
                conn.commit()
        except Exception as exc:  # counted and reported; the loop is bounded by the deadline
            errors[type(exc).__name__] += 1
            with contextlib.suppress(Exception):
                conn.rollback() if not sqlite else cursor.execute("ROLLBACK")
            continue
        latencies.append(time.perf_counter() - began)
    cpu_s = time.process_time() - cpu0
    conn.close()
    return len(latencies), latencies.tobytes(), dict(errors), cpu_s


def measure_baseline(args: argparse.Namespace, connection) -> Measurement:
    """Run the baseline with ``--clients`` processes and return its figures."""
    if connection.vendor == "sqlite":
        target = {"kind": "sqlite", "path": str(sqlite_path(args))}
    else:
        target = {"kind": "postgresql", "url": args.database_url}
    create_baseline_tables(connection)
    # spawn: a fork would copy this process's open database connections.
    context = multiprocessing.get_context("spawn")
    start_at = time.time() + 2.0
    with context.Pool(args.clients) as pool:
        jobs = [
            pool.apply_async(baseline_worker, (target, slot, start_at, args.duration, args.seed))
            for slot in range(args.clients)
        ]
        results = [job.get(timeout=args.duration + 60) for job in jobs]
    latencies: list[float] = []
    errors: Counter = Counter()
    total = 0
    cpu_s = 0.0
    for count, packed, errs, cpu in results:
        total += count
        cpu_s += cpu
        chunk = array.array("d")
        chunk.frombytes(packed)
        latencies.extend(chunk)
        errors.update(errs)
    with connection.cursor() as cursor:
        cursor.execute("SELECT COUNT(*) FROM bench_history")
        rows = cursor.fetchone()[0]
    if rows != total:
        errors["history rows differ from commits"] += abs(rows - total)
    return Measurement(
        "baseline", f"raw baseline ({args.clients} processes)", total / args.duration, latencies, total, errors,
        client_cpu_ms=cpu_s * 1000 / total if total else None,
    )


# ---------------------------------------------------------------------------
# Trade plans shared by both clients


class TradePlan:
    """Yield one client's trades: a buy of 1-20 shares, then the sale of exactly those shares.

    Positions stay bounded (at most one unsold buy per client), and a sell
    always has the shares it sells, so any failure is the application's.
    """

    def __init__(self, rng: random.Random, slugs: list[str]) -> None:
        self.rng, self.slugs = rng, slugs
        self.pending: tuple[str, str, int] | None = None

    def next(self) -> tuple[str, str, str, int]:
        """Return (market slug, outcome, side, micro-shares) of the next trade."""
        if self.pending is not None:
            slug, outcome, shares = self.pending
            return slug, outcome, "sell", shares
        slug = self.slugs[0] if len(self.slugs) == 1 else self.rng.choice(self.slugs)
        return slug, self.rng.choice(("yes", "no")), "buy", self.rng.randint(MIN_SHARES_MICRO, MAX_SHARES_MICRO)

    def done(self, trade: tuple[str, str, str, int], ok: bool) -> None:
        """Record the outcome of ``trade``: a bought position awaits its sale.

        A failed sale is not retried: if it failed because its answer was
        lost after the commit, a retry would fail for want of shares forever.
        """
        slug, outcome, side, shares = trade
        self.pending = (slug, outcome, shares) if side == "buy" and ok else None


def shares_text(shares_micro: int) -> str:
    """Return micro-shares as the API's decimal string."""
    whole, frac = divmod(shares_micro, MICRO)
    return f"{whole}.{frac:06d}"


# ---------------------------------------------------------------------------
# In process: threads calling the service


def in_process_run(
    traders: list[Trader], slugs: list[str], *, duration_s: float, seed: int, plans: list[TradePlan] | None = None
) -> tuple[list[float], Counter, int, float]:
    """Trade from one thread per trader for ``duration_s``; return (latencies, errors, ok, elapsed)."""
    from django.db import connection

    from bellwether.markets import services
    from bellwether.markets.api import trade_body

    plans = plans or [TradePlan(random.Random(seed * 7919 + i), slugs) for i in range(len(traders))]
    latencies: list[list[float]] = [[] for _ in traders]
    errors: list[Counter] = [Counter() for _ in traders]
    barrier = threading.Barrier(len(traders) + 1)
    deadline = [0.0]

    def worker(slot: int) -> None:
        user, plan = traders[slot].user, plans[slot]
        try:
            barrier.wait(timeout=30)
            while time.perf_counter() < deadline[0]:
                trade = slug, outcome, side, shares = plan.next()
                request = services.TradeRequest(outcome=outcome, side=side, shares_micro=shares)
                began = time.perf_counter()
                try:
                    services.place_trade(user=user, market_slug=slug, request=request, render=trade_body)
                except Exception as exc:  # counted and reported
                    errors[slot][type(exc).__name__] += 1
                    plan.done(trade, False)
                    continue
                latencies[slot].append(time.perf_counter() - began)
                plan.done(trade, True)
        finally:
            # Each thread's connection is its own; leaving it open would leak it (or a pool slot).
            connection.close()

    threads = [threading.Thread(target=worker, args=(i,), daemon=True) for i in range(len(traders))]
    for thread in threads:
        thread.start()
    deadline[0] = time.perf_counter() + duration_s
    started = time.perf_counter()
    barrier.wait(timeout=30)
    for thread in threads:
        thread.join(timeout=duration_s + 60)
    elapsed = time.perf_counter() - started
    if any(thread.is_alive() for thread in threads):
        raise RuntimeError("an in-process trading thread did not finish")
    flat = [t for slot in latencies for t in slot]
    total_errors = Counter()
    for counter in errors:
        total_errors.update(counter)
    return flat, total_errors, len(flat), elapsed


def measure_in_process(args, traders, slugs, key: str, label: str, postgres: bool) -> tuple[Measurement, int]:
    """Warm up, then measure one in-process scenario; return it and every trade it made."""
    # The warm-up and the measurement share plans, so a buy left open by one is sold by the other.
    plans = [TradePlan(random.Random(args.seed * 7919 + i), slugs) for i in range(len(traders))]
    made = 0
    if args.warmup:
        _, _, ok, _ = in_process_run(traders, slugs, duration_s=args.warmup, seed=args.seed, plans=plans)
        made += ok
    with CpuMeter(root=None, postgres=postgres) as meter:
        process0 = time.process_time()
        latencies, errors, ok, elapsed = in_process_run(traders, slugs, duration_s=args.duration, seed=args.seed, plans=plans)
        process_s = time.process_time() - process0
    made += ok
    _, db_ms = meter.per(ok)
    result = Measurement(
        key, label, ok / elapsed, latencies, ok, errors,
        server_cpu_ms=process_s * 1000 / ok if ok else None, db_cpu_ms=db_ms,
    )
    return result, made


def sequential_trade_time(traders, slugs, *, count: int, seed: int) -> tuple[float, float, float]:
    """Return (mean ms, p50 ms, queries per trade) of ``count`` trades in a row from one thread."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from bellwether.markets import services
    from bellwether.markets.api import trade_body

    plan = TradePlan(random.Random(seed), slugs)
    user = traders[0].user
    times = []
    for _ in range(count):
        trade = slug, outcome, side, shares = plan.next()
        request = services.TradeRequest(outcome=outcome, side=side, shares_micro=shares)
        began = time.perf_counter()
        services.place_trade(user=user, market_slug=slug, request=request, render=trade_body)
        times.append(time.perf_counter() - began)
        plan.done(trade, True)
    queries = 0
    with CaptureQueriesContext(connection) as captured:
        for _ in range(2):  # a buy and its sell
            trade = slug, outcome, side, shares = plan.next()
            request = services.TradeRequest(outcome=outcome, side=side, shares_micro=shares)
            services.place_trade(user=user, market_slug=slug, request=request, render=trade_body)
            plan.done(trade, True)
    queries = len(captured.captured_queries) / 2
    times.sort()
    return sum(times) / len(times) * 1000, times[len(times) // 2] * 1000, queries


@dataclass
class LmsrTiming:
    """Microseconds per call of each LMSR function, and per trade."""

    per_call_us: dict[str, float]
    per_trade_us: float  # what compute_fill calls for a buy or sell by shares, averaged


def time_lmsr(b_micro: int, q_micro: list[int], *, repeat: int = 20_000) -> LmsrTiming:
    """Time the LMSR functions in isolation at quantities like the benchmark's."""
    from bellwether.markets import lmsr

    shares = (MIN_SHARES_MICRO + MAX_SHARES_MICRO) // 2
    budget = lmsr.buy_cost_micro(q_micro, b_micro, 0, shares)
    calls = {
        "buy_cost_micro": lambda: lmsr.buy_cost_micro(q_micro, b_micro, 0, shares),
        "sell_proceeds_micro": lambda: lmsr.sell_proceeds_micro(q_micro, b_micro, 0, shares),
        "shares_for_budget_micro": lambda: lmsr.shares_for_budget_micro(q_micro, b_micro, 0, budget),
        "prices_after_micro": lambda: lmsr.prices_after_micro(q_micro, b_micro),
    }
    per_call = {}
    for name, call in calls.items():
        best = math.inf
        for _ in range(3):  # the best of three rounds: the least disturbed by other processes
            began = time.perf_counter()
            for _ in range(repeat):
                call()
            best = min(best, (time.perf_counter() - began) / repeat)
        per_call[name] = best * 1e6
    # compute_fill prices the market before and after, around one cost or proceeds call.
    per_trade = 2 * per_call["prices_after_micro"] + (per_call["buy_cost_micro"] + per_call["sell_proceeds_micro"]) / 2
    return LmsrTiming(per_call, per_trade)


def _profile_groups(stats, total: float) -> Counter:
    """Return own time per part of the stack (database driver, ORM, the rest)."""

    def group(key: tuple[str, int, str]) -> str:
        filename, _, function = key
        if "psycopg" in filename or "psycopg" in function or "sqlite3" in function:
            return "database driver (execute, fetch, commit)"
        if "django/db/" in filename:
            return "Django ORM: building, compiling and running queries (django/db/)"
        if "/ninja/" in filename or "/pydantic" in filename:
            return "django-ninja and pydantic"
        if "django/" in filename:
            return "other Django (handlers, middleware, URLs, signals)"
        if "bellwether/" in filename and not filename.endswith("lmsr.py"):
            return "Bellwether (services, ledger, API)"
        return "the rest (standard library, builtins, LMSR)"

    groups: Counter = Counter()
    for key, row in stats.stats.items():
        groups[group(key)] += row[2]
    return groups


def _cumulative_s(stats, path_end: str, function: str) -> float:
    return sum(row[3] for key, row in stats.stats.items() if key[0].endswith(path_end) and key[2] == function)


def profile_trades(traders, slugs, *, count: int, seed: int) -> tuple[str, int]:
    """Profile ``count`` service calls, then ``count`` API requests; return the report and the trades made.

    The requests go through Django's test client: the whole middleware stack,
    URL routing, token authentication and django-ninja, but no socket and no
    granian, so the difference from the service calls is the framework's share.
    """
    import cProfile
    import io
    import pstats

    from django.test import Client

    from bellwether.markets import services
    from bellwether.markets.api import trade_body

    buffer = io.StringIO()
    made = 0
    lmsr_entry_points = ("prices_after_micro", "buy_cost_micro", "sell_proceeds_micro", "shares_for_budget_micro")

    plan = TradePlan(random.Random(seed + 99), slugs)
    user = traders[0].user
    profiler = cProfile.Profile()
    for _ in range(count):
        trade = slug, outcome, side, shares = plan.next()
        request = services.TradeRequest(outcome=outcome, side=side, shares_micro=shares)
        profiler.enable()
        services.place_trade(user=user, market_slug=slug, request=request, render=trade_body)
        profiler.disable()
        plan.done(trade, True)
        made += 1
    stats = pstats.Stats(profiler, stream=buffer)
    total = sum(row[2] for row in stats.stats.values())  # own time over every function
    lmsr_s = sum(_cumulative_s(stats, "lmsr.py", name) for name in lmsr_entry_points)
    buffer.write(f"cProfile of {count} calls of services.place_trade ({total * 1000 / count:.2f} ms each under the profiler):\n")
    for name, value in _profile_groups(stats, total).most_common():
        buffer.write(f"  {value / total:6.1%}  {name}\n")
    buffer.write(f"  ({lmsr_s / total:.1%} in the LMSR functions, cumulative)\n")
    buffer.write("top functions by own time:\n")
    stats.sort_stats("tottime").print_stats(12)
    buffer.write("top functions by cumulative time:\n")
    stats.sort_stats("cumulative").print_stats(20)

    client = Client(HTTP_HOST=LOOPBACK)
    headers = {"Authorization": f"Bearer {traders[0].token}"}
    plan = TradePlan(random.Random(seed + 199), slugs)
    profiler = cProfile.Profile()
    for _ in range(count):
        trade = slug, outcome, side, shares = plan.next()
        body = {"outcome": outcome, "side": side, "shares": shares_text(shares)}
        profiler.enable()
        response = client.post(f"/api/v1/markets/{slug}/trades", body, content_type="application/json", headers=headers)
        profiler.disable()
        plan.done(trade, response.status_code == 201)
        made += response.status_code == 201
    stats = pstats.Stats(profiler, stream=buffer)
    request_s = _cumulative_s(stats, "django/core/handlers/base.py", "get_response")
    trade_s = _cumulative_s(stats, "markets/services.py", "place_trade")
    auth_s = _cumulative_s(stats, "accounts/services.py", "authenticate_token")
    render_s = _cumulative_s(stats, "markets/api.py", "trade_body")
    buffer.write(
        f"cProfile of {count} POST /api/v1/markets/{{slug}}/trades through Django's test client "
        f"({request_s * 1000 / count:.2f} ms each under the profiler, no socket or granian):\n"
        f"  {(trade_s - render_s) / request_s:6.1%}  services.place_trade without the response body\n"
        f"  {render_s / request_s:6.1%}  trade_body (the response body, inside the transaction)\n"
        f"  {auth_s / request_s:6.1%}  authenticate_token (the bearer token's query)\n"
        f"  {(request_s - trade_s - auth_s) / request_s:6.1%}  the rest: middleware, URL routing, django-ninja parsing and rendering\n"
    )
    buffer.write("top functions by cumulative time:\n")
    stats.sort_stats("cumulative").print_stats(30)
    return buffer.getvalue(), made


# ---------------------------------------------------------------------------
# HTTP load: asyncio keep-alive connections


class HttpError(Exception):
    """The connection broke or the answer could not be read."""


async def _read_response(reader: asyncio.StreamReader) -> tuple[int, bytes, bool]:
    """Read one HTTP/1.1 response; return (status, body, the server will close)."""
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ", 2)[1])
    headers = {}
    for line in lines[1:]:
        if ":" in line:
            name, value = line.split(":", 1)
            headers[name.strip().lower()] = value.strip()
    if "content-length" in headers:
        body = await reader.readexactly(int(headers["content-length"]))
    elif headers.get("transfer-encoding", "").lower() == "chunked":
        parts = []
        while True:
            size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
            chunk = await reader.readexactly(size + 2)
            if size == 0:
                break
            parts.append(chunk[:-2])
        body = b"".join(parts)
    else:
        raise HttpError("response without Content-Length on a keep-alive connection")
    return status, body, headers.get("connection", "").lower() == "close"


@dataclass
class HttpRun:
    """What the clients of one HTTP scenario saw."""

    latencies_s: list[float]
    statuses: Counter
    ok: int
    elapsed_s: float
    client_cpu_s: float
    requests: int


async def _http_load(
    port: int, traders: list[Trader], plans: list[TradePlan], *, duration_s: float, rate: float | None
) -> HttpRun:
    """Run one client per trader for ``duration_s``: closed-loop, or open-loop at ``rate`` trades/s in all.

    Open-loop clients send on a fixed schedule and time each answer from its
    scheduled send, so a slow answer also counts against the requests queued
    behind it (no coordinated omission).
    """
    latencies: list[float] = []
    statuses: Counter = Counter()
    ok = [0]
    requests = [0]
    loop = asyncio.get_running_loop()
    started = loop.time()
    deadline = started + duration_s
    clients = len(traders)
    interval = clients / rate if rate else 0.0

    async def client(slot: int) -> None:
        token, plan = traders[slot].token, plans[slot]
        reader = writer = None
        sent = 0
        try:
            while True:
                due = started + (slot / clients + sent) * interval if rate else loop.time()
                if due >= deadline or loop.time() >= deadline:
                    break
                if rate and due > loop.time():
                    await asyncio.sleep(due - loop.time())
                sent += 1
                trade = slug, outcome, side, shares = plan.next()
                body = json.dumps({"outcome": outcome, "side": side, "shares": shares_text(shares)}).encode()
                request = (
                    f"POST /api/v1/markets/{slug}/trades HTTP/1.1\r\nHost: {LOOPBACK}:{port}\r\n"
                    f"Authorization: Bearer {token}\r\nContent-Type: application/json\r\n"
                    f"Content-Length: {len(body)}\r\n\r\n"
                ).encode() + body
                began = due if rate else loop.time()
                requests[0] += 1
                try:
                    if writer is None:
                        reader, writer = await asyncio.wait_for(asyncio.open_connection(LOOPBACK, port), REQUEST_TIMEOUT_S)
                    writer.write(request)
                    status, payload, closing = await asyncio.wait_for(_read_response(reader), REQUEST_TIMEOUT_S)
                except (OSError, asyncio.TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, HttpError, ValueError) as exc:
                    statuses[f"error:{type(exc).__name__}"] += 1
                    plan.done(trade, False)
                    if writer is not None:
                        writer.close()
                    reader = writer = None
                    continue
                finished = loop.time()
                good = status == 201
                if good:
                    try:
                        answer = json.loads(payload)
                    except ValueError:
                        answer = {}
                    # A 201 must describe this trade, or it is not the trade asked for.
                    if answer.get("shares") != shares_text(shares) or answer.get("side") != side or answer.get("replayed"):
                        statuses["201 with a wrong body"] += 1
                        good = False
                    else:
                        statuses[201] += 1
                        ok[0] += 1
                        latencies.append(finished - began)
                else:
                    statuses[status] += 1
                plan.done(trade, good)
                if closing:
                    writer.close()
                    reader = writer = None
        finally:
            if writer is not None:
                writer.close()

    process0 = time.process_time()
    # Each request is bounded by its connect and read timeouts, so the clients end by themselves.
    await asyncio.gather(*(client(i) for i in range(clients)))
    elapsed = loop.time() - started
    return HttpRun(latencies, statuses, ok[0], elapsed, time.process_time() - process0, requests[0])


def http_load(port, traders, plans, *, duration_s: float, rate: float | None = None) -> HttpRun:
    """Run :func:`_http_load` in a fresh event loop."""
    return asyncio.run(_http_load(port, traders, plans, duration_s=duration_s, rate=rate))


def check_api(port: int, trader: Trader, slug: str) -> None:
    """Raise unless one buy and its sale through the API answer 201 with the trade."""
    for side in ("buy", "sell"):
        conn = http.client.HTTPConnection(LOOPBACK, port, timeout=10)
        try:
            body = json.dumps({"outcome": "yes", "side": side, "shares": "1.000000"})
            conn.request(
                "POST", f"/api/v1/markets/{slug}/trades", body=body,
                headers={"Authorization": f"Bearer {trader.token}", "Content-Type": "application/json"},
            )
            response = conn.getresponse()
            text = response.read().decode("utf-8", "replace")
        finally:
            conn.close()
        if response.status != 201 or '"trade_id"' not in text:
            raise RuntimeError(f"a {side} through the API answered {response.status}: {text[:300]}")


def to_measurement(key: str, label: str, run: HttpRun, meter: CpuMeter) -> Measurement:
    """Turn an HTTP run and its CPU figures into a Measurement."""
    errors = Counter({str(k): v for k, v in run.statuses.items() if k != 201})
    server_ms, db_ms = meter.per(run.ok)
    return Measurement(
        key, label, run.ok / run.elapsed_s if run.elapsed_s else 0.0, run.latencies_s, run.ok, errors,
        server_cpu_ms=server_ms, db_cpu_ms=db_ms,
        client_cpu_ms=run.client_cpu_s * 1000 / run.requests if run.requests else None,
    )


def measure_http(args, env, traders, hot: str, spread: list[str], postgres: bool) -> tuple[list[Measurement], int, str]:
    """Serve, then load the hot and spread markets at the peak and at half of it; return (rows, trades made, status line)."""
    rows: list[Measurement] = []
    made = 0
    statuses: Counter = Counter()
    with running_server(env, workers=args.workers, log_path=args.var_dir / "server.log") as (port, server_pid):
        check_api(port, traders[0], hot)
        made += 2
        peaks = {}
        for name, slugs in (("hot", [hot]), ("spread", spread)):
            plans = [TradePlan(random.Random(args.seed * 104729 + i), slugs) for i in range(len(traders))]
            if args.warmup:
                warm = http_load(port, traders, plans, duration_s=args.warmup)
                made += warm.ok
                statuses.update(warm.statuses)
            print(f"  HTTP {name}: peak", end=" ... ", flush=True)
            with CpuMeter(root=server_pid, postgres=postgres) as meter:
                run = http_load(port, traders, plans, duration_s=args.duration)
            made += run.ok
            statuses.update(run.statuses)
            row = to_measurement(f"http-{name}-peak", f"HTTP {name}, peak ({args.clients} clients)", run, meter)
            rows.append(row)
            peaks[name] = (row.rate, plans)
            print(f"{row.rate:,.0f} trades/s", flush=True)
        for name in ("hot", "spread"):
            rate, plans = peaks[name]
            half = max(1.0, rate / 2)
            print(f"  HTTP {name}: open loop at {half:,.0f} trades/s", end=" ... ", flush=True)
            with CpuMeter(root=server_pid, postgres=postgres) as meter:
                run = http_load(port, traders, plans, duration_s=args.duration, rate=half)
            made += run.ok
            statuses.update(run.statuses)
            row = to_measurement(f"http-{name}-half", f"HTTP {name}, half peak ({half:,.0f}/s offered)", run, meter)
            rows.append(row)
            print(f"{row.rate:,.0f} trades/s", flush=True)
    status_line = ", ".join(f"{k}: {v:,}" for k, v in sorted(statuses.items(), key=lambda kv: str(kv[0])))
    return rows, made, status_line


# ---------------------------------------------------------------------------
# Checks and report


def run_audit(env: dict[str, str]) -> tuple[bool, str]:
    """Run `bellwether audit` on the benchmark database; return (passed, its output)."""
    result = subprocess.run(
        bellwether_command() + ["audit"], env=env, cwd=REPO, capture_output=True, text=True, timeout=600
    )
    output = (result.stdout + result.stderr).strip()
    return result.returncode == 0, output


def _ms(value: float | None) -> str:
    """Return milliseconds for the report; from 100 on without decimals, which would only widen the columns."""
    return format_ms(value, whole_from=100)


def verdict(ok: bool) -> str:
    return "met" if ok else "NOT met"


def print_report(args, db_label: str, rows: list[Measurement], baseline: Measurement, extra: dict) -> None:
    """Print the results table and each target, met or not."""
    print()
    print(
        f"Bellwether trades on {db_label}; {args.clients} clients, {args.duration:g} s per scenario "
        f"after {args.warmup:g} s warm-up; markets with b = {LIQUIDITY_B_CREDITS:,} credits, buys of "
        f"{MIN_SHARES_MICRO // MICRO}-{MAX_SHARES_MICRO // MICRO} shares each sold back by the next trade; "
        f"HTTP through `bellwether serve --workers {args.workers}` (granian, WSGI); {os.cpu_count()} CPUs"
    )
    header = (
        f"{'scenario':42} {'trades/s':>9} {'p50 ms':>7} {'p95 ms':>7} {'p99 ms':>7} {'p99/p50':>7} "
        f"{'x base':>6} {'app cpu ms':>10} {'db cpu ms':>9} {'errors':>6}"
    )
    print(header)
    print("-" * len(header))
    for row in [baseline, *rows]:
        p50, p99 = row.percentile_ms(0.50), row.percentile_ms(0.99)
        spread = p99 / p50 if p50 and p99 else None
        app_cpu = row.client_cpu_ms if row is baseline else row.server_cpu_ms
        print(
            f"{row.label:42} {row.rate:9,.0f} {_ms(p50):>7} {_ms(row.percentile_ms(0.95)):>7} {_ms(p99):>7} "
            f"{format_ratio(spread):>7} {format_ratio(row.rate / baseline.rate if baseline.rate else None):>6} "
            f"{_ms(app_cpu):>10} {_ms(row.db_cpu_ms):>9} {row.error_count:6}"
        )
    print(
        "app cpu ms: CPU per transaction or trade of the baseline's client processes, of this process "
        "(in process: the trading threads) or of the server's processes (HTTP); db cpu ms: of PostgreSQL's."
    )
    client = [row.client_cpu_ms for row in rows if row.key.startswith("http") and row.client_cpu_ms]
    if client:
        print(f"The HTTP load generator (this process, asyncio) used {min(client):.2f}-{max(client):.2f} ms of CPU per request.")
    for row in [baseline, *rows]:
        if row.errors:
            print(f"  {row.label}: errors {dict(row.errors)}")
    print()

    by = {row.key: row for row in rows}
    targets = []
    http_hot, http_spread = by.get("http-hot-peak"), by.get("http-spread-peak")
    if http_hot and http_spread:
        for row in (http_spread, http_hot):
            ratio = row.rate / baseline.rate
            applies = "" if extra["postgres"] else " (the target is for PostgreSQL; shown for comparison)"
            targets.append(
                f"HTTP trades >= {TARGET_HTTP_PG_RATIO:g} x baseline, {row.label.split(',')[0]}: "
                f"{format_ratio(ratio)}, {verdict(ratio >= TARGET_HTTP_PG_RATIO)}{applies}"
            )
    for kind, hot, spread in (
        ("in process", by.get("in-process-hot"), by.get("in-process-spread")),
        ("HTTP", http_hot, http_spread),
    ):
        if hot and spread and spread.rate:
            ratio = hot.rate / spread.rate
            targets.append(f"{kind}: one hot market >= {TARGET_HOT_VS_SPREAD:g} x spread: {ratio:.2f}, {verdict(ratio >= TARGET_HOT_VS_SPREAD)}")
    for name in ("hot", "spread"):
        row = by.get(f"http-{name}-half")
        if row and row.latencies_s:
            ratio = row.percentile_ms(0.99) / row.percentile_ms(0.50)
            targets.append(
                f"HTTP {name} at half the peak: p99 <= {TARGET_P99_OVER_P50:g} x p50: "
                f"{_ms(row.percentile_ms(0.99))} / {_ms(row.percentile_ms(0.50))} ms = {ratio:.1f}, "
                f"{verdict(ratio <= TARGET_P99_OVER_P50)}"
            )
    if extra.get("lmsr"):
        lmsr_timing, trade_ms = extra["lmsr"], extra["trade_ms"]
        share = lmsr_timing.per_trade_us / 1000 / trade_ms
        targets.append(
            f"LMSR math < {TARGET_LMSR_SHARE:.0%} of a trade's time: {lmsr_timing.per_trade_us:.1f} us of "
            f"{trade_ms:.2f} ms = {share:.2%}, {verdict(share < TARGET_LMSR_SHARE)}"
        )
    if http_spread:
        best = max((http_hot, http_spread), key=lambda r: r.rate if r else 0)
        p95 = best.percentile_ms(0.95)
        ok = best.rate >= TARGET_RATE and p95 is not None and p95 <= PEER_P95_MS
        targets.append(
            f"10 x the peer ({TARGET_RATE:,.0f} trades/s at p95 <= {PEER_P95_MS:g} ms on {os.cpu_count()} cores): "
            f"{best.rate:,.0f}/s at p95 {_ms(p95)} ms ({best.label.split(',')[0]}), {verdict(ok)}"
        )
    print("targets:")
    for line in targets:
        print("  " + line)
    print()
    if extra.get("lmsr"):
        timing = extra["lmsr"]
        calls = ", ".join(f"{name} {us:.1f} us" for name, us in timing.per_call_us.items())
        print(f"LMSR per call: {calls}")
        print(
            f"one trade in process, one client: mean {extra['trade_ms']:.2f} ms, p50 {extra['trade_p50_ms']:.2f} ms, "
            f"{extra['queries']:.1f} SQL queries"
        )


def main(argv: list[str] | None = None) -> None:
    """Prepare the benchmark database, measure every scenario, check the money and print the figures."""
    args = parse_args(argv)
    # SIGTERM must unwind through the `finally` blocks that stop the server.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    prepare_database(args, example_name="bellwether_bench_trades")
    migrate_s = set_up_django(args)
    from django.db import connection, connections

    postgres = connection.vendor == "postgresql"
    db_label = database_label(args, connection, with_version=True)
    setup_started = time.perf_counter()
    traders = prepare_traders(args.clients)
    hot, spread = prepare_markets(args.markets)
    print(
        f"{db_label}: migrated in {migrate_s:.1f} s, {len(traders)} traders and {1 + len(spread)} markets "
        f"ready in {time.perf_counter() - setup_started:.1f} s",
        flush=True,
    )

    warn_if_busy("the server, the database and the clients")
    load_before = load_average()
    started = time.perf_counter()
    trades_before = trade_count()
    made = 0
    rows: list[Measurement] = []
    extra: dict = {"postgres": postgres}

    print(f"  raw baseline, {args.clients} processes", end=" ... ", flush=True)
    connections.close_all()
    with CpuMeter(root=None, postgres=postgres) as meter:
        baseline = measure_baseline(args, connection)
    _, baseline.db_cpu_ms = meter.per(baseline.ok)
    print(f"{baseline.rate:,.0f} tx/s", flush=True)

    if not args.no_in_process:
        for name, slugs in (("hot", [hot]), ("spread", spread)):
            print(f"  in-process {name}, {args.clients} threads", end=" ... ", flush=True)
            row, count = measure_in_process(
                args, traders, slugs, f"in-process-{name}", f"in-process {name} ({args.clients} threads)", postgres
            )
            rows.append(row)
            made += count
            print(f"{row.rate:,.0f} trades/s", flush=True)
        trade_ms, trade_p50_ms, queries = sequential_trade_time(traders, spread, count=300, seed=args.seed)
        made += 302
        from bellwether.markets.models import Outcome

        hot_q = list(Outcome.objects.filter(market__slug=hot).order_by("position").values_list("shares_micro", flat=True))
        extra.update(lmsr=time_lmsr(LIQUIDITY_B_CREDITS * MICRO, hot_q), trade_ms=trade_ms, trade_p50_ms=trade_p50_ms, queries=queries)
        if args.profile:
            extra["profile"], count = profile_trades(traders, spread, count=300, seed=args.seed)
            made += count
        connections.close_all()

    status_line = ""
    if not args.no_http:
        http_rows, count, status_line = measure_http(args, benchmark_env(args), traders, hot, spread, postgres)
        rows.extend(http_rows)
        made += count

    new_trades = trade_count() - trades_before
    elapsed = time.perf_counter() - started
    connections.close_all()
    audit_ok, audit_output = run_audit(benchmark_env(args))

    print_report(args, db_label, rows, baseline, extra)
    if status_line:
        print(f"HTTP answers (warm-up included): {status_line}")
    count_ok = new_trades == made
    print(
        f"check: new Trade rows {new_trades:,} vs successful trades {made:,} "
        f"(in process, HTTP 201s and the setup checks): {'equal' if count_ok else 'DIFFERENT'}"
    )
    print(f"check: bellwether audit {'passed' if audit_ok else 'FAILED'}: {audit_output.splitlines()[-1] if audit_output else ''}")
    if not audit_ok:
        print(audit_output)
    if "profile" in extra:
        print()
        print(extra["profile"])
    print(f"measurement took {elapsed:.0f} s; load average at the start {load_before}, at the end {load_average()}")
    if not (count_ok and audit_ok):
        sys.exit(1)


if __name__ == "__main__":
    main()
