"""Start and supervise the web servers (docs/decisions/0001, 0006 and 0007, docs/live.md).

Pages and the API run on granian's WSGI interface, the fastest measured here;
the live streams (Server-Sent Events) run on granian's ASGI interface on a
port of their own. `serve` runs neither in its own process: it starts each
server, and any companion process such as the demo's simulated traders, as a
child in a session of its own, starts again a child that dies, and stops
them all when it receives SIGINT (Ctrl-C) or SIGTERM.

Two layers keep the site up: granian starts again a worker process that
dies (``respawn_failed_workers``), and the supervisor here starts again a
whole server whose main process dies, which granian also does on purpose
when a worker keeps crashing.

Each server speaks HTTP/1.1 only and closes a connection that has not sent a
complete request header within ``header_timeout_s``, idle keep-alive
connections included; each worker holds up to ``connections`` open
connections. Decision 0007 has the measurements behind these choices.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import select
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

log = logging.getLogger(__name__)

# Open connections each pages worker holds. granian counts idle connections
# against this limit too, so it must sit far above the worker's threads, or a
# few silent sockets take the site down (decision 0007).
PAGE_CONNECTIONS_PER_WORKER = 4096
# An open stream costs a worker a few kilobytes, not a thread: let each take many.
LIVE_STREAMS_PER_WORKER = 10_000
# Seconds a client has to send a complete request header; also how long an
# idle keep-alive connection stays open between requests.
HEADER_TIMEOUT_S = 5
# Seconds a stopping worker may take to finish its requests (pages) or close
# its streams (live) before granian kills it.
WORKER_STOP_S = 2
# Seconds a child (a server's main process, the traders) may take to stop
# after SIGTERM before its whole session is killed. Together with the above
# this keeps a full stop under five seconds.
CHILD_STOP_S = 3.5
# A child that ran at least this long before dying is started again at once;
# one that keeps dying sooner waits longer each time, up to the last delay.
CHILD_STABLE_S = 10.0
RESTART_DELAYS_S = (0.0, 1.0, 2.0, 5.0, 10.0, 30.0)
# File descriptors a worker keeps for itself beside its connections.
SPARE_FILES = 256
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
PR_SET_PDEATHSIG = 1


@dataclass
class Companion:
    """A process to run and supervise beside the servers: ``argv`` under a ``name`` for the log."""

    name: str
    argv: list[str]


@dataclass
class _Child:
    name: str
    argv: list[str]
    process: subprocess.Popen | None = None
    started_at: float = 0.0
    quick_deaths: int = 0
    start_at: float = 0.0
    env: dict[str, str] | None = field(default=None, repr=False)

    def start(self) -> None:
        # A session of its own: Ctrl-C in a terminal reaches the supervisor
        # only, which stops the children in order, and the session is what
        # gets killed when a child leaves processes behind.
        self.process = subprocess.Popen(_launcher(self.argv), env=self.env, start_new_session=True)
        self.started_at = time.monotonic()

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None


class ServeError(Exception):
    """The servers cannot start (for example, a port is taken)."""


def serve(
    *,
    host: str,
    port: int,
    workers: int,
    threads: int = 8,
    live_port: int | None = None,
    connections: int = PAGE_CONNECTIONS_PER_WORKER,
    header_timeout_s: int = HEADER_TIMEOUT_S,
    companions: Sequence[Companion] = (),
) -> None:
    """Serve pages over WSGI on ``port`` and, unless ``live_port`` is None, the live streams on it.

    Runs each server (and each of ``companions``) as a supervised child and
    returns once SIGINT or SIGTERM has stopped them all, within about
    ``CHILD_STOP_S`` seconds. Each WSGI worker runs ``threads`` Python
    threads; Django's database connections are per thread, so that also
    bounds each worker's connections.
    """
    for bound in (port, live_port):
        if bound is not None:
            _check_port_free(host, bound)
    env = dict(os.environ)
    # Worker processes import the application afresh and need the same settings.
    env.setdefault("DJANGO_SETTINGS_MODULE", "bellwether.settings.base")
    children = [
        _Child(
            name="pages server",
            argv=_python_call(
                "serve_pages", host=host, port=port, workers=workers, threads=threads,
                connections=connections, header_timeout_s=header_timeout_s,
            ),
        )
    ]
    if live_port is not None:
        # Pages point their streams at this port.
        env["LIVE_PORT"] = str(live_port)
        children.append(
            _Child(
                name="live server",
                argv=_python_call("serve_live", host=host, port=live_port, workers=workers, header_timeout_s=header_timeout_s),
            )
        )
    children.extend(_Child(name=companion.name, argv=list(companion.argv)) for companion in companions)
    for child in children:
        child.env = env
    with _Signals() as signals:
        for child in children:
            child.start()
        _supervise(children, signals)
        _stop_children(children, signals)


def serve_pages(*, host: str, port: int, workers: int, threads: int, connections: int, header_timeout_s: int) -> None:
    """Serve pages and the API (bellwether.wsgi) with granian's WSGI interface until interrupted."""
    from granian.constants import Interfaces

    _preload("bellwether.wsgi")
    backpressure = _allow_open_files(connections)
    _run_granian(
        "bellwether.wsgi:application", Interfaces.WSGI, host=host, port=port, workers=workers,
        backlog=min(backpressure, 4096), backpressure=backpressure, header_timeout_s=header_timeout_s,
        blocking_threads=max(1, threads),
    )


