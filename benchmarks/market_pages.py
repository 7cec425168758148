#!/usr/bin/env python
"""Measure requests/s of the market pages against /health/, with each page's SQL query count.

The pages are served the way production serves them (``bellwether serve``:
granian, WSGI, two workers, DEBUG off) from a database built for the purpose:
the demo newsroom (``bellwether demo --no-serve``), topped up through
``markets.services.create_market`` and ``place_trade`` to ``--open-markets``
trading markets, one of which (the busy market) has ``--busy-trades`` trades.
A reader with positions in about twenty markets gets a fresh session every
run, so the market page, the portfolio and the quote endpoint are measured
logged in as well.

Every URL is loaded with wrk (``-t2 -c8`` by default, a warm-up first) and its
rate printed as a fraction of /health/'s in the same run. Beside it stand the
SQL queries the page runs and its time in process, both taken with Django's
test client on the same database. The script exits 1 when a page answers
anything but 200 (or without its expected content), or when wrk counts a
non-2xx answer.

Run ``python benchmarks/market_pages.py --help`` for the options; the results
are recorded in docs/performance.md (section "Market pages").
"""

from __future__ import annotations

import argparse
import datetime as dt
import http.client
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
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
    start_django,
    warn_if_busy,
)
from pages import group_cpu_s

DEFAULT_VAR_DIR = REPO / "var" / "bench-markets"
MICRO = 1_000_000
# Enough that no simulated trader ever runs short.
TRADER_BALANCE_CREDITS = 1_000_000
TRADERS = tuple(f"bench-trader-{i}" for i in range(8))
READER = "bench-reader"
BUSY_SLUG = "bench-busy"
BUSY_QUESTION = "Will the harbour bridge funding plan pass before the summer recess?"
QUESTION_PREFIX = "Bench: "
READER_MARKETS = 20
REQUEST_TIMEOUT_S = 30.0
IN_PROCESS_REPEATS = 20
QUOTE_FORM = {"outcome": "yes", "side": "buy", "mode": "amount", "value": "10"}

SUBJECTS = [
    "the central bank", "the harbour authority", "the coalition", "the regional council", "the chipmaker",
    "the fisheries ministers", "the rail union", "the energy regulator", "the football federation",
    "the water utility", "the election commission", "the hospital network", "the wind developers",
]
ACTIONS = [
    "cut rates", "approve the bridge plan", "sign the quota deal", "call a strike", "open the new plant",
    "raise water prices", "hold a referendum", "miss its budget target", "win the cup",
    "publish the audit", "settle the dispute", "extend the pilot", "announce a merger",
]
DEADLINES = ["by the end of the month", "before the summit", "this quarter", "before the recess", "by year end"]
MANY = [
    ["Coalition A", "Coalition B", "Coalition C"],
    ["Under 2%", "2% to 3%", "3% to 4%", "Over 4%"],
    ["North", "South", "East", "West", "Centre"],
]

if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))


