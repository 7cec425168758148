"""Share the database, server and report helpers of the benchmark scripts.

The scripts run as ``python benchmarks/<name>.py``, which puts this folder
first on ``sys.path``, so they import this module as ``common``.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import math
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.parse
from collections.abc import Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
LOOPBACK = "127.0.0.1"
SERVER_START_TIMEOUT_S = 60.0
SERVER_STOP_TIMEOUT_S = 15.0


# ---------------------------------------------------------------------------
# Environment and database


def base_env(args: argparse.Namespace, *, unset: tuple[str, ...] = ()) -> dict[str, str]:
    """Return this process's environment pointed at the benchmark's var dir and database.

    ``unset`` names further variables to drop along with the usual ones.
    """
    env = dict(os.environ)
    env["DJANGO_SETTINGS_MODULE"] = "bellwether.settings.base"
    env["BELLWETHER_VAR_DIR"] = str(args.var_dir)
    # A developer's settings must not leak into the figures.
    for name in ("DEBUG", "DATABASE_URL", "PAGE_CACHE_TTL_S", "ALLOWED_HOSTS", "LOG_LEVEL", *unset):
        env.pop(name, None)
    if args.database_url:
        env["DATABASE_URL"] = args.database_url
    return env


def start_django(env: dict[str, str]) -> float:
    """Replace this process's environment with ``env``, start Django and migrate; return the seconds migrate took."""
    os.environ.clear()
    os.environ.update(env)
    import django

    django.setup()
    from django.core.management import call_command

    started = time.perf_counter()
    call_command("migrate", interactive=False, verbosity=0)
    return time.perf_counter() - started


def sqlite_path(args: argparse.Namespace) -> Path:
    """Return where the benchmark's SQLite database lives."""
    return args.var_dir / "bellwether.sqlite3"


def drop_sqlite(args: argparse.Namespace) -> None:
    """Delete the benchmark's SQLite database (never the development one)."""
    if args.var_dir == (REPO / "var").resolve():
        sys.exit("refusing --rebuild in the development var dir; pick another --var-dir")
    for suffix in ("", "-wal", "-shm"):
        Path(f"{sqlite_path(args)}{suffix}").unlink(missing_ok=True)


def ensure_postgres_database(url: str, *, rebuild: bool, example_name: str) -> None:
    """Create the PostgreSQL database named in ``url`` if missing; drop it first on ``rebuild``.

    ``example_name`` is the database name the error for a URL without one
    suggests.
    """
    import psycopg
    from psycopg import sql

    parts = urllib.parse.urlsplit(url)
    name = urllib.parse.unquote(parts.path.lstrip("/"))
    if not name:
        sys.exit(f"--database-url must name a database, e.g. .../{example_name}")
    if rebuild and "bench" not in name:
        sys.exit(f"refusing to drop {name!r}: --rebuild only drops databases whose name contains 'bench'")
    admin_url = urllib.parse.urlunsplit(parts._replace(path="/postgres", scheme="postgresql"))
    with psycopg.connect(admin_url, autocommit=True, connect_timeout=10) as conn:
        if rebuild:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone()
        if not exists:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
            print(f"created PostgreSQL database {name}", flush=True)


def prepare_database(args: argparse.Namespace, *, example_name: str) -> None:
    """Create (or, with ``--rebuild``, recreate) the benchmark database and its var dir."""
    if args.database_url:
        ensure_postgres_database(args.database_url, rebuild=args.rebuild, example_name=example_name)
    elif args.rebuild:
        drop_sqlite(args)
    args.var_dir.mkdir(parents=True, exist_ok=True)


def database_label(args: argparse.Namespace, connection, *, with_version: bool = False) -> str:
    """Return the database in use as a report names it, with the server's version if asked."""
    if connection.vendor == "postgresql":
        if not with_version:
            return f"PostgreSQL {connection.settings_dict['NAME']}"
        with connection.cursor() as cursor:
            cursor.execute("SHOW server_version")
            version = cursor.fetchone()[0].split()[0]
        return f"PostgreSQL {version} {connection.settings_dict['NAME']}"
    path = sqlite_path(args)
    shown = path.relative_to(REPO) if path.is_relative_to(REPO) else path
    if not with_version:
        return f"SQLite {shown}"
    import sqlite3

    return f"SQLite {sqlite3.sqlite_version} {shown}"