def serve_live(*, host: str, port: int, workers: int, header_timeout_s: int = HEADER_TIMEOUT_S) -> None:
    """Serve the live streams (bellwether.asgi) with granian's ASGI interface until interrupted.

    The header timeout covers the request header only: an open stream is a
    response in progress and is never cut by it.
    """
    from granian.constants import Interfaces

    _preload("bellwether.asgi")
    _run_granian(
        "bellwether.asgi:application", Interfaces.ASGI, host=host, port=port, workers=workers,
        backlog=2048, backpressure=_allow_open_files(LIVE_STREAMS_PER_WORKER), header_timeout_s=header_timeout_s,
    )


def _run_granian(
    target: str, interface, *, host: str, port: int, workers: int, backlog: int, backpressure: int,
    header_timeout_s: int, **extra,
) -> None:
    """Run granian with what both servers share: HTTP/1 with the header timeout, respawned workers, no access log."""
    from granian import Granian
    from granian.constants import HTTPModes
    from granian.http import HTTP1Settings

    Granian(
        target=target,
        address=host,
        port=port,
        interface=interface,
        workers=max(1, workers),
        backlog=backlog,
        backpressure=backpressure,
        # Only the HTTP/1 handler applies the header timeout from the first
        # byte: with HTTP/2 detection on, a silent socket is never timed out.
        http=HTTPModes.http1,
        http1_settings=HTTP1Settings(header_read_timeout=header_timeout_s * 1000),
        respawn_failed_workers=True,
        workers_kill_timeout=WORKER_STOP_S,
        log_access=False,
        **extra,
    ).serve()


def _preload(module: str) -> None:
    """Import the application ``module`` (and so Django) before granian forks its workers.

    Each worker then starts from a copy of this process instead of importing
    everything again: on a busy machine that halves the CPU a server needs to
    start, and a replaced worker answers sooner.
    """
    import importlib

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "bellwether.settings.base")
    importlib.import_module(module)
    from django.db import connections

    # Never hand an open database connection to forked workers.
    connections.close_all()


def _python_call(function: str, **kwargs) -> list[str]:
    """Return the command line that calls this module's ``function(**kwargs)`` in a fresh interpreter."""
    code = f"import json, sys; from bellwether.server import {function}; {function}(**json.loads(sys.argv[1]))"
    return [sys.executable, "-c", code, json.dumps(kwargs)]


def _check_port_free(host: str, port: int) -> None:
    """Raise ServeError when something already listens on ``host``:``port``."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        # Connections of a previous server in TIME_WAIT must not count as taken.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            raise ServeError(f"cannot listen on {host}:{port}: {exc.strerror}") from exc


def _allow_open_files(connections: int) -> int:
    """Raise this process's open-file limit to fit ``connections`` (as far as allowed); return the connections that fit.

    granian keeps accepting while a worker is under its backpressure; past the
    open-file limit accepting fails instead, so the limit must cover it.
    """
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = connections + SPARE_FILES
    if hard != resource.RLIM_INFINITY:
        wanted = min(wanted, hard)
    if soft != resource.RLIM_INFINITY and soft < wanted:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
            soft = wanted
    if soft == resource.RLIM_INFINITY:
        return connections
    fitting = max(1, min(connections, soft - SPARE_FILES))
    if fitting < connections:
        log.warning("open-file limit %s: each worker holds %s connections instead of %s", soft, fitting, connections)
    return fitting


# Runs first in every child: ask Linux for SIGTERM when the supervisor dies,
# even by SIGKILL (the request outlives exec), then become the child's
# command. Done here rather than in a preexec_fn, which is unsafe in a
# process with threads (a database pool's, in `bellwether demo`).
_LAUNCH = f"""\
import ctypes, json, os, sys
if sys.platform.startswith("linux"):
    try:
        ctypes.CDLL(None).prctl({PR_SET_PDEATHSIG}, {int(signal.SIGTERM)})
    except Exception:
        pass
