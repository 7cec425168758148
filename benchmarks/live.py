#!/usr/bin/env python
"""Measure the live streams: latency from a trade's commit to its event at each open stream, and memory per stream.

For each count of streams (``--streams``, default 1, 100 and 1,000), one run:

1. starts ``bellwether serve`` (granian: WSGI pages and, on a port of its
   own, the ASGI live server) with ``--workers`` processes each (default 1,
   so every stream sits on one live process);
2. opens one stream and closes it (the live process's hub starts, its code
   is imported), then reads the RSS of the live worker processes from
   ``/proc/<pid>/status``: the figure for 0 streams;
3. opens N Server-Sent Events connections to the stream of one market
   (``/live/markets/<slug>/``) from a client process (asyncio protocols on
   raw sockets, a few microseconds of Python per event), waits until each has
   its ``retry:`` prelude (so it is subscribed), and reads the RSS again;
4. places ``--trades`` trades at ``--rate`` a second through
   ``markets.services.place_trade`` in this process, noting the commit time
   just after each returns, while the client notes when each stream receives
   each event id (both read the system-wide monotonic clock);
5. waits up to ``--grace`` seconds for stragglers, then stops the server.

It prints the p50, p95 and max latency over every (stream, trade) pair, the
p95 of the time until the last stream got a trade, events lost (must be 0),
memory per open stream ((RSS with N - RSS with 0) / N), and the CPU the live
worker and the client used during the trades. Target (issue 5): p95 under
100 ms with 1,000 streams.

SQLite lives in ``var/bench-live/``; ``--database-url postgres://...`` runs
on PostgreSQL (LISTEN/NOTIFY fan-in instead of polling). Results and their
reading: docs/performance.md, section "Live streams (issue 5)".

``--resumed N`` measures the memory of resumed streams instead (issue 10).
It makes sure the market has more than a full replay's worth of trades
(500), then runs three rows, each on a fresh server: N plain streams (no
replay: what open streams cost by themselves, the control), N streams
resumed with ``?since=`` just before the latest 500 trades (each replays
500 events, all from the same point), and N streams spread over 100 resume
points (401 to 500 events each; streams at different points share no
plan or page). For each it opens and drains one stream of the same kind (the
warm-up), reads the live worker's RSS (the baseline), opens the N streams
while sampling the RSS every 50 ms (the peak), reads it once every stream
has all its events (still open) and once more after the client has closed
them. It prints each figure in MiB and as a ratio to the row's baseline,
the replays' own share (a row's growth minus the control's), and the events
delivered against those expected; it exits 1 if a stream got fewer.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import multiprocessing
import os
import resource
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
    free_port,
    load_average,
    prepare_database,
    start_django,
    stop_process_group,
    wait_for_health,
    warn_if_busy,
)

DEFAULT_VAR_DIR = REPO / "var" / "bench-live"
MICRO = 1_000_000
MARKET_SLUG = "bench-live"
TRADER = "bench-live-trader"
LIQUIDITY_B_CREDITS = 1_000  # a 1-credit buy moves the price by about 0.05 points
TRADE_CREDITS = 1
TRADER_BALANCE_CREDITS = 1_000_000
CONNECT_BATCH = 100  # connections opened at once
OPEN_TIMEOUT_S = 60.0
SETTLE_S = 1.0  # pause before reading memory, so the numbers stop moving
TARGET_P95_MS = 100.0
TARGET_STREAMS = 1_000
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
RSS_SAMPLE_S = 0.05  # how often --resumed samples the live worker's RSS
REPLAY_GRACE_S = 300.0  # longest --resumed waits for every stream's replay
SPREAD_POINTS = 100  # resume points of the --resumed "spread" run: pages no two points share

if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))


# ---------------------------------------------------------------------------
# Options


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Return the command-line options."""
    parser = argparse.ArgumentParser(
        prog="benchmarks/live.py",
        description=(
            "Measure Bellwether's live streams (issue 5). For each count of open streams, start "
            "`bellwether serve` (WSGI pages plus the ASGI live server, --workers processes each), open "
            "that many Server-Sent Events connections to one market's stream from a client process, "
            "place --trades trades at --rate per second through markets.services.place_trade, and "
            "time each event from the trade's commit to its arrival at every stream. Prints p50/p95/max "
            "latency, the p95 until the last stream has a trade, events lost (must be 0), memory per "
            "open stream (RSS of the live worker processes from /proc, with N streams minus with 0, "
            "over N) and the CPU of the live worker and the client. Target: p95 under 100 ms with "
            "1,000 streams. Exits 1 if an event was lost or a stream failed to open. About 30 s per "
            "stream count at the defaults."
        ),
        epilog="Results and their interpretation: docs/performance.md (section Live streams).",
    )
    parser.add_argument(
        "--database-url", metavar="URL", default="",
        help=(
            "PostgreSQL URL of a dedicated benchmark database, e.g. "
            "postgres://postgres@127.0.0.1:5432/bellwether_bench_live; created and migrated when "
            "missing. Default: SQLite in --var-dir."
        ),
    )
    parser.add_argument(
        "--var-dir", metavar="DIR", type=Path, default=DEFAULT_VAR_DIR,
        help=f"BELLWETHER_VAR_DIR for the benchmark: the SQLite database and the server logs (default: {DEFAULT_VAR_DIR.relative_to(REPO)})",
    )
    parser.add_argument("--rebuild", action="store_true", help="drop the benchmark database first (only one whose name contains 'bench')")
    parser.add_argument(
        "--streams", metavar="N,N,...", default="1,100,1000",
        help="counts of open streams to measure, each on a fresh server (default 1,100,1000)",
    )
    parser.add_argument("--trades", type=int, default=100, metavar="N", help="trades per stream count (default 100)")
    parser.add_argument("--rate", type=float, default=5.0, metavar="PER_S", help="trades a second, evenly spaced (default 5)")
    parser.add_argument("--grace", type=float, default=5.0, metavar="S", help="seconds to wait for late events after the last trade (default 5)")
    parser.add_argument("--workers", type=int, default=1, metavar="N", help="worker processes of each server (default 1: every stream on one live process)")
    parser.add_argument(
        "--poll-s", type=float, default=None, metavar="S",
        help="LIVE_POLL_S for the live server, how often it polls on SQLite (default: the setting's default, 0.1)",
    )
    parser.add_argument(
        "--resumed", type=int, default=0, metavar="N",
        help=(
            "instead of the latency runs, open N streams resumed with ?since= (each replays the latest "
            "500 trades) and report the live worker's RSS before, at its peak and after, as ratios to "
            "the baseline RSS (e.g. --resumed 2000)"
        ),
    )
    args = parser.parse_args(argv)
    if args.resumed < 0:
        parser.error("--resumed takes a positive count of streams")
    try:
        args.stream_counts = [int(n) for n in args.streams.split(",") if n.strip()]
    except ValueError:
        parser.error("--streams takes whole numbers separated by commas, e.g. 1,100,1000")
    if not args.stream_counts or min(args.stream_counts) < 1:
        parser.error("--streams needs counts of at least 1")
    if args.trades < 1 or args.rate <= 0 or args.workers < 1:
        parser.error("--trades, --rate and --workers must be positive")
    args.var_dir = args.var_dir.resolve()
    return args


