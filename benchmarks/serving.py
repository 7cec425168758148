#!/usr/bin/env python
"""Measure how `bellwether serve` holds up against silent and slow clients, crashed processes and Ctrl-C.

One run starts ``bellwether serve --workers N`` (default 2) on a migrated
database and measures, in this order:

1. the baseline: ``--samples`` GETs of ``/health/``, each on a new
   connection, one after the other: p50 and max latency;
2. for each count in ``--idle`` (default 200, 1,000 and 10,000): that many
   TCP connections opened to the pages port that never send a byte, the same
   GETs while they are open, and the seconds until the server has closed
   them all (its header timeout);
3. ``--slow`` clients (default 50) that send a request header one byte a
   second, the same GETs meanwhile, and when the server cut them off;
4. kill -9 of one pages worker, then of one live worker: seconds until the
   site answers again (``/health/`` 200 and the live port's 404 for an
   unknown market) and a new worker runs in its place;
5. kill -9 of the pages server's main process, then the live server's:
   seconds until `bellwether serve` has started it again and it answers;
6. SIGINT to the `bellwether serve` process alone: seconds until it exits,
   its exit code, and whether any process of its tree is left.

Latencies are printed in milliseconds and as ratios to the baseline; a GET
that gets no answer within ``--timeout`` seconds counts as failed. SQLite
lives in ``var/bench-serving/``; ``--database-url postgres://...`` runs on
PostgreSQL. The figures go to docs/reliability.md. Exits 1 when a check the
tests also make fails (a failed GET with 200 idle or 50 slow clients, a p50
or max over 1 s there, a kill not recovered within 5 s, a stop over 5 s or
not exit code 0, a process left behind). About a minute at the defaults.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import os
import resource
import select
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
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
    free_port,
    load_average,
    prepare_database,
    start_django,
    wait_for_health,
    warn_if_busy,
)

DEFAULT_VAR_DIR = REPO / "var" / "bench-serving"
LIVE_PATH = "/live/markets/no-such-market/"
CHECKED_IDLE = 200  # the idle count the tests check (tests/project/test_serving_hostile.py)
ANSWER_WITHIN_S = 1.0
RECOVER_WITHIN_S = 5.0
STOP_WITHIN_S = 5.0
RESTART_TIMEOUT_S = 120.0
POLL_S = 0.02

if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from bellwether.server import HEADER_TIMEOUT_S  # noqa: E402  (what `bellwether serve` uses by default)


# ---------------------------------------------------------------------------
# Options


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Return the command-line options."""
    parser = argparse.ArgumentParser(
        prog="benchmarks/serving.py",
        description=(
            "Measure `bellwether serve` under hostile clients and crashes (issue 10): /health/ latency "
            "(p50/max) alone, with N silent connections open and with slow clients sending a header a "
            "byte a second, as ratios to the baseline; seconds until a killed worker is replaced and the "
            "site answers; seconds until a killed server is started again; seconds for SIGINT to stop the "
            "whole process tree. Exits 1 when a check the tests also make fails. About a minute."
        ),
    )
    parser.add_argument("--database-url", metavar="URL", help="PostgreSQL URL of a dedicated benchmark database, "
                        "e.g. postgres://postgres@127.0.0.1:5432/bellwether_bench_serving (created when missing); "
                        "default: SQLite in --var-dir")
    parser.add_argument("--var-dir", type=Path, default=DEFAULT_VAR_DIR, help="BELLWETHER_VAR_DIR for the run (default: var/bench-serving)")
    parser.add_argument("--rebuild", action="store_true", help="delete the benchmark database first")
    parser.add_argument("--workers", type=int, default=2, help="worker processes of each server (default 2)")
    parser.add_argument("--idle", default="200,1000,10000", metavar="N,N,...", help="counts of silent connections (default 200,1000,10000)")
    parser.add_argument("--slow", type=int, default=50, metavar="N", help="clients sending a header a byte a second (default 50; 0 skips)")
    parser.add_argument("--samples", type=int, default=40, metavar="N", help="GETs of /health/ per scenario (default 40)")
    parser.add_argument("--timeout", type=float, default=5.0, metavar="S", help="seconds a GET may wait before it counts as failed (default 5)")
    parser.add_argument("--no-kills", action="store_true", help="skip the kill -9 measurements")
    args = parser.parse_args(argv)
    args.var_dir = args.var_dir.resolve()
    try:
        args.idle_counts = [int(n) for n in args.idle.split(",") if n.strip()]
    except ValueError:
        parser.error("--idle takes comma-separated numbers")
    if args.workers < 1 or args.samples < 1 or args.slow < 0 or any(n < 1 for n in args.idle_counts):
        parser.error("--workers, --samples and the --idle counts must be at least 1, --slow at least 0")
    if args.database_url and not args.database_url.startswith(("postgres://", "postgresql://")):
        parser.error("--database-url must be a postgres:// URL (SQLite is the default)")
    return args