# ---------------------------------------------------------------------------
# Options


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Return the command-line options."""
    parser = argparse.ArgumentParser(
        prog="benchmarks/market_pages.py",
        description=(
            "Serve Bellwether with `bellwether serve` (granian, WSGI) on a database with the demo "
            "newsroom plus --open-markets trading markets (the busiest with --busy-trades trades), "
            "load /health/ (the reference), the markets index (by volume and by move), a busy "
            "market's page and chart.json, the article panel, the home strip, and, logged in, the "
            "market page, /portfolio/ and POST .../quote/ with wrk, and print requests/s, latency "
            "p50/p99, each URL's ratio to /health/, the server's CPU per request, and the SQL "
            "queries and in-process time of one request (Django's test client). Exits 1 when a "
            "page answers anything but 200. At the defaults the measurement takes about three "
            "minutes; building the database the first time takes one to two more."
        ),
        epilog="Results and their interpretation: docs/performance.md (section Market pages).",
    )
    parser.add_argument(
        "--database-url",
        metavar="URL",
        default="",
        help=(
            "PostgreSQL URL of a dedicated benchmark database, e.g. "
            "postgres://postgres@127.0.0.1:5432/bellwether_bench_markets; it is created (through the "
            "server's 'postgres' database) when missing. Default: SQLite in --var-dir."
        ),
    )
    parser.add_argument(
        "--var-dir",
        metavar="DIR",
        type=Path,
        default=DEFAULT_VAR_DIR,
        help=(
            "BELLWETHER_VAR_DIR for the benchmark: holds the SQLite database, the server log and "
            f"the wrk script (default: {DEFAULT_VAR_DIR.relative_to(REPO)})"
        ),
    )
    parser.add_argument(
        "--rebuild",
        action="store_true",
        help=(
            "delete the benchmark database first (the SQLite file in --var-dir, or the PostgreSQL "
            "database, whose name must contain 'bench') and build it afresh; without it an earlier "
            "build is reused"
        ),
    )
    parser.add_argument(
        "--build-only", action="store_true", help="build or check the database and count queries, then stop without serving"
    )
    parser.add_argument(
        "--open-markets",
        metavar="N",
        type=int,
        default=200,
        help="trading markets the database must hold, the demo's included (default: 200)",
    )
    parser.add_argument(
        "--busy-trades",
        metavar="N",
        type=int,
        default=3000,
        help="trades on the busy market whose page, chart and panel are measured (default: 3000)",
    )
    parser.add_argument(
        "--mean-trades",
        metavar="N",
        type=float,
        default=20.0,
        help="mean trades on each other new market (exponentially spread, at most 10x; default: 20)",
    )
    parser.add_argument(
        "--duration", metavar="S", type=float, default=10.0, help="seconds of measurement per URL (default: 10)"
    )
    parser.add_argument(
        "--warmup",
        metavar="S",
        type=float,
        default=2.0,
        help="seconds of unrecorded load per URL before its measurement (default: 2)",
    )
    parser.add_argument(
        "--connections", metavar="N", type=int, default=8, help="concurrent keep-alive connections (wrk -c; default: 8)"
    )
    parser.add_argument("--threads", metavar="N", type=int, default=2, help="wrk threads (wrk -t; default: 2)")
    parser.add_argument(
        "--workers",
        metavar="N",
        type=int,
        default=2,
        help="server worker processes (bellwether serve --workers; default: 2, one per core here)",
    )
    parser.add_argument(
        "--only",
        metavar="LABELS",
        default="",
        help="comma-separated page labels to load (health is always loaded), e.g. chart,portfolio",
    )
    parser.add_argument("--seed", metavar="N", type=int, default=4, help="seeds the simulated trading (default: 4)")
    args = parser.parse_args(argv)
    for name in ("open_markets", "busy_trades", "connections", "threads", "workers"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
    if args.mean_trades < 0:
        parser.error("--mean-trades must not be negative")
    if args.duration <= 0 or args.warmup < 0:
        parser.error("--duration must be positive and --warmup not negative")
    if args.database_url and not args.database_url.startswith(("postgres://", "postgresql://")):
        parser.error("--database-url must be a postgres:// URL (SQLite is the default)")
    args.var_dir = args.var_dir.resolve()
    return args


def step(message: str) -> None:
    """Print a progress line."""
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


# ---------------------------------------------------------------------------
# Environment and database


def benchmark_env(args: argparse.Namespace) -> dict[str, str]:
    """Return the environment for this process, `bellwether demo` and the server."""
    env = base_env(args, unset=("DATABASE_POOL_SIZE", "STARTING_BALANCE_CREDITS"))
    # New accounts (the simulated traders and the reader) start rich enough for thousands of trades.
    env["STARTING_BALANCE_CREDITS"] = str(TRADER_BALANCE_CREDITS)
    return env


def trading_count() -> int:
    from django.utils import timezone

    from bellwether.markets.models import Market

    return Market.objects.filter(status=Market.Status.OPEN, close_at__gt=timezone.now()).count()


def is_built(args: argparse.Namespace) -> bool:
    """Return True when an earlier build is complete (the reader is made last)."""
    from django.contrib.auth import get_user_model

    from bellwether.markets.models import Market

    busy = Market.objects.filter(slug=BUSY_SLUG).first()
    return (
        busy is not None
        and busy.trade_count >= args.busy_trades
        and get_user_model().objects.filter(username=READER).exists()
        and trading_count() >= args.open_markets
    )


def run_demo(env: dict[str, str]) -> float:
    """Run `bellwether demo --no-serve` against the benchmark database; return its seconds."""
    started = time.perf_counter()
    result = subprocess.run(
        bellwether_command() + ["demo", "--no-serve"], env=env, cwd=REPO, capture_output=True, text=True
    )
    if result.returncode != 0:
        sys.exit(f"`bellwether demo --no-serve` failed:\n{result.stdout[-2000:]}\n{result.stderr[-2000:]}")
    for line in result.stdout.splitlines():
        if "created" in line:
            print(f"    demo: {line.strip()}", flush=True)
    return time.perf_counter() - started


def _user(username: str):
    from django.contrib.auth import get_user_model

    from bellwether.accounts.services import create_user

    return get_user_model().objects.filter(username=username).first() or create_user(username=username)


def _record(trade, market, outcomes, position, balance_micro) -> dict:
    """Return what the simulation needs from a trade (place_trade's ``render`` hook): no extra query."""
    return {"trade_id": trade.pk, "after": list(trade.probabilities_after), "held": position.shares_micro}


@dataclass
class Simulation:
    """Trades made while building, by market."""

    trade_ids: dict[int, list[int]]
    held: dict[tuple[int, int, str], int]
    refused: int = 0


def simulate(*, market, count: int, traders: list, rng: random.Random, sim: Simulation) -> None:
    """Trade ``market`` ``count`` times: traders buy what looks cheap against a drifting belief, and sometimes sell.

    A trade that is refused (a sell of more than is held, a price bound) is
    skipped and counted; the build then simply has one trade fewer.
    """
    from bellwether.ledger.exceptions import LedgerError
    from bellwether.markets import services
    from bellwether.markets.exceptions import MarketError

    slugs = [o.slug for o in market.outcomes.order_by("position")]
    n = len(slugs)
    belief = [rng.random() + 0.2 for _ in slugs]
    prices = [1 / n] * n
    ids = sim.trade_ids.setdefault(market.pk, [])
    for _ in range(count):
        belief = [max(0.05, b + rng.gauss(0, 0.05)) for b in belief]
        total = sum(belief)
        edge = [b / total - p for b, p in zip(belief, prices)]
        user = rng.choice(traders)
        cheap = max(range(n), key=lambda i: edge[i] + rng.gauss(0, 0.05))
        dear = min(range(n), key=lambda i: edge[i])
        held = sim.held.get((user.pk, market.pk, slugs[dear]), 0)
        if held > MICRO and rng.random() < 0.25:
            request = services.TradeRequest(outcome=slugs[dear], side="sell", shares_micro=rng.randint(MICRO, held))
        else:
            request = services.TradeRequest(outcome=slugs[cheap], side="buy", amount_micro=rng.randint(2, 40) * MICRO)
        try:
            body = services.place_trade(user=user, market_slug=market.slug, request=request, render=_record)
        except (MarketError, LedgerError):
            sim.refused += 1
            continue
        ids.append(body["trade_id"])
        prices = body["after"]
        sim.held[(user.pk, market.pk, request.outcome)] = body["held"]


def backdate(*, market, opened_at: dt.datetime, trade_ids: list[int], rng: random.Random) -> None:
    """Open ``market`` at ``opened_at`` and spread its trades from then to now, denser towards now.

    The index's 24-hour move, the sparklines and the chart then have a real
    history to read, as a market that has traded for weeks would.
    """
    from django.utils import timezone

    from bellwether.markets.models import Market, Trade

    now = timezone.now()
    span_s = max((now - opened_at).total_seconds() - 60, 60)
    times = sorted(opened_at + dt.timedelta(seconds=span_s * rng.random() ** 0.5) for _ in trade_ids)
    Market.objects.filter(pk=market.pk).update(created_at=opened_at)
    trades = [Trade(pk=pk, created_at=at) for pk, at in zip(sorted(trade_ids), times)]
    Trade.objects.bulk_update(trades, ["created_at"], batch_size=500)


def new_question(index: int, rng: random.Random) -> str:
    return f"{QUESTION_PREFIX}will {rng.choice(SUBJECTS)} {rng.choice(ACTIONS)} {rng.choice(DEADLINES)}? (#{index})"


@dataclass
class BuildReport:
    """What building the database took."""

    reused: bool
    seconds: float = 0.0
    demo_s: float = 0.0
    markets_created: int = 0
    trades: int = 0
    trade_rate: float = 0.0
    refused: int = 0


def build_database(args: argparse.Namespace, env: dict[str, str]) -> BuildReport:
    """Make sure the database holds the demo, the busy market, enough open markets and the reader."""
    from django.db import connection, connections
    from django.utils import timezone

    from bellwether.markets import services
    from bellwether.markets.models import Market
    from bellwether.news.models import ArticlePage

    if is_built(args):
        return BuildReport(reused=True)
    if Market.objects.filter(slug=BUSY_SLUG).exists():
        sys.exit("an earlier build of this database is incomplete or smaller than asked: run again with --rebuild")
    started = time.perf_counter()
    report = BuildReport(reused=False)
    step("building: bellwether demo --no-serve")
    connections.close_all()
    report.demo_s = run_demo(env)

    rng = random.Random(args.seed)
    traders = [_user(name) for name in TRADERS]
    articles = list(ArticlePage.objects.live().order_by("pk"))
    if not articles:
        sys.exit("the demo loaded no articles")
    now = timezone.now()
    sim = Simulation(trade_ids={}, held={})
    trade_started = time.perf_counter()

    step(f"building: the busy market, {args.busy_trades:,} trades")
    busy = services.create_market(
        question=BUSY_QUESTION, slug=BUSY_SLUG, liquidity_b_micro=500 * MICRO,
        close_at=now + dt.timedelta(days=90), created_by=traders[0],
        description="The benchmark's busiest market.", resolution_criteria="Resolves by the benchmark's reporting.",
    )
    simulate(market=busy, count=args.busy_trades, traders=traders, rng=rng, sim=sim)

    missing = max(0, args.open_markets - trading_count())
    step(f"building: {missing} more open markets, about {args.mean_trades:g} trades each")
    markets = [busy]
    for index in range(missing):
        days = rng.uniform(1, 7) if rng.random() < 0.1 else rng.uniform(8, 180)
        market = services.create_market(
            question=new_question(index, rng),
            outcomes=rng.choice(MANY) if rng.random() < 0.2 else None,
            liquidity_b_micro=rng.choice((100, 250, 500, 1000)) * MICRO,
            close_at=now + dt.timedelta(days=days),
            created_by=traders[0],
        )
        count = min(int(rng.expovariate(1 / args.mean_trades)) if args.mean_trades else 0, int(10 * args.mean_trades))
        simulate(market=market, count=count, traders=traders, rng=rng, sim=sim)
        markets.append(market)
        if (index + 1) % 50 == 0:
            step(f"  {index + 1} of {missing} markets")
    report.markets_created = len(markets)

    step(f"building: the reader {READER!r}, positions in {READER_MARKETS + 1} markets")
    reader = _user(READER)
    for market in [busy, *rng.sample(markets[1:], k=min(READER_MARKETS, len(markets) - 1))]:
        simulate(market=market, count=2, traders=[reader], rng=rng, sim=sim)
    report.trades = sum(len(ids) for ids in sim.trade_ids.values())
    report.refused = sim.refused
    report.trade_rate = report.trades / (time.perf_counter() - trade_started)

    step("building: spreading the trades over the past weeks and linking articles")
    for market in markets:
        days = 30 if market.pk == busy.pk else rng.uniform(2, 40)
        backdate(market=market, opened_at=now - dt.timedelta(days=days), trade_ids=sim.trade_ids.get(market.pk, []), rng=rng)
    # The busy market goes with the story that already has the most markets, so its panel is the fullest.
    panel_article = max(articles, key=lambda a: (a.market_links.count(), -a.pk))
    services.link_article(market=busy, article=panel_article)
    for market in markets[1:]:
        if rng.random() < 0.3:
            services.link_article(market=market, article=rng.choice(articles))

    with connection.cursor() as cursor:
        if connection.vendor == "sqlite":
            cursor.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        cursor.execute("ANALYZE")
    report.seconds = time.perf_counter() - started
    if not is_built(args):
        sys.exit(f"the build ended short of its targets (busy trades, {args.open_markets} open markets or the reader)")
    return report


@dataclass
class Login:
    """A logged-in reader's cookies."""

    session_key: str
    csrf_secret: str

    @property
    def cookie(self) -> str:
        from django.conf import settings

        return f"{settings.SESSION_COOKIE_NAME}={self.session_key}; {settings.CSRF_COOKIE_NAME}={self.csrf_secret}"


def log_in_reader() -> Login:
    """Return a fresh session for the reader (as a login would make it) and a CSRF secret to send with it."""
    from django.conf import settings
    from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY, get_user_model
    from django.middleware.csrf import _get_new_csrf_string
    from django.utils.module_loading import import_string

    user = get_user_model().objects.get(username=READER)
    store = import_string(settings.SESSION_ENGINE + ".SessionStore")()
    store[SESSION_KEY] = str(user.pk)
    store[BACKEND_SESSION_KEY] = settings.AUTHENTICATION_BACKENDS[0]
    store[HASH_SESSION_KEY] = user.get_session_auth_hash()
    store.create()
    return Login(session_key=store.session_key, csrf_secret=_get_new_csrf_string())


# ---------------------------------------------------------------------------
# Targets


@dataclass(frozen=True)
class Target:
    """A URL to load, how, and what its answer must contain."""

    label: str
    path: str
    expect: str
    logged_in: bool = False
    post: dict | None = None


def pick_targets() -> tuple[list[Target], dict]:
    """Return the URLs to measure and facts about the data behind them."""
    from bellwether.markets.models import Market, MarketArticle

    busy = Market.objects.get(slug=BUSY_SLUG)
    article_id = MarketArticle.objects.filter(market=busy).order_by("id").values_list("article_id", flat=True).first()
    detail = f"/markets/{busy.slug}/"
    targets = [
        Target("health", "/health/", '"status": "ok"'),
        Target("index", "/markets/", "<h1>Markets</h1>"),
        Target("index-move", "/markets/?sort=move", "<h1>Markets</h1>"),
        Target("detail", detail, busy.question),
        Target("chart", f"{detail}chart.json", f'"trade_count": {busy.trade_count}'),
        Target("article-panel", f"/markets/panels/article/{article_id}/", "Forecasts on this story"),
        Target("home-strip", "/markets/panels/home/", "Live markets"),
        Target("detail-login", detail, 'id="trade-ticket"', logged_in=True),
        Target("portfolio", "/portfolio/", "Your portfolio", logged_in=True),
        Target("quote", f"{detail}quote/", 'data-quote="amount"', logged_in=True, post=QUOTE_FORM),
    ]
    facts = {
        "busy_trades": busy.trade_count,
        "panel_markets": MarketArticle.objects.filter(article_id=article_id).count(),
        "open_markets": trading_count(),
        "markets": Market.objects.count(),
    }
    return targets, facts


def request_headers(target: Target, login: Login) -> dict[str, str]:
    """Return the headers a browser would send for ``target`` (htmx's for the quote)."""
    headers = {"Accept": "text/html"}
    if target.logged_in:
        headers["Cookie"] = login.cookie
    if target.post is not None:
        headers.update({
            "Content-Type": "application/x-www-form-urlencoded",
            "X-CSRFToken": login.csrf_secret,
            "HX-Request": "true",
        })
    return headers


def form_body(target: Target) -> str:
    from urllib.parse import urlencode

    return urlencode(target.post or {})


# ---------------------------------------------------------------------------
# Query counts


@dataclass
class InProcess:
    """One request's cost through Django's test client."""

    queries: int
    ms: float  # wall time: on PostgreSQL it includes waiting for the database
    cpu_ms: float  # this process's CPU: steadier than wall time on a shared machine


def count_queries(targets: list[Target], login: Login) -> dict[str, InProcess]:
    """Return each page's SQL queries (fewest of three requests, caches warm) and mean time over a few more.

    Django's test client runs the full middleware stack and the view, but no
    socket and no granian; the queries are the ones the server runs too.
    """
    from django.conf import settings
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext

    out = {}
    for target in targets:
        client = Client(HTTP_HOST=LOOPBACK, HTTP_ACCEPT="text/html")
        if target.logged_in:
            client.cookies[settings.SESSION_COOKIE_NAME] = login.session_key
            client.cookies[settings.CSRF_COOKIE_NAME] = login.csrf_secret

        def fetch():
            if target.post is not None:
                return client.post(target.path, target.post, HTTP_HX_REQUEST="true", HTTP_X_CSRFTOKEN=login.csrf_secret)
            return client.get(target.path)

        response = fetch()
        if response.status_code != 200:
            raise RuntimeError(f"test client: {target.path} answered {response.status_code}")
        # The fewest of three: the page cache re-reads the content generation at most once a
        # second for an anonymous GET, which would otherwise add a query now and then.
        queries = None
        for _ in range(3):
            with CaptureQueriesContext(connection) as captured:
                fetch()
            # Read now: the next request's request_started signal empties the log the count slices.
            queries = len(captured.captured_queries) if queries is None else min(queries, len(captured.captured_queries))
        started, cpu_started = time.perf_counter(), time.process_time()
        for _ in range(IN_PROCESS_REPEATS):
            fetch()
        ms = (time.perf_counter() - started) * 1000 / IN_PROCESS_REPEATS
        cpu_ms = (time.process_time() - cpu_started) * 1000 / IN_PROCESS_REPEATS
        out[target.label] = InProcess(queries=queries, ms=ms, cpu_ms=cpu_ms)
    return out


# ---------------------------------------------------------------------------
# Server and load


def http_request(port: int, target: Target, login: Login) -> tuple[int, str]:
    """Send ``target``'s request once; return the status and body."""
    conn = http.client.HTTPConnection(LOOPBACK, port, timeout=REQUEST_TIMEOUT_S)
    try:
        method = "POST" if target.post is not None else "GET"
        body = form_body(target) if target.post is not None else None
        conn.request(method, target.path, body=body, headers=request_headers(target, login))
        response = conn.getresponse()
        return response.status, response.read().decode("utf-8", "replace")
    finally:
        conn.close()


def verify(port: int, targets: list[Target], login: Login) -> list[str]:
    """Return a problem per target that does not answer 200 with its expected content."""
    problems = []
    for target in targets:
        status, body = http_request(port, target, login)
        if status != 200:
            problems.append(f"{target.label}: {target.path} answered {status}")
        elif target.expect not in body:
            problems.append(f"{target.label}: {target.path} answered 200 without {target.expect!r}")
    return problems


def lua_script(target: Target, login: Login, directory: Path) -> Path:
    """Write the wrk script that sends ``target``'s method, headers and body; return its path."""
    lines = [f'wrk.method = "{"POST" if target.post is not None else "GET"}"']
    if target.post is not None:
        lines.append(f"wrk.body = {json.dumps(form_body(target))}")
    for name, value in request_headers(target, login).items():
        lines.append(f"wrk.headers[{json.dumps(name)}] = {json.dumps(value)}")
    path = directory / f"wrk-{target.label}.lua"
    path.write_text("\n".join(lines) + "\n")
    return path


@dataclass
class LoadResult:
    """One URL's measurement."""

    requests_per_s: float
    p50_ms: float | None
    p99_ms: float | None
    requests: int
    bad_status: int  # answers outside 2xx/3xx
    socket_errors: int  # connect, read, write errors and timeouts
    cpu_ms: float | None = None


_UNIT_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0}