# ---------------------------------------------------------------------------
# The client: a separate process, so its work never delays the trades' clock


class StreamProtocol(asyncio.Protocol):
    """One SSE connection: note when each event id arrives, as cheaply as Python allows."""

    __slots__ = ("request", "path_index", "transport", "received", "ready", "status", "head", "tail", "closed")

    def __init__(self, request: bytes, ready: asyncio.Future, path_index: int = 0) -> None:
        self.request = request
        self.path_index = path_index  # which of the client's paths it opened
        self.transport = None
        self.received: dict[int, float] = {}
        self.ready = ready
        self.status = 0
        self.head = b""  # response headers until they are complete
        self.tail = b"\n"  # the unparsed end of the body; a frame's "id: " follows a newline
        self.closed = False

    def connection_made(self, transport) -> None:
        self.transport = transport
        transport.write(self.request)

    def data_received(self, data: bytes) -> None:
        now = time.monotonic()
        if not self.status:
            self.head += data
            end = self.head.find(b"\r\n\r\n")
            if end < 0:
                return
            self.status = int(self.head.split(b" ", 2)[1])
            data, self.head = self.head[end + 4:], b""
            if self.status != 200 and not self.ready.done():
                self.ready.set_result(False)
        if not self.ready.done() and b"retry:" in data:
            self.ready.set_result(True)
        buffer = self.tail + data
        position = 0
        while True:
            start = buffer.find(b"\nid: ", position)
            if start < 0:
                self.tail = buffer[max(position, len(buffer) - 5):]
                return
            end = buffer.find(b"\n", start + 5)
            if end < 0:
                self.tail = buffer[start:]
                return
            self.received.setdefault(int(buffer[start + 5:end].strip()), now)
            position = end

    def connection_lost(self, exc) -> None:
        self.closed = True
        if not self.ready.done():
            self.ready.set_result(False)