# ---------------------------------------------------------------------------
# Server


def free_port() -> int:
    """Return a TCP port on the loopback address that is free right now."""
    with socket.socket() as sock:
        sock.bind((LOOPBACK, 0))
        return sock.getsockname()[1]


def bellwether_command() -> list[str]:
    """Return the argv prefix that runs the `bellwether` command of this virtualenv."""
    script = Path(sys.executable).parent / "bellwether"
    return [str(script)] if script.exists() else [sys.executable, "-m", "bellwether.cli"]


def fetch(port: int, path: str, timeout_s: float = 10.0) -> tuple[int, dict[str, str], str]:
    """GET ``path`` from the server; return status, headers (lower-case names) and body."""
    conn = http.client.HTTPConnection(LOOPBACK, port, timeout=timeout_s)
    try:
        conn.request("GET", path, headers={"Accept": "text/html"})
        response = conn.getresponse()
        body = response.read().decode("utf-8", "replace")
        return response.status, {k.lower(): v for k, v in response.getheaders()}, body
    finally:
        conn.close()


@contextlib.contextmanager
def running_server(env: dict[str, str], *, workers: int, log_path: Path) -> Iterator[tuple[int, int]]:
    """Start `bellwether serve` on a free loopback port; yield the port and process group; stop it on exit."""
    port = free_port()
    argv = bellwether_command() + ["serve", "--host", LOOPBACK, "--port", str(port), "--workers", str(workers)]
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "wb") as log:
        # A session of its own, so stopping it reaches granian's worker processes too.
        process = subprocess.Popen(argv, env=env, cwd=REPO, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            wait_for_health(process, port, log_path)
            yield port, process.pid
        finally:
            stop_process_group(process)


def wait_for_health(process: subprocess.Popen, port: int, log_path: Path) -> None:
    """Return once /health/ answers 200; raise with the server's log if it never does."""
    deadline = time.monotonic() + SERVER_START_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            break
        try:
            status, _, _ = fetch(port, "/health/", timeout_s=2.0)
        except OSError:
            status = 0
        if status == 200:
            return
        time.sleep(0.2)
    tail = log_path.read_text(errors="replace")[-3000:]
    raise RuntimeError(f"the server did not answer /health/ within {SERVER_START_TIMEOUT_S:.0f} s; its log:\n{tail}")


def stop_process_group(process: subprocess.Popen) -> None:
    """Stop ``process`` and everything in its process group, politely first."""
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=SERVER_STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=SERVER_STOP_TIMEOUT_S)
    # granian's workers may outlive their parent by a moment, even one that has already exited.
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)


# ---------------------------------------------------------------------------
# Report


def format_ms(value: float | None, *, whole_from: float = math.inf) -> str:
    """Return milliseconds with two decimals, without them from ``whole_from`` on, or "—" for no figure."""
    if value is None:
        return "—"
    return f"{value:.2f}" if value < whole_from else f"{value:.0f}"


def format_ratio(value: float | None) -> str:
    """Return a ratio with two decimals, three below 0.1, or "—" for no figure."""
    if value is None:
        return "—"
    # Small ratios (an uncached page against /health/) would all show as 0.00 with two.
    return f"{value:.2f}" if value >= 0.1 else f"{value:.3f}"


def load_average() -> str:
    """Return the 1-minute load average next to the core count, e.g. "0.4 on 2 cores"."""
    return f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} cores"


def warn_if_busy(competitors: str) -> None:
    """Warn when other processes already keep the CPUs busy, which lowers every figure.

    ``competitors`` names what the benchmark runs, e.g. "the server and the
    load generator".
    """
    load = os.getloadavg()[0]
    if load > 0.5 * (os.cpu_count() or 1):
        print(
            f"WARNING: 1-minute load average is {load_average()} before the measurement; "
            f"other processes compete with {competitors}.",
            flush=True,
        )