def _wrk_ms(text: str) -> float:
    number, unit = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text).groups()
    return float(number) * _UNIT_MS[unit]


def run_wrk(url: str, script: Path, args: argparse.Namespace, duration_s: float) -> LoadResult:
    """Load ``url`` with wrk and ``script`` for ``duration_s``; return its figures."""
    seconds = max(1, round(duration_s))
    argv = [
        "wrk", f"-t{min(args.threads, args.connections)}", f"-c{args.connections}", f"-d{seconds}s",
        # wrk's default 2 s timeout drops the slowest answers on a busy machine; count them in p99 instead.
        "--latency", f"--timeout={REQUEST_TIMEOUT_S:g}s", "-s", str(script), url,
    ]
    out = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 30, check=True).stdout
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    total = int(re.search(r"(\d+) requests in", out).group(1))
    p50 = re.search(r"^\s+50%\s+(\S+)", out, re.M)
    p99 = re.search(r"^\s+99%\s+(\S+)", out, re.M)
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    sockets = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    return LoadResult(
        rate, p50 and _wrk_ms(p50.group(1)), p99 and _wrk_ms(p99.group(1)), total,
        bad_status=int(bad.group(1)) if bad else 0, socket_errors=sum(int(n) for n in sockets.groups()) if sockets else 0,
    )