if os.getppid() != int(sys.argv[2]):
    sys.exit(1)
argv = json.loads(sys.argv[1])
os.execvp(argv[0], argv)
"""


def _launcher(argv: list[str]) -> list[str]:
    """Return the command line that runs ``argv`` as a child that stops when this process dies."""
    return [sys.executable, "-c", _LAUNCH, json.dumps(argv), str(os.getpid())]


class _Signals:
    """Record SIGINT and SIGTERM and wake the supervisor on them and on SIGCHLD.

    The handlers only append to a list; the wake-up goes through a socket
    that Python writes the signal number to, so no lock is ever taken inside
    a handler.
    """

    def __init__(self) -> None:
        self.received: list[int] = []
        self._reader, self._writer = socket.socketpair()
        self._reader.setblocking(False)
        self._writer.setblocking(False)
        self._previous: dict[int, object] = {}
        self._previous_fd = -1

    def __enter__(self) -> _Signals:
        self._previous_fd = signal.set_wakeup_fd(self._writer.fileno(), warn_on_full_buffer=False)
        for signum in STOP_SIGNALS:
            self._previous[signum] = signal.signal(signum, self._record)
        # A handler (even one that does nothing) makes a child's death wake the loop.
        self._previous[signal.SIGCHLD] = signal.signal(signal.SIGCHLD, lambda *_: None)
        return self

    def __exit__(self, *exc_info) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        signal.set_wakeup_fd(self._previous_fd)
        self._reader.close()
        self._writer.close()

    def _record(self, signum, frame) -> None:
        self.received.append(signum)

    def wait(self, timeout_s: float) -> None:
        """Return after ``timeout_s`` seconds or as soon as a signal arrives."""
        select.select([self._reader], [], [], max(0.0, timeout_s))
        with contextlib.suppress(BlockingIOError):
            while self._reader.recv(512):
                pass


def _supervise(children: list[_Child], signals: _Signals) -> None:
    """Start again each child that stops, until a stop signal arrives."""
    while not signals.received:
        now = time.monotonic()
        for child in children:
            if child.process is not None and child.process.poll() is not None:
                _child_died(child, now)
            if child.process is None and now >= child.start_at:
                log.warning("starting the %s again", child.name)
                child.start()
        pending = [child.start_at - now for child in children if child.process is None]
        signals.wait(min([1.0, *pending]))


def _child_died(child: _Child, now: float) -> None:
    code = child.process.returncode
    # The server's own workers may outlive a killed main process: they hold the port.
    _kill_session(child.process)
    if now - child.started_at >= CHILD_STABLE_S:
        child.quick_deaths = 0
    delay = RESTART_DELAYS_S[min(child.quick_deaths, len(RESTART_DELAYS_S) - 1)]
    child.quick_deaths += 1
    child.process = None
    child.start_at = now + delay
    log.error("the %s stopped unexpectedly (exit code %s); starting it again in %.0f s", child.name, code, delay)


def _stop_children(children: list[_Child], signals: _Signals) -> None:
    """Send SIGTERM to every child, wait up to CHILD_STOP_S (cut short by a second signal), then kill what is left."""
    first = len(signals.received)
    for child in children:
        if child.running():
            with contextlib.suppress(ProcessLookupError):
                child.process.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + CHILD_STOP_S
    while any(child.running() for child in children) and len(signals.received) <= first:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            break
        signals.wait(min(remaining, 0.1))
    for child in children:
        if child.process is None:
            continue
        if child.running():
            log.warning("the %s did not stop within %.1f s; killing it", child.name, CHILD_STOP_S)
        _kill_session(child.process)
        child.process.wait()


def _kill_session(process: subprocess.Popen) -> None:
    """SIGKILL every process left in ``process``'s session (its process group, led by it)."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)