# ---------------------------------------------------------------------------
# Processes


def _stat(pid: int) -> list[str] | None:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None


def alive(pid: int) -> bool:
    """Return whether ``pid`` runs (a zombie has stopped)."""
    fields = _stat(pid)
    return fields is not None and fields[0] not in ("Z", "X")


def children(pid: int) -> list[int]:
    """Return the running children of ``pid``."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            fields = _stat(int(entry))
            if fields is not None and int(fields[1]) == pid and fields[0] not in ("Z", "X"):
                found.append(int(entry))
    return sorted(found)


def descendants(pid: int) -> list[int]:
    """Return every running process below ``pid``."""
    found, stack = [], [pid]
    while stack:
        for child in children(stack.pop()):
            found.append(child)
            stack.append(child)
    return found


def server_main(serve_pid: int, marker: bytes) -> int | None:
    """Return the child of ``serve_pid`` whose command line holds ``marker`` (b"serve_pages" or b"serve_live")."""
    for child in children(serve_pid):
        with contextlib.suppress(OSError):
            if marker in Path(f"/proc/{child}/cmdline").read_bytes():
                return child
    return None


def raise_open_files(wanted: int) -> None:
    """Raise this process's open-file limit so it can hold ``wanted`` sockets (as far as the hard limit allows)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft != resource.RLIM_INFINITY and soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))


# ---------------------------------------------------------------------------
# HTTP


def status_of(port: int, path: str, timeout_s: float) -> int | None:
    """GET ``path`` on a new connection; return the status, or None without an answer in ``timeout_s``."""
    conn = http.client.HTTPConnection(LOOPBACK, port, timeout=timeout_s)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        response.read()
        return response.status
    except OSError:
        return None
    finally:
        conn.close()


def site_answers(port: int) -> bool:
    return status_of(port, "/health/", 1.0) == 200 and status_of(port + 1, LIVE_PATH, 1.0) == 404


def closed_by_server(sock: socket.socket) -> bool:
    """Return whether the server has closed ``sock``, without waiting."""
    # poll(), not select(): select() cannot take a descriptor past 1,023, and the 10,000-socket scenario has them.
    poller = select.poll()
    poller.register(sock, select.POLLIN)
    if not poller.poll(0):
        return False
    try:
        return sock.recv(4096) == b""
    except OSError:
        return True


@dataclass
class Probe:
    """The /health/ GETs of one scenario."""

    label: str
    latencies_s: list[float] = field(default_factory=list)
    failed: int = 0
    note: str = ""

    @property
    def p50_ms(self) -> float | None:
        return statistics.median(self.latencies_s) * 1000 if self.latencies_s else None

    @property
    def max_ms(self) -> float | None:
        return max(self.latencies_s) * 1000 if self.latencies_s else None


def probe_health(port: int, probe: Probe, *, samples: int, timeout_s: float) -> Probe:
    """Add ``samples`` GETs of /health/ to ``probe``."""
    for _ in range(samples):
        started = time.perf_counter()
        if status_of(port, "/health/", timeout_s) == 200:
            probe.latencies_s.append(time.perf_counter() - started)
        else:
            probe.failed += 1
    return probe