def measure(args, env, targets: list[Target], login: Login) -> tuple[dict[str, LoadResult], list[str]]:
    """Start the server, check every page, load each one; return the results and any problems."""
    results: dict[str, LoadResult] = {}
    with running_server(env, workers=args.workers, log_path=args.var_dir / "server.log") as (port, pgid):
        problems = verify(port, targets, login)
        if problems:
            return results, problems
        base = f"http://{LOOPBACK}:{port}"
        for target in targets:
            script = lua_script(target, login, args.var_dir)
            step(f"wrk {target.label:13} {'POST' if target.post else 'GET '} {target.path}")
            if args.warmup:
                run_wrk(base + target.path, script, args, args.warmup)
            cpu_before = group_cpu_s(pgid)
            result = run_wrk(base + target.path, script, args, args.duration)
            cpu_after = group_cpu_s(pgid)
            if cpu_before is not None and cpu_after is not None and result.requests:
                result.cpu_ms = (cpu_after - cpu_before) * 1000 / result.requests
            print(f"    {result.requests_per_s:,.0f} req/s, p50 {format_ms(result.p50_ms)} ms", flush=True)
            results[target.label] = result
        # A page that answered 200 before the load must still do so after it.
        problems = verify(port, targets, login)
    problems += [
        f"{label}: {result.bad_status} answers outside 2xx/3xx under load"
        for label, result in results.items() if result.bad_status
    ]
    return results, problems