async def _open_streams(port: int, paths: list[str], count: int) -> tuple[list[StreamProtocol], int]:
    """Open ``count`` streams in batches, stream i to ``paths[i % len(paths)]``; return the protocols and how many failed to open."""
    loop = asyncio.get_running_loop()
    requests = [
        (
            f"GET {path} HTTP/1.1\r\nHost: {LOOPBACK}:{port}\r\nAccept: text/event-stream\r\n"
            "Cache-Control: no-cache\r\n\r\n"
        ).encode()
        for path in paths
    ]
    opened: list[StreamProtocol] = []
    failed = 0
    for first in range(0, count, CONNECT_BATCH):
        batch = []
        for n in range(first, min(count, first + CONNECT_BATCH)):
            ready = loop.create_future()
            protocol = StreamProtocol(requests[n % len(requests)], ready, n % len(requests))
            batch.append(protocol)
        results = await asyncio.gather(
            *(loop.create_connection(lambda p=p: p, LOOPBACK, port) for p in batch), return_exceptions=True
        )
        for protocol, result in zip(batch, results):
            if isinstance(result, BaseException):
                failed += 1
                continue
            try:
                async with asyncio.timeout(OPEN_TIMEOUT_S):
                    ok = await protocol.ready
            except TimeoutError:
                ok = False
            if ok:
                opened.append(protocol)
            else:
                failed += 1
                if protocol.transport is not None:
                    protocol.transport.close()
    return opened, failed


async def _client(pipe, port: int, paths: list[str]) -> None:
    streams: list[StreamProtocol] = []
    while True:
        while not pipe.poll():
            await asyncio.sleep(0.02)
        command, *rest = pipe.recv()
        if command == "open":
            started = time.monotonic()
            new, failed = await _open_streams(port, paths, rest[0])
            streams.extend(new)
            pipe.send(("opened", len(new), failed, time.monotonic() - started))
        elif command == "close":
            for stream in streams:
                stream.transport.close()
            streams = []
            await asyncio.sleep(0.2)
            pipe.send(("closed",))
        elif command == "collect":
            ids, grace_s = rest
            deadline = time.monotonic() + grace_s
            while time.monotonic() < deadline and not all(len(s.received) >= len(ids) and all(i in s.received for i in ids) for s in streams):
                await asyncio.sleep(0.05)
            times = [[s.received.get(i) for i in ids] for s in streams]
            pipe.send(("times", times, sum(s.closed for s in streams)))
        elif command == "drain":
            expected, grace_s = rest  # events each stream should have, by path
            started = time.monotonic()
            deadline = started + grace_s
            while time.monotonic() < deadline and not all(len(s.received) >= expected[s.path_index] for s in streams):
                await asyncio.sleep(0.05)
            pipe.send((
                "drained", [(len(s.received), expected[s.path_index]) for s in streams], time.monotonic() - started,
                sum(s.closed for s in streams),
            ))
        elif command == "cpu":
            usage = resource.getrusage(resource.RUSAGE_SELF)
            pipe.send(("cpu", usage.ru_utime + usage.ru_stime))
        elif command == "exit":
            for stream in streams:
                stream.transport.close()
            pipe.send(("bye",))
            return


