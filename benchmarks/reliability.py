#!/usr/bin/env python
"""Try the money side as a crash, a racer and an attacker would, against a real `bellwether serve`.

One run, against one database (SQLite in ``var/bench-reliability/`` by
default, or PostgreSQL with ``--database postgres``), measures three things
and prints them as one markdown table (figure, value, verdict) for
docs/reliability.md:

1. kill -9 under load: ``--clients`` threads trade over HTTP (bearer tokens,
   keep-alive connections, a unique ``Idempotency-Key`` per trade) for
   ``--duration`` seconds, then the server's whole process tree gets SIGKILL
   while requests are in flight. A fresh server starts; every trade a client
   saw acknowledged (201 with its ``trade_id``) must be in the database; every
   request left without an answer is sent again with its key (it trades once,
   or replays the trade that committed before the kill), and again (a
   replay); a sample of acknowledged trades is sent again (a replay of the
   same trade); the new Trade rows must equal the keys answered 201; and
   `bellwether audit` must pass. ``--kill-rounds`` times.
2. double spend: a fresh user whose balance covers one buy and a half sends
   ``--racers`` identical buys at once (threads on connections opened in
   advance, released together by a barrier): exactly one may succeed, every
   other must be 422 ``insufficient_funds``, and the balance must end at
   what it was less that one buy. ``--double-spend-rounds`` times.
3. hostile inputs: a fixed list of requests to the pages, the API and the
   live streams (NUL bytes, invalid UTF-8, huge integers and lists,
   oversized and deeply nested bodies, amounts that are not plain ASCII
   decimals, ``javascript:`` sources, drafts asked for anonymously,
   malformed cursors and credentials, overlong text in every field, outcome
   names in other scripts). Each has the statuses it may answer; a 5xx, or
   no answer at all, never is one, and an API error must carry the JSON
   error body.

The API's rate limits are switched off for the run (API_*_RATE_LIMIT_PER_MIN
= 0), so the load is not refused with 429 and every hostile request reaches
its view. The script exits 1 when any verdict is "NOT met".

Run ``python benchmarks/reliability.py --help`` for the options; the figures
are recorded in docs/reliability.md.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import datetime as dt
import http.client
import json
import os
import random
import re
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.parse
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from common import (
    LOOPBACK,
    REPO,
    base_env,
    bellwether_command,
    database_label,
    fetch,
    load_average,
    prepare_database,
    running_server,
    start_django,
    warn_if_busy,
)

DEFAULT_VAR_DIR = REPO / "var" / "bench-reliability"
DEFAULT_POSTGRES_URL = "postgres://postgres@127.0.0.1:5432/bellwether_bench_reliability"
MICRO = 1_000_000
TRADER_PREFIX = "rel-trader-"
TRADER_BALANCE_CREDITS = 1_000_000
LOAD_SLUGS = [f"rel-load-{i:02d}" for i in range(4)]
LOAD_LIQUIDITY_B_CREDITS = 1_000
DOUBLE_SPEND_SLUG = "rel-double-spend"
DOUBLE_SPEND_LIQUIDITY_B_CREDITS = 100
DOUBLE_SPEND_SHARES = 10
DRAFT_SLUG = "rel-draft"
REQUEST_TIMEOUT_S = 30.0
STREAM_PRELUDE = b"retry:"  # what every live stream sends first
LIVE_START_TIMEOUT_S = 60.0
KILL_GONE_TIMEOUT_S = 10.0
PORT_ATTEMPTS = 5
# Rate limits off: the load must not be refused with 429, and each hostile request must reach its view.
RATE_LIMITS_OFF = ("API_IP_RATE_LIMIT_PER_MIN", "API_RATE_LIMIT_PER_MIN", "API_TRADE_RATE_LIMIT_PER_MIN")
SECTIONS = ("kill", "double-spend", "hostile")

if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))


# ---------------------------------------------------------------------------
# Options


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Return the command-line options."""
    parser = argparse.ArgumentParser(
        prog="benchmarks/reliability.py",
        description=(
            "Try Bellwether's money side against a real `bellwether serve --workers N`: kill -9 of the "
            "whole server under HTTP trading load (every acknowledged trade must be found after a "
            "restart, retries with the same Idempotency-Key must not trade twice, `bellwether audit` "
            "must pass), a double spend (--racers buys at once against a balance that covers one: "
            "exactly one succeeds) and a fixed list of hostile requests to the pages, the API and the "
            "live streams (none may answer 5xx). Prints one markdown table (figure, value, verdict) for docs/reliability.md "
            "and exits 1 when a verdict is not met. The API's rate limits are off for the run. At the "
            "defaults a run takes about a minute and a half."
        ),
        epilog="Results: docs/reliability.md. Example: python benchmarks/reliability.py --database postgres",
    )
    parser.add_argument(
        "--database",
        choices=("sqlite", "postgres"),
        default="sqlite",
        help=(
            "sqlite: a file in --var-dir (default); postgres: the database named by --database-url, "
            f"default {DEFAULT_POSTGRES_URL} (created when missing)"
        ),
    )
    parser.add_argument(
        "--database-url",
        metavar="URL",
        default="",
        help=(
            "a database of its own for the run: postgres://... on 127.0.0.1 (implies --database postgres), "
            "or sqlite:////absolute/path (an existing file, e.g. a test database; never rebuilt)"
        ),
    )
    parser.add_argument(
        "--var-dir",
        metavar="DIR",
        type=Path,
        default=DEFAULT_VAR_DIR,
        help=(
            "BELLWETHER_VAR_DIR for the run: holds the SQLite database and the server logs "
            f"(default: {DEFAULT_VAR_DIR.relative_to(REPO)})"
        ),
    )
    parser.add_argument(
        "--rebuild",
        action="store_true",
        help=(
            "delete the benchmark database first (the SQLite file in --var-dir, or the PostgreSQL "
            "database, whose name must contain 'bench'); without it the users and markets of an "
            "earlier run are reused"
        ),
    )
    parser.add_argument(
        "--only",
        choices=SECTIONS,
        action="append",
        help="run only this part (repeat for several; default: all three)",
    )
    parser.add_argument(
        "--kill-rounds", metavar="K", type=int, default=3,
        help="kill -9 rounds, each with a restart, the checks and an audit (default: 3)",
    )
    parser.add_argument(
        "--clients", metavar="N", type=int, default=8,
        help="concurrent HTTP trading clients under the kill, each a trader of its own (default: 8)",
    )
    parser.add_argument(
        "--duration", metavar="S", type=float, default=3.0,
        help="seconds of trading load before each kill (default: 3)",
    )
    parser.add_argument(
        "--replay-sample", metavar="N", type=int, default=20,
        help="acknowledged trades sent again with their Idempotency-Key after each restart (default: 20)",
    )
    parser.add_argument(
        "--double-spend-rounds", metavar="R", type=int, default=5,
        help="double-spend rounds, each with a fresh user (default: 5)",
    )
    parser.add_argument(
        "--racers", metavar="N", type=int, default=20,
        help="simultaneous buys per double-spend round (default: 20)",
    )
    parser.add_argument(
        "--workers", metavar="N", type=int, default=2,
        help="server worker processes (bellwether serve --workers; default: 2)",
    )
    parser.add_argument("--seed", metavar="N", type=int, default=1, help="seeds the clients' markets, outcomes and sizes (default: 1)")
    parser.add_argument("--show", action="store_true", help="also print every hostile request with its answer")
    args = parser.parse_args(argv)
    for name in ("clients", "workers", "racers"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be at least 1")
    for name in ("kill_rounds", "double_spend_rounds", "replay_sample"):
        if getattr(args, name) < 0:
            parser.error(f"--{name.replace('_', '-')} must not be negative")
    if args.clients > 32 or args.racers > 64:
        parser.error("--clients must be at most 32 and --racers at most 64")
    if not 0 < args.duration <= 600:
        parser.error("--duration must be positive and at most 600")
    if args.database_url.startswith("sqlite:///"):
        args.database = "sqlite"
        if args.rebuild:
            parser.error("--rebuild drops only the SQLite file in --var-dir, not one named by --database-url")
    elif args.database_url:
        args.database = "postgres"
    elif args.database == "postgres":
        args.database_url = DEFAULT_POSTGRES_URL
    if args.database == "postgres":
        parts = urllib.parse.urlsplit(args.database_url)
        if parts.scheme not in ("postgres", "postgresql"):
            parser.error("--database-url must be a postgres:// URL (SQLite is the default)")
        if parts.hostname not in (LOOPBACK, "localhost"):
            parser.error("--database-url must point at 127.0.0.1: the run loads only this machine")
    skipped = {"kill"} if args.kill_rounds == 0 else set()
    skipped |= {"double-spend"} if args.double_spend_rounds == 0 else set()
    args.sections = tuple(section for section in (args.only or SECTIONS) if section not in skipped)
    if not args.sections:
        parser.error("nothing to run: every part chosen has 0 rounds")
    args.var_dir = args.var_dir.resolve()
    return args


# ---------------------------------------------------------------------------
# Environment, users and markets


def run_env(args: argparse.Namespace) -> dict[str, str]:
    """Return the environment for this process, the servers and `bellwether audit`."""
    env = base_env(args, unset=("DATABASE_POOL_SIZE", "CACHE_URL", *RATE_LIMITS_OFF))
    env["STARTING_BALANCE_CREDITS"] = str(TRADER_BALANCE_CREDITS)
    for name in RATE_LIMITS_OFF:
        env[name] = "0"
    return env


@dataclass
class Trader:
    """A user with a fresh API token."""

    user: object
    token: str


def get_or_create_user(username: str, *, roles: tuple[str, ...] = ()):
    """Return the user called ``username``, creating it (with ``roles``) when missing."""
    from django.contrib.auth import get_user_model

    from bellwether.accounts.services import create_user

    return get_user_model().objects.filter(username=username).first() or create_user(username=username, roles=roles)


def with_token(user) -> Trader:
    """Return ``user`` with a new token (only a token's hash is stored, so an earlier run's cannot be reused)."""
    from bellwether.accounts.services import create_token

    _, raw = create_token(user=user, name="benchmarks/reliability.py")
    return Trader(user=user, token=raw)


def prepare_traders(count: int) -> list[Trader]:
    """Return ``count`` load traders, topping up any that hold less than half the benchmark balance."""
    from django.db import transaction

    from bellwether.ledger.models import Transfer
    from bellwether.ledger.services import get_treasury, lock_accounts, open_user_account, post_transfer

    target = TRADER_BALANCE_CREDITS * MICRO
    traders = []
    for index in range(count):
        user = get_or_create_user(f"{TRADER_PREFIX}{index:03d}")
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
        traders.append(with_token(user))
    return traders


def ensure_market(slug: str, question: str, *, liquidity_b_credits: int, status: str | None = None):
    """Return the market ``slug``, creating it (open for ten years, or in ``status``) when missing."""
    from django.utils import timezone

    from bellwether.markets import services
    from bellwether.markets.models import Market

    market = Market.objects.filter(slug=slug).first()
    if market is None:
        market = services.create_market(
            question=question, liquidity_b_micro=liquidity_b_credits * MICRO, slug=slug,
            close_at=timezone.now() + dt.timedelta(days=3650), status=status or Market.Status.OPEN,
        )
    return market


def prepare_markets() -> None:
    """Create the load, double-spend and draft markets when missing; exit if one is no longer as needed."""
    from bellwether.markets.models import Market

    for index, slug in enumerate(LOAD_SLUGS):
        ensure_market(slug, f"Reliability run: will load market {index} close higher?", liquidity_b_credits=LOAD_LIQUIDITY_B_CREDITS)
    ensure_market(DOUBLE_SPEND_SLUG, "Reliability run: will the double spend fail?", liquidity_b_credits=DOUBLE_SPEND_LIQUIDITY_B_CREDITS)
    ensure_market(DRAFT_SLUG, "Reliability run: a draft nobody may see", liquidity_b_credits=100, status=Market.Status.DRAFT)
    wanted = {**{slug: Market.Status.OPEN for slug in [*LOAD_SLUGS, DOUBLE_SPEND_SLUG]}, DRAFT_SLUG: Market.Status.DRAFT}
    for slug, status in Market.objects.filter(slug__in=wanted).values_list("slug", "status"):
        if status != wanted[slug]:
            sys.exit(f"market {slug} is {status}, not {wanted[slug]}; run again with --rebuild")


def run_audit(env: dict[str, str]) -> tuple[bool, str]:
    """Run `bellwether audit`; return (passed, its last line)."""
    result = subprocess.run(bellwether_command() + ["audit"], env=env, cwd=REPO, capture_output=True, text=True, timeout=600)
    lines = (result.stdout + result.stderr).strip().splitlines()
    return result.returncode == 0, lines[-1] if lines else ""


# ---------------------------------------------------------------------------
# The server and its processes


def _process_table() -> dict[int, tuple[int, int, str]]:
    """Return every process as pid: (parent pid, process group, state letter), read from /proc."""
    table = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat") as stat:
                text = stat.read()
        except OSError:
            continue
        # The command name may contain spaces and parentheses; the fields after the last ")" may not.
        fields = text.rsplit(")", 1)[1].split()
        table[int(entry.name)] = (int(fields[1]), int(fields[2]), fields[0])
    return table


def server_processes(root: int) -> set[int]:
    """Return the live processes of ``root``'s process group and every descendant of ``root``."""
    table = _process_table()
    found = {pid for pid, (_, pgid, state) in table.items() if pgid == root and state != "Z"}
    found.add(root)
    grew = True
    while grew:
        children = {pid for pid, (ppid, _, state) in table.items() if ppid in found and state != "Z"}
        grew = not children <= found
        found |= children
    return {pid for pid in found if pid in table and table[pid][2] != "Z"}


class Server:
    """One `bellwether serve` on a free port, started and stopped by ``common.running_server``."""

    def __init__(self, env: dict[str, str], *, workers: int, log_path: Path) -> None:
        self._stack = contextlib.ExitStack()
        started = time.perf_counter()
        for attempt in range(1, PORT_ATTEMPTS + 1):
            try:
                self.port, self.pgid = self._stack.enter_context(running_server(env, workers=workers, log_path=log_path))
                break
            except RuntimeError as exc:
                # running_server checks only the pages port; the live server takes the next one, which may be in use.
                if "Address already in use" not in str(exc) or attempt == PORT_ATTEMPTS:
                    raise
        self.start_s = time.perf_counter() - started
        self.live_port = self.port + 1  # `bellwether serve` puts the live server next to the pages

    def kill(self) -> int:
        """SIGKILL every process of the server at once; return how many there were, once all are gone.

        `bellwether serve` may start each server in a session of its own, so
        the victims are its process group, every descendant, and every
        process group one of them leads; a process one of them forks while
        they die is caught by a second pass over those groups.
        """
        victims = server_processes(self.pgid)
        table = _process_table()
        groups = {table[pid][1] for pid in victims if pid in table} - {os.getpgrp()}
        killed: set[int] = set()
        deadline = time.monotonic() + KILL_GONE_TIMEOUT_S
        while time.monotonic() < deadline:
            table = _process_table()
            alive = {pid for pid in victims if pid in table and table[pid][2] != "Z"}
            alive |= {pid for pid, (_, pgid, state) in table.items() if pgid in groups and state != "Z"}
            if not alive:
                return len(killed)
            killed |= alive
            for group in groups:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(group, signal.SIGKILL)
            for pid in alive:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            time.sleep(0.02)
        raise RuntimeError(f"server processes {sorted(killed)} outlived SIGKILL for {KILL_GONE_TIMEOUT_S:.0f} s")

    def stop(self) -> None:
        """Stop the server politely (or reap it, once killed)."""
        self._stack.close()


# ---------------------------------------------------------------------------
# HTTP


def post_trade(conn: http.client.HTTPConnection, *, token: str, slug: str, body: dict, key: str | None) -> tuple[int, dict[str, str], dict]:
    """POST one trade on ``conn``; return status, headers (lower-case names) and the JSON body ({} if none)."""
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    if key is not None:
        headers["Idempotency-Key"] = key
    conn.request("POST", f"/api/v1/markets/{slug}/trades", body=json.dumps(body), headers=headers)
    response = conn.getresponse()
    raw = response.read()
    try:
        answer = json.loads(raw)
    except ValueError:
        answer = {"raw": raw[:300].decode("utf-8", "replace")}
    return response.status, {k.lower(): v for k, v in response.getheaders()}, answer if isinstance(answer, dict) else {}


def one_trade(port: int, *, token: str, slug: str, body: dict, key: str | None) -> tuple[int, dict[str, str], dict]:
    """POST one trade on a connection of its own."""
    conn = http.client.HTTPConnection(LOOPBACK, port, timeout=REQUEST_TIMEOUT_S)
    try:
        return post_trade(conn, token=token, slug=slug, body=body, key=key)
    finally:
        conn.close()


def error_code(answer: dict) -> str:
    error = answer.get("error")
    return error.get("code", "") if isinstance(error, dict) else ""


# ---------------------------------------------------------------------------
# 1. kill -9 under load


@dataclass
class Sent:
    """One trade request as a client sent it."""

    trader: int  # index into the traders
    key: str
    slug: str
    body: dict


@dataclass
class ClientLog:
    """What one trading client saw."""

    acked: dict[str, tuple[int, Sent]] = field(default_factory=dict)  # key -> (trade id, request)
    unanswered: list[Sent] = field(default_factory=list)
    statuses: Counter = field(default_factory=Counter)


def trading_client(port: int, index: int, trader: Trader, *, prefix: str, rng: random.Random, killed: threading.Event, log: ClientLog) -> None:
    """Buy on the load markets until the first failure after ``killed`` is set; log every answer."""
    conn = None
    seq = 0
    while True:
        seq += 1
        sent = Sent(index, f"{prefix}-c{index}-{seq}", rng.choice(LOAD_SLUGS),
                    {"outcome": rng.choice(("yes", "no")), "side": "buy", "shares": str(rng.randint(1, 5))})
        try:
            if conn is None:
                conn = http.client.HTTPConnection(LOOPBACK, port, timeout=REQUEST_TIMEOUT_S)
            status, _, answer = post_trade(conn, token=trader.token, slug=sent.slug, body=sent.body, key=sent.key)
        except (OSError, http.client.HTTPException) as exc:
            log.unanswered.append(sent)
            if conn is not None:
                conn.close()
            conn = None
            if killed.is_set():
                return
            log.statuses[f"no answer before the kill ({type(exc).__name__})"] += 1
            continue
        if status == 201 and isinstance(answer.get("trade_id"), int):
            log.acked[sent.key] = (answer["trade_id"], sent)
        else:
            log.statuses[f"{status} {error_code(answer)}".strip()] += 1


@dataclass
class KillRound:
    """The figures of one kill -9 round."""

    acked: int = 0
    found: int = 0
    mismatched: list[str] = field(default_factory=list)
    unanswered: int = 0
    committed_before_kill: int = 0  # unanswered requests whose retry replayed a stored trade
    traded_on_retry: int = 0
    retry_failures: list[str] = field(default_factory=list)
    replays_ok: int = 0
    replays_tried: int = 0
    new_trades: int = 0
    keys_answered: int = 0
    processes_killed: int = 0
    restart_s: float = 0.0
    audit_ok: bool = False
    audit_line: str = ""
    statuses: Counter = field(default_factory=Counter)

    @property
    def lost(self) -> int:
        return self.acked - self.found

    @property
    def doubled(self) -> int:
        return self.new_trades - self.keys_answered


def kill_round(args, env, server: Server, traders: list[Trader], *, prefix: str, number: int) -> tuple[KillRound, Server]:
    """Load ``server``, kill it, start a new one, check the money; return the round and the new server."""
    from django.db import connections

    from bellwether.markets.models import IdempotencyKey, Trade

    result = KillRound()
    users = [t.user for t in traders]
    connections.close_all()
    trades_before = Trade.objects.filter(user__in=users).count()
    connections.close_all()
    killed = threading.Event()
    logs = [ClientLog() for _ in traders]
    threads = [
        threading.Thread(
            target=trading_client, daemon=True,
            args=(server.port, i, trader),
            kwargs={"prefix": prefix, "rng": random.Random(args.seed * 7919 + number * 104729 + i), "killed": killed, "log": logs[i]},
        )
        for i, trader in enumerate(traders)
    ]
    for thread in threads:
        thread.start()
    # The load runs for --duration seconds; the kill then lands while every client has a request in flight.
    threading.Event().wait(args.duration)
    killed.set()
    kill_at = time.perf_counter()
    result.processes_killed = server.kill()
    for thread in threads:
        thread.join(REQUEST_TIMEOUT_S + 5)
    if any(thread.is_alive() for thread in threads):
        raise RuntimeError("a trading client did not stop after the kill")
    server.stop()
    server = Server(env, workers=args.workers, log_path=args.var_dir / f"server-kill-{number}.log")
    result.restart_s = time.perf_counter() - kill_at

    acked = {key: entry for log in logs for key, entry in log.acked.items()}
    unanswered = [sent for log in logs for sent in log.unanswered]
    for log in logs:
        result.statuses.update(log.statuses)
    result.acked, result.unanswered = len(acked), len(unanswered)

    # Every acknowledged trade must be there, for its trader, with the shares asked for.
    connections.close_all()
    rows = {
        pk: (user_id, slug, side, shares)
        for pk, user_id, slug, side, shares in Trade.objects.filter(pk__in=[tid for tid, _ in acked.values()]).values_list(
            "pk", "user_id", "market__slug", "side", "shares_micro"
        )
    }
    for key, (trade_id, sent) in acked.items():
        row = rows.get(trade_id)
        if row is None:
            continue
        result.found += 1
        expected = (traders[sent.trader].user.pk, sent.slug, sent.body["side"], int(sent.body["shares"]) * MICRO)
        if row != expected:
            result.mismatched.append(f"{key}: trade {trade_id} is {row}, the request was {expected}")

    # Requests left without an answer: the first retry trades or replays, the second must replay the same trade.
    answered_keys = set(acked)
    for sent in unanswered:
        token = traders[sent.trader].token
        first = one_trade(server.port, token=token, slug=sent.slug, body=sent.body, key=sent.key)
        second = one_trade(server.port, token=token, slug=sent.slug, body=sent.body, key=sent.key)
        if first[0] != 201:
            result.retry_failures.append(f"{sent.key}: retry answered {first[0]} {error_code(first[2])}")
            continue
        answered_keys.add(sent.key)
        if first[1].get("idempotent-replayed") == "true":
            result.committed_before_kill += 1
        else:
            result.traded_on_retry += 1
        if second[0] != 201 or second[1].get("idempotent-replayed") != "true" or second[2].get("trade_id") != first[2].get("trade_id"):
            result.retry_failures.append(
                f"{sent.key}: second retry answered {second[0]}, replayed={second[1].get('idempotent-replayed')}, "
                f"trade {second[2].get('trade_id')} vs {first[2].get('trade_id')}"
            )
    # A sample of acknowledged trades sent again: each must replay its own trade.
    sample = random.Random(args.seed + number).sample(sorted(acked), min(args.replay_sample, len(acked)))
    for key in sample:
        trade_id, sent = acked[key]
        status, headers, answer = one_trade(server.port, token=traders[sent.trader].token, slug=sent.slug, body=sent.body, key=key)
        result.replays_tried += 1
        if status == 201 and headers.get("idempotent-replayed") == "true" and answer.get("trade_id") == trade_id:
            result.replays_ok += 1
        else:
            result.retry_failures.append(
                f"{key}: replay of trade {trade_id} answered {status}, replayed={headers.get('idempotent-replayed')}, "
                f"trade {answer.get('trade_id')}"
            )

    # One trade per key answered 201, and one stored key per trade: nothing traded twice.
    connections.close_all()
    result.new_trades = Trade.objects.filter(user__in=users).count() - trades_before
    result.keys_answered = len(answered_keys)
    stored_keys = IdempotencyKey.objects.filter(user__in=users, key__startswith=f"{prefix}-").count()
    if stored_keys != len(answered_keys):
        result.retry_failures.append(f"{stored_keys} idempotency keys stored for {len(answered_keys)} keys answered 201")
    connections.close_all()
    result.audit_ok, result.audit_line = run_audit(env)
    return result, server


# ---------------------------------------------------------------------------
# 2. Double spend


@dataclass
class DoubleSpendRound:
    """The figures of one double-spend round."""

    balance_micro: int = 0
    cost_micro: int = 0
    succeeded: int = 0
    insufficient: int = 0
    other: list[str] = field(default_factory=list)
    balance_after_micro: int = 0
    trades: int = 0

    @property
    def ok(self) -> bool:
        return (
            self.succeeded == 1 and not self.other and self.trades == 1
            and self.balance_after_micro == self.balance_micro - self.cost_micro >= 0
        )


def double_spend_round(args, port: int, *, run_id: str, number: int) -> DoubleSpendRound:
    """Give a fresh user one buy and a half, fire ``--racers`` buys at once, and check the outcome."""
    from django.db import connections
    from django.test.utils import override_settings

    from bellwether.ledger.models import Account
    from bellwether.markets import services
    from bellwether.markets.models import Market, Trade

    result = DoubleSpendRound()
    market = Market.objects.get(slug=DOUBLE_SPEND_SLUG)
    shares_micro = DOUBLE_SPEND_SHARES * MICRO
    fill = services.quote(market=market, request=services.TradeRequest(outcome="yes", side="buy", shares_micro=shares_micro))
    # Enough for the first buy, never for a second one (which costs more, the price having risen).
    result.balance_micro = fill.amount_micro + fill.amount_micro // 2
    with override_settings(STARTING_BALANCE_MICRO=result.balance_micro):
        user = get_or_create_user(f"rel-ds-{run_id}-{number}")
    racer = with_token(user)
    connections.close_all()

    barrier = threading.Barrier(args.racers)
    answers: list[tuple[int, dict] | str] = [""] * args.racers
    body = {"outcome": "yes", "side": "buy", "shares": str(DOUBLE_SPEND_SHARES)}

    def race(slot: int) -> None:
        conn = http.client.HTTPConnection(LOOPBACK, port, timeout=REQUEST_TIMEOUT_S)
        try:
            conn.connect()
            barrier.wait(timeout=REQUEST_TIMEOUT_S)
            status, _, answer = post_trade(conn, token=racer.token, slug=DOUBLE_SPEND_SLUG, body=body, key=f"rel-ds-{run_id}-{number}-{slot}")
            answers[slot] = (status, answer)
        except (OSError, http.client.HTTPException, threading.BrokenBarrierError) as exc:
            answers[slot] = f"no answer ({type(exc).__name__})"
        finally:
            conn.close()

    threads = [threading.Thread(target=race, args=(slot,), daemon=True) for slot in range(args.racers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(REQUEST_TIMEOUT_S * 2)
    for answer in answers:
        if isinstance(answer, str):
            result.other.append(answer or "no answer (the thread did not finish)")
        elif answer[0] == 201:
            result.succeeded += 1
            result.cost_micro = round(float(answer[1].get("amount", "0")) * MICRO)
        elif answer[0] == 422 and error_code(answer[1]) == "insufficient_funds":
            result.insufficient += 1
        else:
            result.other.append(f"{answer[0]} {error_code(answer[1])}: {str(answer[1])[:120]}")
    connections.close_all()
    result.balance_after_micro = Account.objects.get(user=user).balance_micro
    result.trades = Trade.objects.filter(user=user).count()
    return result


# ---------------------------------------------------------------------------
# 3. Hostile inputs


@dataclass
class Probe:
    """One hostile request and the statuses it may answer."""

    name: str
    method: str
    target: bytes  # the request target exactly as sent
    expect: tuple[int, ...]
    body: bytes = b""
    headers: tuple[tuple[bytes, bytes], ...] = ()
    host: bytes | None = None  # None: the server's own address
    check: Callable[[int, bytes], str | None] | None = None  # extra check of a success; returns a problem or None
    live: bool = False  # sent to the live server (its 200 is a stream: only its first bytes are read)

    @property
    def api(self) -> bool:
        return self.target.startswith(b"/api/")


@dataclass
class Answer:
    probe: Probe
    status: int  # 0: no answer
    note: str = ""
    body: bytes = b""
    problems: list[str] = field(default_factory=list)


@dataclass
class HostileContext:
    """What the hostile requests need: tokens, market slugs and a CSRF token for the page forms."""

    trader: str
    editor: str
    resolver: str
    trade_slug: str
    target_slug: str  # an open market only the resolve probes touch
    csrf_cookie: str = ""
    csrf_form: str = ""


def _q(text: str) -> str:
    return urllib.parse.quote(text, safe="")


def _json(value) -> bytes:
    return json.dumps(value).encode()


def _cursor(value) -> str:
    return base64.urlsafe_b64encode(json.dumps(value).encode()).decode().rstrip("=")


def _outcome_slugs_distinct(status: int, body: bytes) -> str | None:
    """Return a problem unless the created market's outcomes have distinct, non-empty slugs."""
    try:
        slugs = [o["slug"] for o in json.loads(body)["outcomes"]]
    except (ValueError, KeyError, TypeError):
        return "the 201 body has no outcomes"
    if len(set(slugs)) != len(slugs) or not all(slugs):
        return f"outcome slugs {slugs} are not distinct and non-empty"
    return None


def _no_drafts_listed(status: int, body: bytes) -> str | None:
    try:
        items = json.loads(body)["items"]
    except (ValueError, KeyError, TypeError):
        return "the 200 body has no items"
    shown = [m.get("slug") for m in items if m.get("status") == "draft" or m.get("slug") == DRAFT_SLUG]
    return f"drafts listed to an anonymous client: {shown}" if shown else None


def hostile_probes(ctx: HostileContext, *, run_id: str) -> list[Probe]:
    """Return the fixed list of hostile requests, in the order they are sent."""
    probes: list[Probe] = []

    def page(name, target, expect, *, method="GET", body=b"", headers=(), host=None, form=None, csrf=False):
        hdrs = list(headers)
        if form is not None:
            fields = dict(form)
            if csrf:
                fields["csrfmiddlewaretoken"] = ctx.csrf_form
                hdrs += [(b"Cookie", f"csrftoken={ctx.csrf_cookie}".encode()), (b"Referer", b"http://127.0.0.1/")]
            body = urllib.parse.urlencode(fields).encode()
            hdrs.append((b"Content-Type", b"application/x-www-form-urlencoded"))
        probes.append(Probe(name, method, target if isinstance(target, bytes) else target.encode(), expect, body, tuple(hdrs), host))

    def api(name, target, expect, *, method="GET", token=None, payload=None, body=b"", content_type=b"application/json", headers=(), check=None):
        hdrs = list(headers)
        if token:
            hdrs.append((b"Authorization", f"Bearer {token}".encode()))
        if payload is not None:
            body = _json(payload)
        if body:
            hdrs.append((b"Content-Type", content_type))
        probes.append(Probe(name, method, b"/api/v1" + (target if isinstance(target, bytes) else target.encode()), expect, body, tuple(hdrs), check=check))

    trades = f"/markets/{ctx.trade_slug}/trades"
    resolve = f"/markets/{ctx.target_slug}/resolve"

    def trade(name, payload, expect=(400,), **extra):
        api(name, trades, expect, method="POST", token=ctx.trader, payload=payload, **extra)

    # NUL bytes: in the path, the query string, a form field and a JSON body.
    page("page: NUL in a search query (/search/?q=%00)", "/search/?q=%00", (400,))
    page("page: NUL in the markets filter", "/markets/?tag=%00", (400,))
    page("page: NUL in a path", "/markets/rel%00load/", (400, 404))
    page("page: NUL in a feed's page number", "/feed/rss/?page=%00", (400,))
    api("API: NUL in ?tag=", "/markets?tag=%00", (400,))
    api("API: NUL in ?section=", "/markets?section=a%00b", (400,))
    api("API: NUL in a market slug", "/markets/rel-load-00%00", (400, 404))
    api("API: NUL in a history slug", "/markets/%00/history", (400, 404))
    trade("API: NUL in a trade's outcome", {"outcome": "ye\u0000s", "side": "buy", "shares": "1"})
    trade("API: raw NUL byte in a JSON body", None, body=b'{"outcome": "yes\x00", "side": "buy", "shares": "1"}')
    api("API: NUL in a market question", "/markets", (400,), method="POST", token=ctx.editor,
        payload={"question": "Will\u0000 it?", "liquidity_b": "100", "close_at": "2036-01-01T00:00:00Z"})
    api("API: NUL in a resolution note", resolve, (400,), method="POST", token=ctx.resolver, payload={"outcome": "yes", "note": "a\u0000b"})
    api("API: lone surrogate in a trade's outcome", trades, (400,), method="POST", token=ctx.trader,
        body=b'{"outcome": "\\ud800", "side": "buy", "shares": "1"}')

    # Invalid UTF-8 and odd bytes.
    page("page: invalid UTF-8 in a search query", "/search/?q=%ff%fe%fd", (200, 400))
    page("page: invalid UTF-8 in the markets filter", "/markets/?tag=%c3%28&sort=%80", (200, 400))
    page("page: raw non-UTF-8 bytes in the request line", b"/search/?q=\xff\xfe", (200, 400))
    page("page: invalid UTF-8 in a path", "/markets/%ff%fe/", (400, 404))
    page("page: a path in another script", "/tags/" + _q("日本") + "/", (404,))
    api("API: invalid UTF-8 in ?tag=", "/markets?tag=%ff", (200, 400))
    api("API: invalid UTF-8 in a market slug", "/markets/%ff%fe", (400, 404))
    api("API: invalid UTF-8 in a cursor", "/markets?cursor=%ff%ff", (400,))

    # Huge integers and negative or non-numeric ones where a number is expected.
    big = "9" * 30
    page("page: a huge issue number", f"/highlights/{big}/", (404,))
    page("page: a huge article id in a panel", f"/markets/panels/article/{big}/", (200, 404))
    page("page: a huge section id in a panel", f"/markets/panels/section/{big}/", (200, 404))
    page("page: a huge page number on the markets index", f"/markets/?page={big}", (200, 404))
    page("page: a negative page number on search", "/search/?q=vote&page=-1", (200, 404))
    page("page: a huge page number on a feed", f"/feed/rss/?page={big}", (200, 404))
    page("page: a huge page number on the portfolio", f"/portfolio/?page={big}", (200, 302, 404))
    api("API: a huge article id", f"/articles/{big}", (400, 404))
    api("API: a negative article id", "/articles/-1", (400, 404))
    api("API: a huge limit", f"/markets?limit={big}", (400,))
    api("API: a negative limit", "/markets?limit=-5", (400,))
    api("API: a huge history limit", f"/markets/{ctx.trade_slug}/history?limit={big}", (400,))
    api("API: a huge article id in a new market", "/markets", (400,), method="POST", token=ctx.editor,
        payload={"question": "Huge ids?", "liquidity_b": "100", "close_at": "2036-01-01T00:00:00Z", "articles": [int(big)]})

    # Long lists.
    many = list(range(1, 70_001))
    api("API: 70,000 article ids in a new market", "/markets", (400,), method="POST", token=ctx.editor,
        payload={"question": "Many ids?", "liquidity_b": "100", "close_at": "2036-01-01T00:00:00Z", "articles": many})
    api("API: 70,000 outcomes in a new market", "/markets", (400,), method="POST", token=ctx.editor,
        payload={"question": "Many outcomes?", "liquidity_b": "100", "close_at": "2036-01-01T00:00:00Z", "outcomes": [f"o{i}" for i in range(70_000)]})
    api("API: 70,000 probabilities in a resolution", resolve, (400,), method="POST", token=ctx.resolver,
        payload={"probabilities": {f"o{i}": "0" for i in range(70_000)}})
    api("API: 51 outcomes in a new market", "/markets", (400,), method="POST", token=ctx.editor,
        payload={"question": "Fifty-one?", "liquidity_b": "100", "close_at": "2036-01-01T00:00:00Z", "outcomes": [f"o{i}" for i in range(51)]})
    api("API: 21 resolution sources", resolve, (400,), method="POST", token=ctx.resolver,
        payload={"outcome": "yes", "sources": [f"https://example.org/{i}" for i in range(21)]})

    # Amounts that are not plain ASCII decimals, or not positive, or not finite.
    for label, value in (
        ("'1_000'", "1_000"), ("' 1 '", " 1 "), ("Arabic-Indic digits", "١٠"), ("full-width digits", "１０"),
        ("a superscript two", "²"), ("'NaN'", "NaN"), ("'Infinity'", "Infinity"), ("'-Infinity'", "-Infinity"),
        ("'-1'", "-1"), ("'0'", "0"), ("'-0'", "-0"), ("'1e3'", "1e3"), ("'0x10'", "0x10"),
        ("seven decimals", "1.0000001"), ("30 digits", big), ("an empty string", ""),
    ):
        trade(f"API: shares {label}", {"outcome": "yes", "side": "buy", "shares": value})
    trade("API: shares as a JSON number", {"outcome": "yes", "side": "buy", "shares": 10})
    trade("API: shares as 1e400 (a JSON number past float range)", None, body=b'{"outcome": "yes", "side": "buy", "shares": 1e400}')
    trade("API: shares as NaN (not JSON)", None, body=b'{"outcome": "yes", "side": "buy", "shares": NaN}')
    trade("API: amount 'Infinity'", {"outcome": "yes", "side": "buy", "amount": "Infinity"})
    trade("API: amount '-5'", {"outcome": "yes", "side": "buy", "amount": "-5"})
    trade("API: max_cost 'NaN'", {"outcome": "yes", "side": "buy", "shares": "1", "max_cost": "NaN"})
    trade("API: min_proceeds '-1'", {"outcome": "yes", "side": "sell", "shares": "1", "min_proceeds": "-1"})
    trade("API: shares true (a JSON boolean)", {"outcome": "yes", "side": "buy", "shares": True})
    trade("API: a sell of more than held", {"outcome": "yes", "side": "sell", "shares": "999999999"})
    trade("API: an unknown side", {"outcome": "yes", "side": "short", "shares": "1"})
    api("API: liquidity_b 'NaN' in a new market", "/markets", (400,), method="POST", token=ctx.editor,
        payload={"question": "NaN liquidity?", "liquidity_b": "NaN", "close_at": "2036-01-01T00:00:00Z"})
    api("API: a close_at past year 9999", "/markets", (400,), method="POST", token=ctx.editor,
        payload={"question": "Far future?", "liquidity_b": "100", "close_at": "9999-12-31T23:59:59-23:59"})
    api("API: quote with amount 1e400", f"/markets/{ctx.trade_slug}/quote", (400,), method="POST",
        payload={"outcome": "yes", "side": "buy", "amount": "1e400"})

    # Bodies: too large, too deep, not JSON, not an object.
    trade("API: a 2 MB JSON body", {"outcome": "yes", "side": "buy", "shares": "1", "pad": "x" * 2_000_000}, expect=(413,))
    trade("API: JSON nested 100,000 deep", None, body=b'{"outcome": ' + b"[" * 100_000 + b"]" * 100_000 + b"}")
    trade("API: a body that is not JSON", None, body=b'{"outcome": ')
    trade("API: a JSON array body", [], )
    trade("API: a JSON null body", None, body=b"null")
    trade("API: an empty JSON body", None, body=b"")
    api("API: a form-encoded trade", trades, (400,), method="POST", token=ctx.trader, body=b"outcome=yes&side=buy&shares=1",
        content_type=b"application/x-www-form-urlencoded")
    # No contract names the content type; a browser cannot send a bearer token by itself, so a text/plain trade is no CSRF hole.
    api("API: a JSON trade sent as text/plain", trades, (201, 400, 415), method="POST", token=ctx.trader,
        body=_json({"outcome": "yes", "side": "buy", "shares": "1"}), content_type=b"text/plain")

    # Overlong text in every field.
    api("API: a 301-character question", "/markets", (400,), method="POST", token=ctx.editor,
        payload={"question": "q" * 301, "liquidity_b": "100", "close_at": "2036-01-01T00:00:00Z"})
    api("API: a 900 kB question", "/markets", (400,), method="POST", token=ctx.editor,
        payload={"question": "q" * 900_000, "liquidity_b": "100", "close_at": "2036-01-01T00:00:00Z"})
    api("API: a 10,001-character description", "/markets", (400,), method="POST", token=ctx.editor,
        payload={"question": "Long description?", "liquidity_b": "100", "close_at": "2036-01-01T00:00:00Z", "description": "d" * 10_001})
    api("API: 10,001-character resolution criteria", "/markets", (400,), method="POST", token=ctx.editor,
        payload={"question": "Long criteria?", "liquidity_b": "100", "close_at": "2036-01-01T00:00:00Z", "resolution_criteria": "c" * 10_001})
    api("API: a 201-character outcome name", "/markets", (400,), method="POST", token=ctx.editor,
        payload={"question": "Long outcome?", "liquidity_b": "100", "close_at": "2036-01-01T00:00:00Z", "outcomes": ["a" * 201, "b"]})
    api("API: a 121-character slug", "/markets", (400,), method="POST", token=ctx.editor,
        payload={"question": "Long slug?", "liquidity_b": "100", "close_at": "2036-01-01T00:00:00Z", "slug": "s" * 121})
    api("API: a question of spaces only", "/markets", (400,), method="POST", token=ctx.editor,
        payload={"question": " \t\u2003 ", "liquidity_b": "100", "close_at": "2036-01-01T00:00:00Z"})
    api("API: a 2,001-character resolution note", resolve, (400,), method="POST", token=ctx.resolver, payload={"outcome": "yes", "note": "n" * 2001})
    api("API: a 2,001-character resolution source", resolve, (400,), method="POST", token=ctx.resolver,
        payload={"outcome": "yes", "sources": ["https://example.org/" + "s" * 1981]})
    trade("API: a 100,000-character outcome", {"outcome": "o" * 100_000, "side": "buy", "shares": "1"})
    trade("API: a 201-character Idempotency-Key", {"outcome": "yes", "side": "buy", "shares": "1"}, headers=((b"Idempotency-Key", b"k" * 201),))
    trade("API: a non-ASCII Idempotency-Key", {"outcome": "yes", "side": "buy", "shares": "1"}, headers=((b"Idempotency-Key", "clé-ü".encode()),))
    api("API: a 10,000-character ?tag=", "/markets?tag=" + "t" * 10_000, (400,))
    page("page: an 8,000-character search query", "/search/?q=" + "vote+" * 1600, (200,))
    page("page: a 5,000-character market slug", "/markets/" + "m" * 5000 + "/", (404,))

    # Resolution sources that are not web addresses (the target market must stay open).
    for label, source in (("javascript:", "javascript:alert(document.cookie)"), ("data:", "data:text/html,<script>alert(1)</script>"),
                          ("a bare word", "example"), ("//host", "//evil.example/x")):
        api(f"API: a {label} resolution source", resolve, (400,), method="POST", token=ctx.resolver,
            payload={"outcome": "yes", "sources": [source]})
    api("API: probabilities 'NaN'", resolve, (400,), method="POST", token=ctx.resolver, payload={"probabilities": {"yes": "NaN", "no": "1"}})
    api("API: probabilities summing to 1.1", resolve, (400,), method="POST", token=ctx.resolver, payload={"probabilities": {"yes": "0.5", "no": "0.6"}})
    api("API: an unknown outcome", resolve, (400, 404), method="POST", token=ctx.resolver, payload={"outcome": "maybe"})
    api("API: a resolution by a plain trader", resolve, (403,), method="POST", token=ctx.trader, payload={"outcome": "yes"})

    # Outcome names in other scripts, and names that slug alike.
    api("API: outcomes '日本' and '대한민국'", "/markets", (201,), method="POST", token=ctx.editor, check=_outcome_slugs_distinct,
        payload={"question": f"Which team wins? ({run_id} a)", "liquidity_b": "100", "close_at": "2036-01-01T00:00:00Z", "outcomes": ["日本", "대한민국"]})
    api("API: outcomes 'C' and 'C++'", "/markets", (201,), method="POST", token=ctx.editor, check=_outcome_slugs_distinct,
        payload={"question": f"Which language? ({run_id} b)", "liquidity_b": "100", "close_at": "2036-01-01T00:00:00Z", "outcomes": ["C", "C++"]})
    api("API: outcomes in Arabic, Hindi and Greek", "/markets", (201,), method="POST", token=ctx.editor, check=_outcome_slugs_distinct,
        payload={"question": f"Which city? ({run_id} c)", "liquidity_b": "100", "close_at": "2036-01-01T00:00:00Z",
                 "outcomes": ["القاهرة", "दिल्ली", "Αθήνα"]})

    # A draft market, asked for by people who may not see it.
    api("API: a draft market, anonymous", f"/markets/{DRAFT_SLUG}", (404,))
    api("API: a draft market's history, anonymous", f"/markets/{DRAFT_SLUG}/history", (404,))
    api("API: a draft market's quote, anonymous", f"/markets/{DRAFT_SLUG}/quote", (404,), method="POST", payload={"outcome": "yes", "side": "buy", "shares": "1"})
    api("API: a draft market, plain trader", f"/markets/{DRAFT_SLUG}", (404,), token=ctx.trader)
    api("API: a trade on a draft market", f"/markets/{DRAFT_SLUG}/trades", (404,), method="POST", token=ctx.trader,
        payload={"outcome": "yes", "side": "buy", "shares": "1"})
    api("API: ?status=draft, anonymous", "/markets?status=draft", (200,), check=_no_drafts_listed)
    page("page: a draft market, anonymous", f"/markets/{DRAFT_SLUG}/", (404,))
    page("page: a draft market's chart data, anonymous", f"/markets/{DRAFT_SLUG}/chart.json", (404,))

    # Malformed cursors.
    for label, cursor in (
        ("'abc'", "abc"), ("'!!!!'", "!!!!"), ("base64 of an object", _cursor({"a": 1})), ("a negative id", _cursor(["2026-01-01T00:00:00+00:00", -1])),
        ("a huge id", _cursor(["2026-01-01T00:00:00+00:00", 10**30])), ("a naive date", _cursor(["2026-01-01T00:00:00", 1])),
        ("year 10000", _cursor(["10000-01-01T00:00:00+00:00", 1])), ("5,000 characters", "A" * 5000),
    ):
        api(f"API: markets cursor {label}", "/markets?cursor=" + _q(cursor), (400,))
    api("API: history cursor '!!!!'", f"/markets/{ctx.trade_slug}/history?cursor=!!!!", (400,))
    api("API: history cursor with a huge id", f"/markets/{ctx.trade_slug}/history?cursor=" + _cursor([10**30, 0]), (400,))
    api("API: transfers cursor 'abc'", "/me/transfers?cursor=abc", (400,), token=ctx.trader)
    api("API: articles cursor of floats", "/articles?cursor=" + _cursor([1.5, 2.5]), (400,))

    # Credentials that are not.
    for label, value in (
        ("'Bearer' alone", b"Bearer"), ("'Bearer ' and 10,000 characters", b"Bearer " + b"x" * 10_000),
        ("Basic credentials", b"Basic " + base64.b64encode(b"admin:admin")), ("SQL in a token", b"Bearer bw_' OR '1'='1"),
        ("non-ASCII bytes", b"Bearer \xff\xfe\xfd"), ("a revoked-looking prefix only", b"Bearer bw_"),
    ):
        api(f"API: Authorization {label}", "/me", (400, 401), headers=((b"Authorization", value),))
    api("API: two Authorization headers", "/me", (400, 401), headers=((b"Authorization", b"Bearer a"), (b"Authorization", f"Bearer {ctx.trader}".encode())))
    api("API: a trade with a bad token", trades, (401,), method="POST", payload={"outcome": "yes", "side": "buy", "shares": "1"},
        headers=((b"Authorization", b"Bearer bw_not-a-token"),))

    # The live server: resume points that are not trade ids, and a draft's stream.
    def live(name, target, expect, *, headers=()):
        probes.append(Probe(name, "GET", target.encode(), expect, headers=tuple(headers), live=True))

    live("live: ?since= a superscript two", "/live/markets/?since=" + _q("²"), (200, 400))
    live("live: ?since= Arabic-Indic digits", "/live/markets/?since=" + _q("١٢"), (200, 400))
    live("live: ?since= 30 digits", f"/live/markets/?since={big}", (200, 400))
    live("live: ?since= -1", "/live/markets/?since=-1", (200, 400))
    live("live: Last-Event-ID of 30 digits", f"/live/markets/{ctx.trade_slug}/", (200, 400), headers=((b"Last-Event-ID", big.encode()),))
    live("live: NUL in ?since=", "/live/markets/?since=%00", (200, 400))
    live("live: a draft market's stream", f"/live/markets/{DRAFT_SLUG}/", (404,))
    live("live: a 5,000-character market slug", "/live/markets/" + "m" * 5000 + "/", (404,))

    # Idempotency misuse, unknown things, wrong methods, a foreign Host.
    key = f"rel-hostile-{run_id}".encode()
    trade("API: a first trade with an Idempotency-Key", {"outcome": "yes", "side": "buy", "shares": "1"}, expect=(201,), headers=((b"Idempotency-Key", key),))
    trade("API: the same Idempotency-Key, another body", {"outcome": "no", "side": "buy", "shares": "1"}, expect=(422,), headers=((b"Idempotency-Key", key),))
    api("API: a trade on an unknown market", "/markets/no-such-market/trades", (404,), method="POST", token=ctx.trader,
        payload={"outcome": "yes", "side": "buy", "shares": "1"})
    trade("API: a path-like outcome", {"outcome": "../../etc/passwd", "side": "buy", "shares": "1"})
    api("API: PUT on the market list", "/markets", (405,), method="PUT", token=ctx.editor, payload={})
    api("API: DELETE on a market", f"/markets/{ctx.trade_slug}", (405,), method="DELETE", token=ctx.editor)
    page("page: a foreign Host header", "/", (400,), host=b"evil.example")
    page("page: a Host header with a NUL", "/", (400,), host=b"127.0.0.1\x00.evil")

    # Page forms.
    page("page: sign-up without a CSRF token", "/highlights/subscribe/", (403,), method="POST", form={"email": "a@example.org"})
    page("page: sign-up with a NUL in the email", "/highlights/subscribe/", (400,), method="POST", form={"email": "a\x00@example.org"}, csrf=True)
    page("page: sign-up with a 5,000-character email", "/highlights/subscribe/", (400, 429), method="POST", form={"email": "a" * 5000 + "@example.org"}, csrf=True)
    page("page: log-in with a NUL in the username", "/accounts/login/", (400,), method="POST", form={"login": "adm\x00in", "password": "x"}, csrf=True)
    page("page: a forged confirmation link", "/highlights/confirm/" + "x" * 300 + "/", (400, 404))
    page("page: a forged unsubscribe link", "/highlights/unsubscribe/" + "x" * 300 + "/", (404,))
    return probes


def send_raw(port: int, probe: Probe) -> tuple[int, dict[str, str], bytes]:
    """Send ``probe`` byte for byte on a fresh connection; return status, headers and body.

    A live stream's 200 never ends: only its first bytes are read, which must be the ``retry:`` prelude.
    """
    lines = [probe.method.encode() + b" " + probe.target + b" HTTP/1.1",
             b"Host: " + (probe.host if probe.host is not None else f"{LOOPBACK}:{port}".encode()),
             b"Connection: close", b"Accept: application/json, text/html"]
    lines += [name + b": " + value for name, value in probe.headers]
    if probe.body or probe.method in ("POST", "PUT", "PATCH"):
        lines.append(b"Content-Length: " + str(len(probe.body)).encode())
    request = b"\r\n".join(lines) + b"\r\n\r\n" + probe.body
    with socket.create_connection((LOOPBACK, port), timeout=REQUEST_TIMEOUT_S) as sock:
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            # A server may answer (413) and close before reading a large body.
            sock.sendall(request)
        response = http.client.HTTPResponse(sock, method=probe.method)
        response.begin()
        headers = {k.lower(): v for k, v in response.getheaders()}
        if probe.live and response.status == 200:
            return response.status, headers, response.read(len(STREAM_PRELUDE))
        return response.status, headers, response.read()


def csrf_pair(port: int) -> tuple[str, str]:
    """Return (cookie, form value) of a CSRF token from the highlights sign-up box."""
    conn = http.client.HTTPConnection(LOOPBACK, port, timeout=REQUEST_TIMEOUT_S)
    try:
        conn.request("GET", "/highlights/signup-box/", headers={"Accept": "text/html"})
        response = conn.getresponse()
        html = response.read().decode("utf-8", "replace")
        cookie = ""
        for name, value in response.getheaders():
            if name.lower() == "set-cookie" and value.startswith("csrftoken="):
                cookie = value.split(";", 1)[0].split("=", 1)[1]
    finally:
        conn.close()
    match = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', html)
    return cookie, match.group(1) if match else ""


def wait_for_live(live_port: int) -> bool:
    """Return once the live server streams (it starts after the pages, and /health/ does not cover it); False if it never does."""
    probe = Probe("live: the site stream", "GET", b"/live/markets/", (200,), live=True)
    deadline = time.monotonic() + LIVE_START_TIMEOUT_S
    while time.monotonic() < deadline:
        try:
            if send_raw(live_port, probe)[2] == STREAM_PRELUDE:
                return True
        except (OSError, http.client.HTTPException):
            pass
        time.sleep(0.2)
    return False


def run_hostile(port: int, live_port: int, ctx: HostileContext, *, run_id: str) -> list[Answer]:
    """Send every hostile request; return each with its answer and what is wrong with it."""
    ctx.csrf_cookie, ctx.csrf_form = csrf_pair(port)
    wait_for_live(live_port)
    answers = []
    for probe in hostile_probes(ctx, run_id=run_id):
        try:
            status, headers, body = send_raw(live_port if probe.live else port, probe)
            answer = Answer(probe, status, body=body)
        except (OSError, http.client.HTTPException) as exc:
            answers.append(Answer(probe, 0, note=f"no answer ({type(exc).__name__}: {exc})", problems=["no answer"]))
            continue
        if status >= 500:
            answer.problems.append(f"answered {status}")
        elif status not in probe.expect:
            answer.problems.append(f"answered {status}, expected {' or '.join(map(str, probe.expect))}")
        if probe.api and status >= 400:
            try:
                error = json.loads(body)["error"]
                if not (isinstance(error["code"], str) and isinstance(error["message"], str)):
                    raise TypeError
            except (ValueError, KeyError, TypeError):
                answer.problems.append(f"{status} without the JSON error body")
        if probe.live and status == 200 and body != STREAM_PRELUDE:
            answer.problems.append(f"the stream began with {body!r}, not {STREAM_PRELUDE!r}")
        if probe.check is not None and status in probe.expect and status < 300:
            problem = probe.check(status, body)
            if problem:
                answer.problems.append(problem)
        answers.append(answer)
    if not ctx.csrf_form:
        answers.append(Answer(Probe("page: a CSRF token from the sign-up box", "GET", b"/highlights/signup-box/", (200,)), 200,
                              problems=["no CSRF token found, so the form probes were refused for it"]))
    return answers


def _excerpt(body: bytes) -> str:
    text = body.decode("utf-8", "replace")
    try:
        error = json.loads(text)["error"]
        return f'{error["code"]}: {error["message"]}'[:160]
    except (ValueError, KeyError, TypeError):
        title = re.search(r"<title>(.*?)</title>", text, re.S)
        return (title.group(1).strip() if title else " ".join(text.split()))[:160]


# ---------------------------------------------------------------------------
# Report


def verdict(ok: bool) -> str:
    return "met" if ok else "NOT met"


def credits(micro: int) -> str:
    return f"{micro / MICRO:,.6f}".rstrip("0").rstrip(".")


def report_rows(args, kills: list[KillRound], spends: list[DoubleSpendRound], hostile: list[Answer] | None, final_audit: tuple[bool, str] | None) -> list[tuple[str, str, str]]:
    """Return the report's rows: (figure, value, verdict); verdict "—" for a figure without a target."""
    rows: list[tuple[str, str, str]] = []
    if "kill" in args.sections:
        acked = sum(r.acked for r in kills)
        found = sum(r.found for r in kills)
        lost = sum(r.lost for r in kills)
        mismatched = sum(len(r.mismatched) for r in kills)
        rows.append((
            "kill -9 under load: rounds",
            f"{len(kills)} x ({args.clients} HTTP clients trading for {args.duration:g} s, then SIGKILL to all "
            f"{max((r.processes_killed for r in kills), default=0)} server processes at once, then a restart)",
            "—",
        ))
        rows.append(("kill -9 under load: trades acknowledged (201) / found after the restart",
                     f"{acked:,} / {found:,} (lost {lost}, mismatched {mismatched})", verdict(lost == 0 and mismatched == 0 and acked > 0)))
        unanswered = sum(r.unanswered for r in kills)
        committed = sum(r.committed_before_kill for r in kills)
        retried = sum(r.traded_on_retry for r in kills)
        failures = sum(len(r.retry_failures) for r in kills)
        rows.append((
            "kill -9 under load: requests without an answer, retried twice with their Idempotency-Key",
            f"{unanswered}: {committed} had committed (replayed), {retried} traded on the first retry; {failures} wrong answers",
            verdict(failures == 0 and committed + retried == unanswered),
        ))
        replays_ok = sum(r.replays_ok for r in kills)
        replays = sum(r.replays_tried for r in kills)
        rows.append(("kill -9 under load: acknowledged trades sent again with their Idempotency-Key",
                     f"{replays_ok} / {replays} replayed the same trade", verdict(replays_ok == replays)))
        doubled = sum(r.doubled for r in kills)
        rows.append(("kill -9 under load: new Trade rows / keys answered 201",
                     f"{sum(r.new_trades for r in kills):,} / {sum(r.keys_answered for r in kills):,} (traded twice: {doubled})",
                     verdict(doubled == 0)))
        restarts = [r.restart_s for r in kills]
        rows.append(("kill -9 under load: kill to /health/ 200 on a fresh server",
                     f"max {max(restarts):.1f} s" if restarts else "—", "—"))
        passed = sum(r.audit_ok for r in kills)
        rows.append(("kill -9 under load: bellwether audit after each restart", f"{passed} / {len(kills)} passed", verdict(passed == len(kills))))
    if "double-spend" in args.sections:
        succeeded = sum(r.succeeded for r in spends)
        refused = sum(r.insufficient for r in spends)
        other = sum(len(r.other) for r in spends)
        good = sum(r.ok for r in spends)
        rows.append((
            "double spend: racing buys against a balance of one buy and a half",
            f"{len(spends)} rounds x {args.racers} buys at once: {succeeded} succeeded, {refused} refused 422 "
            f"insufficient_funds, {other} other answers; {good} / {len(spends)} rounds with exactly one success",
            verdict(good == len(spends) and len(spends) > 0),
        ))
        lowest = min((r.balance_after_micro for r in spends), default=0)
        exact = all(r.balance_after_micro == r.balance_micro - r.cost_micro for r in spends)
        rows.append(("double spend: balance after each round", f"lowest {credits(lowest)} credits; balance = start - one buy in every round: {'yes' if exact else 'NO'}",
                     verdict(lowest >= 0 and exact)))
    if hostile is not None:
        tried = len(hostile)
        pages = sum(not a.probe.api and not a.probe.live for a in hostile)
        streams = sum(a.probe.live for a in hostile)
        client_errors = sum(400 <= a.status < 500 for a in hostile)
        server_errors = [a for a in hostile if a.status >= 500]
        silent = [a for a in hostile if a.status == 0]
        wrong = [a for a in hostile if a.problems]
        rows.append(("hostile inputs: requests tried", f"{tried} ({pages} to pages, {tried - pages - streams} to the API, {streams} to the live server)", "—"))
        rows.append(("hostile inputs: answered 4xx", f"{client_errors}", "—"))
        rows.append(("hostile inputs: answered 5xx or not at all", f"{len(server_errors)} + {len(silent)}",
                     verdict(not server_errors and not silent)))
        rows.append(("hostile inputs: answered as expected (status, JSON error body, checks)", f"{tried - len(wrong)} / {tried}", verdict(not wrong)))
    if final_audit is not None:
        rows.append(("bellwether audit at the end", "passed" if final_audit[0] else f"FAILED: {final_audit[1]}", verdict(final_audit[0])))
    return rows


def print_report(args, db_label: str, rows, kills: list[KillRound], spends: list[DoubleSpendRound], hostile: list[Answer] | None, elapsed_s: float, load_before: str) -> None:
    """Print the table, then the details behind any figure that is not met."""
    print()
    print(
        f"Bellwether reliability on {db_label}; `bellwether serve --workers {args.workers}` (granian), "
        f"{os.cpu_count()} CPUs; API rate limits off for the run"
    )
    print()
    print("| figure | value | verdict |")
    print("|---|---|---|")
    for figure, value, result in rows:
        print(f"| {figure} | {value} | {result} |")
    print()
    for number, r in enumerate(kills, 1):
        others = ", ".join(f"{k}: {v}" for k, v in sorted(r.statuses.items())) or "none"
        print(f"kill round {number}: {r.acked:,} acknowledged, {r.unanswered} unanswered, restart {r.restart_s:.1f} s, "
              f"other answers under load: {others}; audit: {r.audit_line}")
        for line in r.mismatched + r.retry_failures:
            print(f"  {line}")
    for number, r in enumerate(spends, 1):
        if not r.ok:
            print(f"double-spend round {number}: start {credits(r.balance_micro)}, one buy {credits(r.cost_micro)}, "
                  f"after {credits(r.balance_after_micro)}, {r.succeeded} succeeded, {r.trades} trades; other: {r.other}")
    if hostile is not None:
        wrong = [a for a in hostile if a.problems]
        if wrong:
            print("hostile inputs not answered as expected:")
            for a in wrong:
                print(f"  {a.probe.name}: {'; '.join(a.problems)}{' - ' + _excerpt(a.body) if a.body else ''}{a.note}")
        if args.show:
            print("hostile inputs, every answer:")
            for a in hostile:
                print(f"  {a.status or '---'} {a.probe.name}: {_excerpt(a.body) if a.body else a.note}")
    print(f"run took {elapsed_s:.0f} s; load average at the start {load_before}, at the end {load_average()}")


# ---------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> None:
    """Prepare the database, run the three parts against real servers and print the report."""
    args = parse_args(argv)
    # SIGTERM must unwind through the `finally` blocks that stop the server.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    if args.database_url.startswith("sqlite:///"):
        args.var_dir.mkdir(parents=True, exist_ok=True)
    else:
        prepare_database(args, example_name="bellwether_bench_reliability")
    env = run_env(args)
    migrate_s = start_django(env)
    from django.db import connection, connections

    from bellwether.markets.models import Market

    if args.database_url.startswith("sqlite:///"):
        import sqlite3

        db_label = f"SQLite {sqlite3.sqlite_version} {connection.settings_dict['NAME']}"
    else:
        db_label = database_label(args, connection, with_version=True)
    run_id = secrets.token_hex(4)
    setup_started = time.perf_counter()
    traders = prepare_traders(args.clients)
    prepare_markets()
    hostile_ctx = None
    if "hostile" in args.sections:
        plain = with_token(get_or_create_user("rel-plain"))
        editor = with_token(get_or_create_user("rel-editor", roles=("editor",)))
        resolver = with_token(get_or_create_user("rel-resolver", roles=("resolver",)))
        target = ensure_market(f"rel-target-{run_id}", f"Reliability run {run_id}: a market only hostile resolutions touch", liquidity_b_credits=100)
        hostile_ctx = HostileContext(trader=plain.token, editor=editor.token, resolver=resolver.token, trade_slug=LOAD_SLUGS[0], target_slug=target.slug)
    connections.close_all()
    print(f"{db_label}: migrated in {migrate_s:.1f} s, users and markets ready in {time.perf_counter() - setup_started:.1f} s", flush=True)

    warn_if_busy("the servers, the database and the clients")
    load_before = load_average()
    started = time.perf_counter()
    kills: list[KillRound] = []
    spends: list[DoubleSpendRound] = []
    hostile: list[Answer] | None = None
    server = Server(env, workers=args.workers, log_path=args.var_dir / "server-0.log")
    print(f"  server up in {server.start_s:.1f} s on port {server.port}", flush=True)
    try:
        if "kill" in args.sections:
            for number in range(1, args.kill_rounds + 1):
                print(f"  kill -9 round {number}/{args.kill_rounds}", end=" ... ", flush=True)
                result, server = kill_round(args, env, server, traders, prefix=f"rel-{run_id}-k{number}", number=number)
                kills.append(result)
                print(f"{result.acked:,} acknowledged, {result.found:,} found, {result.unanswered} retried, "
                      f"audit {'passed' if result.audit_ok else 'FAILED'}", flush=True)
        if "double-spend" in args.sections:
            print(f"  double spend: {args.double_spend_rounds} rounds of {args.racers} racing buys", end=" ... ", flush=True)
            for number in range(1, args.double_spend_rounds + 1):
                spends.append(double_spend_round(args, server.port, run_id=run_id, number=number))
            print(f"{sum(r.succeeded for r in spends)} succeeded", flush=True)
        if hostile_ctx is not None:
            print("  hostile inputs", end=" ... ", flush=True)
            hostile = run_hostile(server.port, server.live_port, hostile_ctx, run_id=run_id)
            print(f"{len(hostile)} tried, {sum(a.status >= 500 for a in hostile)} answered 5xx", flush=True)
            # The health check is part of the figure: the hostile list must not have hurt the server.
            status, _, _ = fetch(server.port, "/health/")
            if status != 200:
                hostile.append(Answer(Probe("page: /health/ after the hostile list", "GET", b"/health/", (200,)), status, problems=[f"answered {status}"]))
            connections.close_all()
            target = Market.objects.get(slug=hostile_ctx.target_slug)
            if target.status != Market.Status.OPEN:
                hostile.append(Answer(Probe("API: the resolve target after the hostile list", "GET", b"/api/v1/markets", (200,)), 200,
                                      problems=[f"a hostile resolution went through: the market is {target.status}"]))
    finally:
        server.stop()
    connections.close_all()
    final_audit = run_audit(env) if ("double-spend" in args.sections or hostile is not None) else None
    rows = report_rows(args, kills, spends, hostile, final_audit)
    print_report(args, db_label, rows, kills, spends, hostile, time.perf_counter() - started, load_before)
    if any(result == "NOT met" for _, _, result in rows):
        sys.exit(1)


if __name__ == "__main__":
    main()