# ---------------------------------------------------------------------------
# Report


def print_report(args, targets, results, counts, facts, build: BuildReport, db_label: str, load_before: str, elapsed_s: float) -> None:
    """Print the results table and the figures behind it."""
    health = results["health"].requests_per_s
    print()
    print(
        f"Bellwether market pages on {db_label}: {facts['open_markets']} open markets of {facts['markets']}, "
        f"busy market {facts['busy_trades']:,} trades, article panel {facts['panel_markets']} markets; "
        f"bellwether serve --workers {args.workers} (granian, WSGI); wrk -t{min(args.threads, args.connections)} "
        f"-c{args.connections}, {args.duration:g} s per URL after {args.warmup:g} s warm-up; {os.cpu_count()} CPUs"
    )
    header = (
        f"{'page':13} {'request':44} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8} {'x health':>8} "
        f"{'cpu ms/req':>10} {'queries':>7} {'1 req ms':>8} {'1 req cpu':>9}"
    )
    print(header)
    print("-" * len(header))
    for target in targets:
        if target.label not in results:
            continue
        result = results[target.label]
        count = counts.get(target.label)
        request = ("POST " if target.post else "GET ") + target.path + (" (logged in)" if target.logged_in else "")
        request = request if len(request) <= 44 else request[:41] + "..."
        print(
            f"{target.label:13} {request:44} {result.requests_per_s:8,.0f} {format_ms(result.p50_ms, whole_from=100):>8} "
            f"{format_ms(result.p99_ms, whole_from=100):>8} {format_ratio(result.requests_per_s / health):>8} "
            f"{format_ms(result.cpu_ms):>10} {count.queries if count else '—':>7} {format_ms(count.ms) if count else '—':>8} "
            f"{format_ms(count.cpu_ms) if count else '—':>9}"
        )
        if result.socket_errors:
            print(f"{'':13} ({result.socket_errors} socket errors or timeouts after {REQUEST_TIMEOUT_S:g} s)")
    print()
    print(
        "cpu ms/req: CPU of all server processes per request during the load (2 idle cores would allow about "
        "2000 / cpu ms req/s). queries, 1 req ms (wall) and 1 req cpu: one request through Django's test client in "
        f"this process (queries: the fewest of three requests; times: the mean of the next {IN_PROCESS_REPEATS})."
    )
    if build.reused:
        print("database: reused (--rebuild builds it afresh)")
    else:
        print(
            f"database built in {build.seconds:.0f} s: demo {build.demo_s:.0f} s, {build.markets_created} markets and "
            f"{build.trades:,} trades through the services at {build.trade_rate:,.0f} trades/s ({build.refused} refused)"
        )
    print(f"measurement took {elapsed_s:.0f} s; load average at the start {load_before}, at the end {load_average()}")