def client_main(pipe, port: int, paths: list[str]) -> None:
    """Run the stream client until told to exit (the entry point of the client process)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides when to stop
    asyncio.run(_client(pipe, port, paths))


class Client:
    """The parent's handle on the client process."""

    def __init__(self, port: int, path: str | list[str]) -> None:
        context = multiprocessing.get_context("spawn")
        self.pipe, child = context.Pipe()
        paths = [path] if isinstance(path, str) else path
        self.process = context.Process(target=client_main, args=(child, port, paths), daemon=True)
        self.process.start()

    def ask(self, *command, timeout_s: float = 600.0):
        self.pipe.send(command)
        if not self.pipe.poll(timeout_s):
            raise RuntimeError(f"the stream client did not answer {command[0]!r} within {timeout_s:.0f} s")
        return self.pipe.recv()

    def stop(self) -> None:
        with contextlib.suppress(Exception):
            self.ask("exit", timeout_s=10)
        self.process.join(5)
        if self.process.is_alive():
            self.process.kill()
            self.process.join()


# ---------------------------------------------------------------------------
# The server and its processes


@contextlib.contextmanager
def live_server(env: dict[str, str], *, workers: int, log_path: Path):
    """Start `bellwether serve` with a live port; yield (page port, live port, server process); stop it on exit."""
    port, live_port = free_port(), free_port()
    while live_port == port:
        live_port = free_port()
    argv = bellwether_command() + [
        "serve", "--host", LOOPBACK, "--port", str(port), "--live-port", str(live_port), "--workers", str(workers),
    ]
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "wb") as log:
        # A session of its own, so stopping it reaches every granian worker.
        process = subprocess.Popen(argv, env=env, cwd=REPO, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            wait_for_health(process, port, log_path)
            yield port, live_port, process
        finally:
            stop_process_group(process)


def _children() -> dict[int, list[int]]:
    tree: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        tree.setdefault(ppid, []).append(int(entry))
    return tree


def live_worker_pids(server_pid: int) -> list[int]:
    """Return the PIDs of the live (ASGI) server's worker processes under ``server_pid``.

    `bellwether serve` runs the live server as a child whose command line
    calls ``serve_live``; granian's workers are that child's children.
    """
    tree = _children()
    stack, found = [server_pid], []
    while stack:
        pid = stack.pop()
        for child in tree.get(pid, []):
            try:
                cmdline = Path(f"/proc/{child}/cmdline").read_bytes()
            except OSError:
                continue
            if b"serve_live" in cmdline and pid == server_pid:
                found.extend(tree.get(child, []) or [child])
            else:
                stack.append(child)
    return sorted(found)


def rss_kib(pids: list[int]) -> int:
    """Return the summed VmRSS of ``pids`` in KiB."""
    total = 0
    for pid in pids:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                total += int(line.split()[1])
    return total


def cpu_s(pids: list[int]) -> float:
    """Return the CPU seconds (user + system) ``pids`` have used."""
    total = 0
    for pid in pids:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])
    return total / CLOCK_TICKS


# ---------------------------------------------------------------------------
# Measurement


@dataclass
class Row:
    streams: int
    opened: int
    open_failed: int
    open_s: float
    trades: int
    deliveries: int
    lost: int
    closed: int
    p50_ms: float | None
    p95_ms: float | None
    max_ms: float | None
    last_p95_ms: float | None  # per trade, until every stream had it
    rss_zero_kib: int
    rss_kib: int
    rss_after_kib: int  # after the trades, the streams still open
    server_cpu: float  # share of one core during the trades
    server_cpu_s: float
    client_cpu: float
    achieved_rate: float


def percentile(values: list[float], q: float) -> float | None:
    """Return the ``q`` quantile (0..1) of ``values`` by nearest rank, or None when empty."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


def prepare_market() -> tuple[object, str]:
    """Return the benchmark's trader and market slug, creating them when missing."""
    import datetime as dt

    from django.contrib.auth import get_user_model
    from django.utils import timezone

    from bellwether.accounts.services import create_user
    from bellwether.markets import services
    from bellwether.markets.models import Market

    user = get_user_model().objects.filter(username=TRADER).first() or create_user(username=TRADER)
    market = Market.objects.filter(slug=MARKET_SLUG).first()
    if market is None or not market.is_trading:
        if market is not None:
            Market.objects.filter(pk=market.pk).update(slug=f"{MARKET_SLUG}-old-{market.pk}")
        services.create_market(
            question="Benchmark: will the live streams keep up?", slug=MARKET_SLUG,
            liquidity_b_micro=LIQUIDITY_B_CREDITS * MICRO, close_at=timezone.now() + dt.timedelta(days=3650),
        )
    return user, MARKET_SLUG


