"""Start the web servers (docs/decisions/0001 and 0006, docs/live.md).

Pages and the API run on granian's WSGI interface, the fastest measured here;
the live streams (Server-Sent Events) run on granian's ASGI interface on a
port of their own, in a child process, each server with its own workers.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import threading

log = logging.getLogger(__name__)

# An open stream costs a worker a few kilobytes, not a thread: let each take many.
LIVE_STREAMS_PER_WORKER = 10_000
# Seconds a stopping live worker waits for its streams before it is killed.
LIVE_STOP_S = 2
CHILD_STOP_S = 15


def serve(*, host: str, port: int, workers: int, threads: int = 8, live_port: int | None = None) -> None:
    """Serve pages over WSGI on ``port`` and, unless ``live_port`` is None, the live streams on it.

    Returns when interrupted (Ctrl-C or SIGTERM); the live server stops with it.
    Each WSGI worker runs ``threads`` Python threads and accepts no more
    requests at once than it has threads, so requests queue in the socket
    instead of piling up inside one process (and its connection pool).
    """
    from django.conf import settings
    from django.db import connections
    from granian import Granian
    from granian.constants import Interfaces

    # Worker processes import the application afresh and need the same settings.
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "bellwether.settings.base")
    # Never hand an open database connection to forked workers.
    connections.close_all()
    live = None
    if live_port is not None:
        # Pages point their streams at this port: spawned workers read the
        # variable, forked ones inherit the setting.
        os.environ["LIVE_PORT"] = str(live_port)
        settings.LIVE_PORT = live_port
        live = start_live_server(host=host, port=live_port, workers=workers)
    stopping = threading.Event()
    if live is not None:
        threading.Thread(target=_report_early_exit, args=(live, stopping), daemon=True).start()
    try:
        Granian(
            target="bellwether.wsgi:application",
            address=host,
            port=port,
            interface=Interfaces.WSGI,
            workers=max(1, workers),
            blocking_threads=max(1, threads),
            backpressure=max(1, threads),
            log_access=False,
        ).serve()
    finally:
        stopping.set()
        if live is not None:
            stop_child(live)


def serve_live(*, host: str, port: int, workers: int) -> None:
    """Serve the live streams (bellwether.asgi) with granian's ASGI interface until interrupted."""
    from granian import Granian
    from granian.constants import Interfaces

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "bellwether.settings.base")
    Granian(
        target="bellwether.asgi:application",
        address=host,
        port=port,
        interface=Interfaces.ASGI,
        workers=max(1, workers),
        backlog=2048,
        backpressure=LIVE_STREAMS_PER_WORKER,
        workers_kill_timeout=LIVE_STOP_S,
        log_access=False,
    ).serve()


def start_live_server(*, host: str, port: int, workers: int) -> subprocess.Popen:
    """Start ``serve_live`` in a child process (a fresh interpreter, nothing inherited but the environment)."""
    code = (
        "import sys; from bellwether.server import serve_live; "
        "serve_live(host=sys.argv[1], port=int(sys.argv[2]), workers=int(sys.argv[3]))"
    )
    return subprocess.Popen([sys.executable, "-c", code, host, str(port), str(workers)])


def stop_child(child: subprocess.Popen) -> None:
    """Ask ``child`` to stop (SIGTERM), and kill it if it has not within CHILD_STOP_S seconds."""
    if child.poll() is None:
        child.terminate()
    try:
        child.wait(CHILD_STOP_S)
    except subprocess.TimeoutExpired:
        child.kill()
        child.wait()


def _report_early_exit(child: subprocess.Popen, stopping: threading.Event) -> None:
    code = child.wait()
    if not stopping.is_set():
        log.error("the live server stopped (exit code %s); pages are still served, without live updates", code)