def seconds_until_closed(sockets: list[socket.socket], started: float, limit_s: float) -> float | None:
    """Return the seconds from ``started`` until the server has closed every socket, or None past ``limit_s``."""
    pending = list(sockets)
    while pending:
        pending = [s for s in pending if not closed_by_server(s)]
        if pending and time.monotonic() - started > limit_s:
            return None
        if pending:
            time.sleep(0.1)
    return time.monotonic() - started


# ---------------------------------------------------------------------------
# Scenarios


def idle_scenario(port: int, count: int, args) -> Probe:
    """Open ``count`` silent connections, probe /health/, and time how long the server keeps them."""
    probe = Probe(f"{count:,} idle connections")
    sockets = []
    opened_at = time.monotonic()
    try:
        for _ in range(count):
            sock = socket.socket()
            sock.setblocking(False)
            with contextlib.suppress(BlockingIOError):
                sock.connect((LOOPBACK, port))
            sockets.append(sock)
        probe_health(port, probe, samples=args.samples, timeout_s=args.timeout)
        closed = seconds_until_closed(sockets, opened_at, HEADER_TIMEOUT_S + 10)
        probe.note = "still open after 15 s" if closed is None else f"all closed by the server after {closed:.1f} s"
    finally:
        for sock in sockets:
            sock.close()
    return probe


def slow_scenario(port: int, count: int, args) -> Probe:
    """Run ``count`` clients that send a request header a byte a second; probe /health/ meanwhile."""
    probe = Probe(f"{count} slow-header clients")
    header = f"GET /health/ HTTP/1.1\r\nHost: {LOOPBACK}\r\nUser-Agent: slow\r\nAccept: */*\r\n\r\n".encode()
    sockets = [socket.create_connection((LOOPBACK, port)) for _ in range(count)]
    cut_after: dict[int, float] = {}
    stop = threading.Event()
    started = time.monotonic()

    def trickle() -> None:
        for index in range(len(header)):
            for number, sock in enumerate(sockets):
                if number in cut_after:
                    continue
                if closed_by_server(sock):
                    cut_after[number] = time.monotonic() - started
                    continue
                try:
                    sock.sendall(header[index : index + 1])
                except OSError:
                    cut_after[number] = time.monotonic() - started
            if len(cut_after) == count or stop.wait(1.0):
                return

    sender = threading.Thread(target=trickle)
    sender.start()
    try:
        while len(cut_after) < count and time.monotonic() - started < HEADER_TIMEOUT_S + 5:
            probe_health(port, probe, samples=1, timeout_s=args.timeout)
            stop.wait(0.05)
    finally:
        stop.set()
        sender.join()
        for sock in sockets:
            sock.close()
    if len(cut_after) == count:
        probe.note = f"all cut off by the server after {min(cut_after.values()):.1f}-{max(cut_after.values()):.1f} s"
    else:
        probe.note = f"{count - len(cut_after)} still connected after {HEADER_TIMEOUT_S + 5} s"
    return probe


@dataclass
class Recovery:
    label: str
    seconds: float | None
    limit_s: float


def kill_worker(serve_pid: int, port: int, marker: bytes, label: str) -> Recovery:
    """kill -9 one worker of the server ``marker`` names; time until the site answers and a new worker runs."""
    main = server_main(serve_pid, marker)
    workers = children(main) if main else []
    if not workers:
        return Recovery(label, None, RECOVER_WITHIN_S)
    victim = workers[0]
    os.kill(victim, signal.SIGKILL)
    killed = time.monotonic()
    while time.monotonic() - killed < RESTART_TIMEOUT_S:
        now = children(main)
        if len(now) == len(workers) and victim not in now and site_answers(port):
            return Recovery(label, time.monotonic() - killed, RECOVER_WITHIN_S)
        time.sleep(POLL_S)
    return Recovery(label, None, RECOVER_WITHIN_S)