def place_trades(user, slug: str, *, count: int, rate: float) -> tuple[list[int], list[float], float]:
    """Place ``count`` one-credit buys (yes, no, yes, ...) evenly spaced at ``rate``; return ids, commit times and the rate achieved."""
    from bellwether.markets import services

    ids, commits = [], []
    started = time.monotonic()
    for n in range(count):
        delay = started + n / rate - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        request = services.TradeRequest(outcome="yes" if n % 2 == 0 else "no", side="buy", amount_micro=TRADE_CREDITS * MICRO)
        body = services.place_trade(user=user, market_slug=slug, request=request)
        commits.append(time.monotonic())
        ids.append(body["trade_id"])
    elapsed = commits[-1] - started
    return ids, commits, (count - 1) / elapsed if elapsed > 0 and count > 1 else float(count)


def measure(args, env: dict[str, str], user, slug: str, streams: int, label: str) -> Row:
    """Serve, open ``streams`` streams, trade, and return the figures."""
    from django.db import connections

    log_path = args.var_dir / f"server-{label}-{streams}.log"
    with live_server(env, workers=args.workers, log_path=log_path) as (_, live_port, server):
        client = Client(live_port, f"/live/markets/{slug}/")
        try:
            # Warm up: the first subscriber starts the hub (and its LISTEN connection or poller).
            # The live server starts in a process of its own after the pages answer: wait for it.
            deadline = time.monotonic() + OPEN_TIMEOUT_S
            while client.ask("open", 1)[1] != 1:
                if time.monotonic() > deadline or server.poll() is not None:
                    raise RuntimeError(f"the live server did not open a stream within {OPEN_TIMEOUT_S:.0f} s; see {log_path}")
                time.sleep(0.5)
            client.ask("close")
            time.sleep(SETTLE_S)
            workers = live_worker_pids(server.pid)
            if not workers:
                raise RuntimeError("no live worker process found under the server")
            rss_zero = rss_kib(workers)
            print(f"    {len(workers)} live worker(s) {workers}, {rss_zero / 1024:.1f} MiB with 0 streams; opening {streams:,}", end=" ... ", flush=True)
            _, opened, failed, open_s = client.ask("open", streams)
            time.sleep(SETTLE_S)
            rss_open = rss_kib(workers)
            print(f"{opened:,} open in {open_s:.1f} s, {rss_open / 1024:.1f} MiB", flush=True)
            print(f"    {args.trades} trades at {args.rate:g}/s", end=" ... ", flush=True)
            server_cpu_before, (_, client_cpu_before) = cpu_s(workers), client.ask("cpu")
            trade_started = time.monotonic()
            ids, commits, achieved = place_trades(user, slug, count=args.trades, rate=args.rate)
            _, times, closed = client.ask("collect", ids, args.grace)
            trade_s = commits[-1] - trade_started
            server_cpu_s = cpu_s(workers) - server_cpu_before
            server_cpu = server_cpu_s / trade_s
            client_cpu = (client.ask("cpu")[1] - client_cpu_before) / trade_s
            rss_after = rss_kib(workers)
            connections.close_all()
        finally:
            client.stop()
    latencies, last, lost = [], [], 0
    for index, commit in enumerate(commits):
        arrivals = [per_stream[index] for per_stream in times]
        got = [t for t in arrivals if t is not None]
        lost += len(arrivals) - len(got)
        latencies.extend((t - commit) * 1000 for t in got)
        if got and len(got) == len(arrivals):
            last.append((max(got) - commit) * 1000)
    print(f"done; {lost} lost", flush=True)
    return Row(
        streams=streams, opened=opened, open_failed=failed, open_s=open_s, trades=len(ids), deliveries=len(latencies),
        lost=lost, closed=closed, p50_ms=percentile(latencies, 0.50), p95_ms=percentile(latencies, 0.95),
        max_ms=max(latencies) if latencies else None, last_p95_ms=percentile(last, 0.95), rss_zero_kib=rss_zero,
        rss_kib=rss_open, rss_after_kib=rss_after, server_cpu=server_cpu, server_cpu_s=server_cpu_s, client_cpu=client_cpu, achieved_rate=achieved,
    )


