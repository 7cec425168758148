"""Run real processes (`bellwether serve`, scripts, commands) against the suite's test database.

Tests that start a server subprocess share these helpers:

- `free_port` and `free_port_pair`: loopback ports to start on; a pair is
  a port p with p + 1 free too, for the pages and the live streams.
- `database_url`: the DATABASE_URL of the suite's current test database
  (or of another database on the same PostgreSQL server), for the child's
  environment.
- `status_of`: one GET on a fresh connection, its status or None.
- `wait_until_up`: a bounded poll until the server answers; it fails with
  the tail of the server's log if the process exits first or time runs out.
- `stop`: SIGTERM, then SIGKILL if the process outlives the timeout.
"""

from __future__ import annotations

import contextlib
import http.client
import os
import signal
import socket
import subprocess
import time
import urllib.parse
from collections.abc import Callable, Mapping
from pathlib import Path

import pytest
from django.db import connection

HOST = "127.0.0.1"
POLL_S = 0.2  # between two tries of a bounded poll


# --- ports -------------------------------------------------------------------


def free_port(*, host: str = HOST) -> int:
    """Return a TCP port on ``host`` that is free now (the kernel's pick)."""
    with socket.socket() as probe:
        probe.bind((host, 0))
        return probe.getsockname()[1]


def free_port_pair(*, host: str = HOST) -> int:
    """Return a port p on ``host`` with p and p + 1 both free (a server's pages and its live streams)."""
    for _ in range(50):
        port = free_port(host=host)
        if port >= 65535:
            continue
        with socket.socket() as probe:
            try:
                probe.bind((host, port + 1))
            except OSError:
                continue
        return port
    raise RuntimeError("no two free ports in a row")


# --- the database ------------------------------------------------------------


def database_url(*, name: str | None = None) -> str:
    """Return a DATABASE_URL for the suite's current test database, or for database ``name`` beside it.

    Built from ``connection.settings_dict``, so it names the test database
    pytest-django created (``test_...``), on SQLite or PostgreSQL. On
    PostgreSQL ``name`` picks another database on the same server (a fresh
    one, or ``postgres`` for maintenance); on SQLite it is a file path.
    """
    db = connection.settings_dict
    name = db["NAME"] if name is None else name
    if connection.vendor == "sqlite":
        return f"sqlite:///{name}"
    auth = urllib.parse.quote(db.get("USER") or "")
    if db.get("PASSWORD"):
        auth += f":{urllib.parse.quote(db['PASSWORD'])}"
    return f"postgres://{auth}@{db.get('HOST') or '127.0.0.1'}:{db.get('PORT') or 5432}/{name}"


# --- talking to a server -----------------------------------------------------


def status_of(port: int, path: str, *, timeout_s: float = 2.0, host: str = HOST) -> int | None:
    """GET ``path`` on a new connection; return the status, or None when nothing answers in ``timeout_s``."""
    conn = http.client.HTTPConnection(host, port, timeout=timeout_s)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        response.read()
        return response.status
    except OSError:
        return None
    finally:
        conn.close()


def health_ok(port: int, *, timeout_s: float = 2.0) -> bool:
    """Return whether /health/ on ``port`` answers 200 within ``timeout_s``."""
    return status_of(port, "/health/", timeout_s=timeout_s) == 200


def log_tail(log: Path, *, chars: int | None = None) -> str:
    """Return the last ``chars`` characters of the log at ``log`` (all of it when None)."""
    text = log.read_text(errors="replace")
    return text if chars is None else text[-chars:]


def wait_until_up(
    process: subprocess.Popen,
    *,
    log: Path,
    checks: Mapping[str, Callable[[], object]],
    timeout_s: float,
    name: str = "bellwether serve",
    tail_chars: int | None = None,
) -> None:
    """Poll each of ``checks`` until it has passed once; fail with the log if ``process`` exits first or ``timeout_s`` passes.

    A check passes when it returns something true; one that raises OSError
    (nothing listening yet) has not passed. The failure names the checks
    still waiting and ends with the last ``tail_chars`` characters of the
    log (all of it when None).
    """
    deadline = time.monotonic() + timeout_s
    waiting = dict(checks)
    while True:
        for label, check in list(waiting.items()):
            with contextlib.suppress(OSError):
                if check():
                    del waiting[label]
        if not waiting:
            return
        if process.poll() is not None:
            why = f"exited with {process.returncode}"
        elif time.monotonic() > deadline:
            why = f"did not answer within {timeout_s:.0f} s"
        else:
            time.sleep(POLL_S)  # bounded poll while the workers start
            continue
        up = [label for label in checks if label not in waiting]
        pytest.fail(
            f"{name} {why} (waiting for: {', '.join(waiting)}; up: {', '.join(up) or 'nothing'}); its log:\n"
            f"{log_tail(log, chars=tail_chars)}"
        )


# --- stopping ----------------------------------------------------------------


def stop(process: subprocess.Popen, *, timeout_s: float = 20.0, process_group: bool = False) -> bool:
    """Send SIGTERM, wait up to ``timeout_s``, then SIGKILL; return whether it stopped on SIGTERM.

    With ``process_group`` the signals go to the process group it leads
    (start it with ``start_new_session=True``), and the group gets a last
    SIGKILL: granian's workers may outlive their parent by a moment.
    """

    def send(signum: int) -> None:
        if process_group:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signum)
        else:
            process.send_signal(signum)

    stopped = True
    if process.poll() is None:
        send(signal.SIGTERM)
        try:
            process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            stopped = False
            send(signal.SIGKILL)
            process.wait()
    if process_group:
        send(signal.SIGKILL)
    return stopped