def main(argv: list[str] | None = None) -> None:
    """Build or reuse the benchmark database, count queries, serve it, load every page and print the figures."""
    args = parse_args(argv)
    # SIGTERM must unwind through the `finally` blocks that stop the server.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    if not args.build_only and shutil.which("wrk") is None:
        sys.exit("wrk is not installed: run `apt-get install -y wrk`")
    prepare_database(args, example_name="bellwether_bench_markets")
    env = benchmark_env(args)
    step("migrating the benchmark database")
    start_django(env)
    from django.db import connection, connections

    db_label = database_label(args, connection)
    build = build_database(args, env)
    step("database reused" if build.reused else f"database built in {build.seconds:.0f} s")
    targets, facts = pick_targets()
    if args.only:
        wanted = {"health", *(label.strip() for label in args.only.split(","))}
        unknown = wanted - {t.label for t in targets}
        if unknown:
            sys.exit(f"--only: unknown labels {sorted(unknown)}; choose from {[t.label for t in targets]}")
        targets = [t for t in targets if t.label in wanted]
    login = log_in_reader()
    step("counting queries with Django's test client")
    counts = count_queries(targets, login)
    for target in targets:
        count = counts[target.label]
        print(f"    {target.label:13} {count.queries:3} queries, {count.ms:7.2f} ms, cpu {count.cpu_ms:7.2f} ms", flush=True)
    connections.close_all()
    if args.build_only:
        print(f"{db_label}: ready; --build-only, so nothing is served")
        return

    warn_if_busy("the server and wrk")
    load_before = load_average()
    started = time.perf_counter()
    step(f"serving {db_label}; load average {load_before}")
    results, problems = measure(args, env, targets, login)
    if problems:
        for problem in problems:
            print(f"FAILED {problem}", file=sys.stderr)
        if "health" not in results:
            sys.exit(1)
    print_report(args, targets, results, counts, facts, build, db_label, load_before, time.perf_counter() - started)
    if problems:
        print(f"{len(problems)} page(s) failed; the server log is {args.var_dir / 'server.log'}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