# ---------------------------------------------------------------------------
# Resumed streams: the memory of their replays


@dataclass
class ResumedRow:
    kind: str  # "plain" (no replay, the control), "resumed" (one since) or "spread" (SPREAD_POINTS of them)
    streams: int
    opened: int
    open_failed: int
    expected: int  # events every stream together should receive
    delivered: int
    short: int  # streams that got fewer events than they should
    closed: int
    replay_s: float  # from the first connection until every stream had its replay
    rss_base_kib: int
    rss_peak_kib: int
    rss_full_kib: int  # every replay done, the streams still open
    rss_after_kib: int  # the streams closed


def ensure_replay_trades(user, slug: str, replay: int) -> list[int]:
    """Give the market more than ``replay`` trades; return the latest ``replay + 1`` ids, newest first.

    The id at position k has exactly k of the market's trades after it.
    """
    from bellwether.markets.models import Trade

    have = Trade.objects.filter(market__slug=slug).count()
    if have <= replay:
        print(f"  placing {replay + 1 - have} trades for the replays", end=" ... ", flush=True)
        place_trades(user, slug, count=replay + 1 - have, rate=1e9)
        print("done", flush=True)
    return list(Trade.objects.filter(market__slug=slug).order_by("-id").values_list("id", flat=True)[: replay + 1])


class RssSampler:
    """Sample the summed RSS of some processes in a thread; keep the highest figure."""

    def __init__(self, pids: list[int]) -> None:
        import threading

        self.pids = pids
        self.peak_kib = rss_kib(pids)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(RSS_SAMPLE_S):
            with contextlib.suppress(OSError):
                self.peak_kib = max(self.peak_kib, rss_kib(self.pids))

    def stop(self) -> int:
        """Stop sampling; return the peak in KiB."""
        self._stop.set()
        self._thread.join()
        self.peak_kib = max(self.peak_kib, rss_kib(self.pids))
        return self.peak_kib


def measure_resumed(args, env: dict[str, str], slug: str, label: str, *, kind: str, points: list[tuple[int | None, int]]) -> ResumedRow:
    """Serve, open ``args.resumed`` streams, and return the memory figures.

    ``points`` lists (since, events it replays) pairs; stream i resumes at
    ``points[i % len(points)]`` (a plain stream for a since of None). The
    warm-up stream resumes at the first point, so the baseline has the
    same code loaded.
    """
    base = f"/live/markets/{slug}/"
    paths = [base if since is None else f"{base}?since={since}" for since, _ in points]
    replays = [replay for _, replay in points]
    log_path = args.var_dir / f"server-{label}-{kind}-{args.resumed}.log"
    with live_server(env, workers=args.workers, log_path=log_path) as (_, live_port, server):
        client = Client(live_port, paths)
        try:
            deadline = time.monotonic() + OPEN_TIMEOUT_S
            while client.ask("open", 1)[1] != 1:
                if time.monotonic() > deadline or server.poll() is not None:
                    raise RuntimeError(f"the live server did not open a stream within {OPEN_TIMEOUT_S:.0f} s; see {log_path}")
                time.sleep(0.5)
            client.ask("drain", replays, REPLAY_GRACE_S)
            client.ask("close")
            time.sleep(SETTLE_S)
            workers = live_worker_pids(server.pid)
            if not workers:
                raise RuntimeError("no live worker process found under the server")
            rss_base = rss_kib(workers)
            print(f"    {kind}: {len(workers)} live worker(s) {workers}, {rss_base / 1024:.1f} MiB after the warm-up; opening {args.resumed:,}", end=" ... ", flush=True)
            sampler = RssSampler(workers)
            started = time.monotonic()
            _, opened, failed, _ = client.ask("open", args.resumed)
            _, counts, _, closed = client.ask("drain", replays, REPLAY_GRACE_S)
            replay_s = time.monotonic() - started
            rss_peak = sampler.stop()
            rss_full = rss_kib(workers)
            delivered = sum(got for got, _ in counts)
            print(f"{opened:,} open, {delivered:,} events in {replay_s:.1f} s", flush=True)
            client.ask("close")
            time.sleep(2 * SETTLE_S)
            rss_after = rss_kib(workers)
        finally:
            client.stop()
    return ResumedRow(
        kind=kind, streams=args.resumed, opened=opened, open_failed=failed, expected=sum(want for _, want in counts),
        delivered=delivered, short=sum(1 for got, want in counts if got < want), closed=closed, replay_s=replay_s,
        rss_base_kib=rss_base, rss_peak_kib=rss_peak, rss_full_kib=rss_full, rss_after_kib=rss_after,
    )