def kill_server(serve_pid: int, port: int, marker: bytes, label: str, workers: int) -> Recovery:
    """kill -9 the main process of the server ``marker`` names; time until it runs again with its workers and the site answers."""
    main = server_main(serve_pid, marker)
    if main is None:
        return Recovery(label, None, RESTART_TIMEOUT_S)
    os.kill(main, signal.SIGKILL)
    killed = time.monotonic()
    while time.monotonic() - killed < RESTART_TIMEOUT_S:
        new = server_main(serve_pid, marker)
        if new and new != main and len(children(new)) == workers and site_answers(port):
            return Recovery(label, time.monotonic() - killed, RESTART_TIMEOUT_S)
        time.sleep(POLL_S)
    return Recovery(label, None, RESTART_TIMEOUT_S)


@dataclass
class Stop:
    seconds: float | None
    exit_code: int | None
    left: list[int]


def interrupt(process: subprocess.Popen) -> Stop:
    """Send SIGINT to the serve process alone; time until it exits; list what of its tree is left."""
    tree = descendants(process.pid)
    process.send_signal(signal.SIGINT)
    started = time.monotonic()
    try:
        code = process.wait(STOP_WITHIN_S * 4)
        seconds = time.monotonic() - started
    except subprocess.TimeoutExpired:
        code, seconds = None, None
    return Stop(seconds, code, [pid for pid in tree if alive(pid)])


# ---------------------------------------------------------------------------
# Report


def print_report(args, label: str, probes: list[Probe], recoveries: list[Recovery], stop: Stop) -> None:
    """Print the tables."""
    baseline = probes[0]
    print()
    print(f"Serving under hostile clients, {label}: `bellwether serve --workers {args.workers}`, "
          f"{args.samples} GETs of /health/ per row, each on a new connection")
    print("| scenario | GETs answered | p50 ms | max ms | p50 x baseline | max x baseline | the hostile connections |")
    print("|---|---:|---:|---:|---:|---:|---|")
    for probe in probes:
        p50_ratio = probe.p50_ms / baseline.p50_ms if probe.p50_ms and baseline.p50_ms else None
        max_ratio = probe.max_ms / baseline.max_ms if probe.max_ms and baseline.max_ms else None
        answered = len(probe.latencies_s)
        print(
            f"| {probe.label} | {answered}/{answered + probe.failed} | {format_ms(probe.p50_ms, whole_from=100)} "
            f"| {format_ms(probe.max_ms, whole_from=100)} | {format_ratio(p50_ratio) if probe is not baseline else '1'} "
            f"| {format_ratio(max_ratio) if probe is not baseline else '1'} | {probe.note or '—'} |"
        )
    print()
    print("| event | seconds until answered again | bound |")
    print("|---|---:|---:|")
    for recovery in recoveries:
        shown = "not within the bound" if recovery.seconds is None else f"{recovery.seconds:.2f}"
        print(f"| {recovery.label} | {shown} | {recovery.limit_s:.0f} |")
    shown = "did not exit" if stop.seconds is None else f"{stop.seconds:.2f}"
    print(f"| SIGINT to `bellwether serve`: whole tree stopped (exit code {stop.exit_code}, {len(stop.left)} processes left) | {shown} | {STOP_WITHIN_S:.0f} |")


def failures(probes: list[Probe], recoveries: list[Recovery], stop: Stop) -> list[str]:
    """Return the checks the tests also make that this run failed."""
    found = []
    for probe in probes:
        checked = probe.label.startswith(f"{CHECKED_IDLE:,} idle") or "slow" in probe.label
        if checked and (probe.failed or (probe.max_ms or 0) >= ANSWER_WITHIN_S * 1000):
            found.append(f"{probe.label}: {probe.failed} failed GETs, max {format_ms(probe.max_ms)} ms")
    for recovery in recoveries:
        if recovery.seconds is None or recovery.seconds > recovery.limit_s:
            found.append(f"{recovery.label}: not answered within {recovery.limit_s:.0f} s")
    if stop.seconds is None or stop.seconds > STOP_WITHIN_S or stop.exit_code != 0 or stop.left:
        found.append(f"SIGINT: {stop.seconds} s, exit code {stop.exit_code}, left {stop.left}")
    return found