def measure_resumed_rows(args, env: dict[str, str], user, slug: str, label: str) -> list[ResumedRow]:
    """Measure ``args.resumed`` plain streams (the control), as many resumed at one point, and at SPREAD_POINTS points."""
    from django.db import connections

    from bellwether.live.selectors import REPLAY_LIMIT

    ids = ensure_replay_trades(user, slug, REPLAY_LIMIT)
    connections.close_all()
    spread = [(ids[REPLAY_LIMIT - k], REPLAY_LIMIT - k) for k in range(SPREAD_POINTS)]
    return [
        measure_resumed(args, env, slug, label, kind="plain", points=[(None, 0)]),
        measure_resumed(args, env, slug, label, kind="resumed", points=[(ids[REPLAY_LIMIT], REPLAY_LIMIT)]),
        measure_resumed(args, env, slug, label, kind="spread", points=spread),
    ]


def print_resumed_report(args, label: str, rows: list[ResumedRow]) -> None:
    """Print the memory of plain and resumed streams as MiB and as ratios to each run's baseline."""
    print()
    print(
        f"Resumed streams, {label}: {args.workers} live worker(s). plain: no replay (the control); "
        f"resumed: every stream replays the latest 500 trades; spread: {SPREAD_POINTS} resume points, "
        f"{500 - SPREAD_POINTS + 1} to 500 trades each"
    )
    print(
        "| streams | open | events delivered / expected | short streams | all delivered in "
        "| RSS baseline | RSS peak | RSS all delivered, open | RSS after closing | replays' share: peak, after closing |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    plain = rows[0]
    for row in rows:

        def shown(kib: int, row=row) -> str:
            return f"{kib / 1024:.1f} MiB (x{kib / row.rss_base_kib:.2f})"

        # What the replays added beyond what as many plain streams cost, each over its own baseline.
        peak_share = (row.rss_peak_kib - row.rss_base_kib - plain.rss_peak_kib + plain.rss_base_kib) / 1024
        after_share = (row.rss_after_kib - row.rss_base_kib - plain.rss_after_kib + plain.rss_base_kib) / 1024
        print(
            f"| {row.streams:,} {row.kind} | {row.opened:,} | {row.delivered:,} / {row.expected:,} | {row.short} "
            f"| {row.replay_s:.1f} s | {row.rss_base_kib / 1024:.1f} MiB | {shown(row.rss_peak_kib)} "
            f"| {shown(row.rss_full_kib)} | {shown(row.rss_after_kib)} "
            f"| {'—' if row is plain else f'{peak_share:.1f} MiB, {after_share:.1f} MiB'} |"
        )
        if row.open_failed or row.closed:
            print(f"note: {row.kind}: {row.open_failed} streams failed to open, {row.closed} were closed by the server")


# ---------------------------------------------------------------------------
# Report


def print_report(args, label: str, rows: list[Row]) -> None:
    """Print the table and the target's verdict."""
    print()
    print(f"Live streams, {label}: {args.workers} live worker(s), {args.trades} trades at {args.rate:g}/s per row")
    header = (
        "| streams | open | trades | deliveries | lost | p50 ms | p95 ms | max ms | p95 until last stream ms "
        "| RSS 0 → N → after MiB | KiB per stream | after trades | live worker CPU | µs CPU per delivery | client CPU |"
    )
    print(header)
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|---:|---:|---:|")
    for row in rows:
        per_stream = (row.rss_kib - row.rss_zero_kib) / row.opened if row.opened else None
        after = (row.rss_after_kib - row.rss_zero_kib) / row.opened if row.opened else None
        print(
            f"| {row.streams:,} | {row.opened:,} | {row.trades} | {row.deliveries:,} | {row.lost} "
            f"| {format_ms(row.p50_ms, whole_from=100)} | {format_ms(row.p95_ms, whole_from=100)} "
            f"| {format_ms(row.max_ms, whole_from=100)} | {format_ms(row.last_p95_ms, whole_from=100)} "
            f"| {row.rss_zero_kib / 1024:.1f} → {row.rss_kib / 1024:.1f} → {row.rss_after_kib / 1024:.1f} "
            f"| {'—' if per_stream is None else f'{per_stream:.1f}'} | {'—' if after is None else f'{after:.1f}'} "
            f"| {row.server_cpu:.0%} "
            f"| {'—' if not row.deliveries else f'{row.server_cpu_s / row.deliveries * 1e6:.0f}'} | {row.client_cpu:.0%} |"
        )
    target = next((r for r in rows if r.streams == TARGET_STREAMS), None)
    if target is not None and target.p95_ms is not None:
        verdict = "met" if target.p95_ms < TARGET_P95_MS and target.lost == 0 else "NOT met"
        print(f"target: p95 under {TARGET_P95_MS:.0f} ms with {TARGET_STREAMS:,} streams and no event lost: {verdict} ({target.p95_ms:.1f} ms)")
    for row in rows:
        if row.open_failed or row.closed:
            print(f"note: {row.streams:,} streams: {row.open_failed} failed to open, {row.closed} closed by the server")
        if row.achieved_rate < 0.95 * args.rate:
            print(f"note: {row.streams:,} streams: trades ran at {row.achieved_rate:.1f}/s, below the {args.rate:g}/s asked")


def main(argv: list[str] | None = None) -> None:
    """Prepare the database, measure each stream count on a fresh server, print the figures."""
    args = parse_args(argv)
    # SIGTERM must unwind through the `finally` blocks that stop the server.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    prepare_database(args, example_name="bellwether_bench_live")
    env = base_env(args, unset=("LIVE_URL", "LIVE_PORT", "LIVE_POLL_S", "LIVE_HEARTBEAT_S", "DEMO_TRADERS"))
    env["STARTING_BALANCE_CREDITS"] = str(TRADER_BALANCE_CREDITS)
    if args.poll_s is not None:
        env["LIVE_POLL_S"] = str(args.poll_s)
    migrate_s = start_django(dict(env))
    from django.db import connection, connections

    label = database_label(args, connection, with_version=True)
    user, slug = prepare_market()
    connections.close_all()
    counts = f"{args.resumed:,} resumed" if args.resumed else ", ".join(f"{n:,}" for n in args.stream_counts)
    print(f"{label}: migrated in {migrate_s:.1f} s; market {slug}, streams {counts}", flush=True)
    warn_if_busy("the live server, the client and the trades")
    load_before = load_average()
    started = time.monotonic()
    rows = []
    short = "postgres" if connection.vendor == "postgresql" else "sqlite"
    if args.resumed:
        print(f"  {args.resumed:,} plain streams, then {args.resumed:,} resumed ones", flush=True)
        resumed_rows = measure_resumed_rows(args, env, user, slug, short)
        print_resumed_report(args, label, resumed_rows)
        print(f"measurement took {time.monotonic() - started:.0f} s; load average at the start {load_before}, at the end {load_average()}")
        sys.exit(1 if any(r.short or r.open_failed for r in resumed_rows) else 0)
    for streams in args.stream_counts:
        print(f"  {streams:,} stream(s)", flush=True)
        rows.append(measure(args, env, user, slug, streams, short))
    print_report(args, label, rows)
    print(f"measurement took {time.monotonic() - started:.0f} s; load average at the start {load_before}, at the end {load_average()}")
    if any(r.lost or r.open_failed for r in rows):
        sys.exit(1)


if __name__ == "__main__":
    main()