# ---------------------------------------------------------------------------


def start_server(env: dict[str, str], *, workers: int, log_path: Path) -> tuple[subprocess.Popen, int]:
    """Start `bellwether serve` on a free port (the next one for the live server); return it once both answer."""
    for _ in range(50):
        port = free_port()
        with socket.socket() as sock, contextlib.suppress(OSError):
            sock.bind((LOOPBACK, port + 1))
            break
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            bellwether_command() + ["serve", "--host", LOOPBACK, "--port", str(port), "--workers", str(workers)],
            env=env, cwd=REPO, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )
    wait_for_health(process, port, log_path)
    deadline = time.monotonic() + RESTART_TIMEOUT_S
    while not site_answers(port):
        if time.monotonic() > deadline:
            raise RuntimeError(f"the live server did not answer; see {log_path}")
        time.sleep(0.2)
    return process, port


def stop_leftovers(process: subprocess.Popen, tree: list[int]) -> None:
    """Kill whatever a failed run left: the serve process and the processes it had."""
    for pid in [process.pid, *tree]:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(5)


def main(argv: list[str] | None = None) -> None:
    """Prepare the database, run every scenario on one server, print the figures."""
    args = parse_args(argv)
    # SIGTERM must unwind through the `finally` block that stops the server.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    raise_open_files(max(args.idle_counts) + args.slow + 256)
    prepare_database(args, example_name="bellwether_bench_serving")
    env = base_env(args, unset=("LIVE_URL", "LIVE_PORT", "DEMO_TRADERS"))
    migrate_s = start_django(dict(env))
    from django.db import connection, connections

    label = database_label(args, connection, with_version=True)
    connections.close_all()
    print(f"{label}: migrated in {migrate_s:.1f} s", flush=True)
    warn_if_busy("the server and the clients")
    load_before = load_average()
    started = time.monotonic()
    process, port = start_server(env, workers=args.workers, log_path=args.var_dir / "server.log")
    tree = descendants(process.pid)
    try:
        # Every worker's first answers carry one-off costs: keep them out of the baseline.
        probe_health(port, Probe("warm-up"), samples=20, timeout_s=args.timeout)
        probes = [probe_health(port, Probe("baseline (nothing else open)"), samples=args.samples, timeout_s=args.timeout)]
        for count in args.idle_counts:
            print(f"  {count:,} idle connections", flush=True)
            probes.append(idle_scenario(port, count, args))
        if args.slow:
            print(f"  {args.slow} slow-header clients", flush=True)
            probes.append(slow_scenario(port, args.slow, args))
        recoveries = []
        if not args.no_kills:
            print("  kill -9 of workers and servers", flush=True)
            recoveries.append(kill_worker(process.pid, port, b"serve_pages", "kill -9 of a pages worker: replaced, site answers"))
            recoveries.append(kill_worker(process.pid, port, b"serve_live", "kill -9 of a live worker: replaced, site answers"))
            recoveries.append(kill_server(process.pid, port, b"serve_pages", "kill -9 of the pages server: started again, answers", args.workers))
            recoveries.append(kill_server(process.pid, port, b"serve_live", "kill -9 of the live server: started again, answers", args.workers))
        tree = descendants(process.pid)
        print("  SIGINT", flush=True)
        stop = interrupt(process)
    finally:
        if process.poll() is None or any(alive(pid) for pid in tree):
            stop_leftovers(process, tree)
    print_report(args, label, probes, recoveries, stop)
    print(f"measurement took {time.monotonic() - started:.0f} s; load average at the start {load_before}, at the end {load_average()}")
    failed = failures(probes, recoveries, stop)
    for line in failed:
        print(f"FAILED: {line}")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
