"""`bellwether serve` and `bellwether demo` against hostile clients, crashed processes and Ctrl-C.

Real server processes on free ports, against a database of their own that
`bellwether demo --no-serve` loads once for the module (SQLite in a
temporary folder, or a fresh PostgreSQL database on the test server).
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from django.conf import settings

from bellwether.server import HEADER_TIMEOUT_S
from tests.servers import HOST, database_url, free_port_pair, health_ok, log_tail, status_of, wait_until_up
from tests.servers import stop as stop_process

ROOT = Path(__file__).resolve().parents[2]
BELLWETHER = str(Path(sys.executable).with_name("bellwether"))
LIVE_PATH = "/live/markets/no-such-market/"
START_TIMEOUT_S = 120.0
ANSWER_WITHIN_S = 1.0
RECOVER_WITHIN_S = 5.0
STOP_WITHIN_S = 5.0
# A server whose main process died starts from scratch: a fresh interpreter
# imports Django before its workers can answer.
RESTART_WITHIN_S = 60.0


# ---------------------------------------------------------------------------
# Processes


def _parent_of(pid: int) -> int | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(stat.rsplit(")", 1)[1].split()[1])


def _alive(pid: int) -> bool:
    """Return whether ``pid`` runs (a zombie waiting to be reaped has stopped)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state not in ("Z", "X")


def children(pid: int) -> list[int]:
    """Return the running children of ``pid``."""
    return sorted(int(e) for e in os.listdir("/proc") if e.isdigit() and _parent_of(int(e)) == pid and _alive(int(e)))


def descendants(pid: int) -> list[int]:
    found, stack = [], [pid]
    while stack:
        for child in children(stack.pop()):
            found.append(child)
            stack.append(child)
    return found


def cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


def workers(main: int) -> list[int]:
    """Return the running worker processes of the granian server whose main process is ``main``."""
    return children(main)


def server_main(serve_pid: int, marker: bytes) -> int | None:
    """Return the PID of the child of ``serve_pid`` whose command line holds ``marker`` (b"serve_pages", ...)."""
    for child in children(serve_pid):
        if marker in cmdline(child):
            return child
    return None


def wait_until(condition, timeout_s: float, message: str):
    """Poll ``condition`` until it returns something true; fail with ``message`` after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() > deadline:
            pytest.fail(f"{message} (waited {timeout_s:.0f} s)")
        time.sleep(0.05)


# ---------------------------------------------------------------------------
# HTTP


def timed_health(port: int) -> tuple[int | None, float]:
    started = time.monotonic()
    status = status_of(port, "/health/", timeout_s=ANSWER_WITHIN_S + 2)
    return status, time.monotonic() - started


def closed_by_server(sock: socket.socket) -> bool:
    """Return whether the server has closed ``sock`` (end of file or reset), without waiting."""
    readable, _, _ = select.select([sock], [], [], 0)
    if not readable:
        return False
    try:
        return sock.recv(4096) == b""
    except OSError:
        return True


# ---------------------------------------------------------------------------
# Database and servers


@pytest.fixture(scope="module")
def site_env(tmp_path_factory) -> Iterator[dict[str, str]]:
    """Return the environment of a server on a database of its own, loaded by `bellwether demo --no-serve`."""
    folder = tmp_path_factory.mktemp("serving")
    db = settings.DATABASES["default"]
    drop = None
    if db["ENGINE"] == "django.db.backends.postgresql":
        import psycopg
        from psycopg import sql

        name = f"bellwether_serving_{os.getpid()}"
        admin = database_url(name="postgres")
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))

        def drop():
            with psycopg.connect(admin, autocommit=True) as conn:
                conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))

        url = database_url(name=name)
    else:
        url = f"sqlite:///{folder / 'serving.sqlite3'}"
    env = {k: v for k, v in os.environ.items() if k not in ("DJANGO_ALLOW_ASYNC_UNSAFE", "DEBUG", "LIVE_URL", "LOG_LEVEL")}
    env.update(
        DJANGO_SETTINGS_MODULE="bellwether.settings.base",
        DATABASE_URL=url,
        BELLWETHER_VAR_DIR=str(folder),
        DEMO_TRADERS="3",
    )
    try:
        loaded = subprocess.run(
            [BELLWETHER, "demo", "--no-serve"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600
        )
        assert loaded.returncode == 0, loaded.stdout + loaded.stderr
        yield env
    finally:
        if drop is not None:
            drop()


@dataclass
class Server:
    process: subprocess.Popen
    port: int
    log: Path

    @property
    def live_port(self) -> int:
        return self.port + 1

    def log_tail(self) -> str:
        return log_tail(self.log, chars=4000)


def start(args: list[str], env: dict[str, str], log: Path) -> Server:
    """Start `bellwether ARGS --port P` in a session of its own; return once /health/ and the live port answer."""
    port = free_port_pair()
    with open(log, "wb") as out:
        process = subprocess.Popen(
            [BELLWETHER, *args, "--port", str(port)], cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    server = Server(process=process, port=port, log=log)
    checks = {
        "/health/ 200": lambda: health_ok(port),
        "the live port 404": lambda: status_of(server.live_port, LIVE_PATH) == 404,
    }
    try:
        wait_until_up(process, log=log, checks=checks, timeout_s=START_TIMEOUT_S, name=f"bellwether {args[0]}", tail_chars=4000)
    except BaseException:
        stop(server)
        raise
    return server


def stop(server: Server) -> None:
    """Stop what a test left running: SIGTERM to the server, then SIGKILL to whatever of its tree is left."""
    tree = descendants(server.process.pid)
    stop_process(server.process, timeout_s=15)
    for pid in tree:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def warm_up(server: Server) -> None:
    """Let every worker serve /health/ once, so the first answers' one-off costs stay out of the timings."""
    for _ in range(20):
        assert status_of(server.port, "/health/", timeout_s=10) == 200


@pytest.fixture(scope="module")
def server(site_env, tmp_path_factory) -> Iterator[Server]:
    """`bellwether serve --workers 2`, shared by the module's tests; each leaves it healthy."""
    running = start(["serve", "--workers", "2"], site_env, tmp_path_factory.mktemp("serve") / "serve.log")
    warm_up(running)
    yield running
    stop(running)


@pytest.fixture
def healthy(server) -> Server:
    """The shared server, checked: both servers answer and each runs 2 workers."""
    for marker in (b"serve_pages", b"serve_live"):
        wait_until(lambda m=marker: (main := server_main(server.process.pid, m)) and len(workers(main)) == 2,
                   RESTART_WITHIN_S, f"{marker.decode()} is not running with 2 workers")
    assert status_of(server.port, "/health/", timeout_s=10) == 200
    return server


# ---------------------------------------------------------------------------
# Slow and silent clients


def test_two_hundred_idle_connections_leave_health_answering_and_are_closed(healthy):
    """With 100 silent sockets and 100 finished keep-alive ones open, /health/ answers 200 within 1 s, every time; the server closes all 200 after the header timeout."""
    silent = [socket.create_connection((HOST, healthy.port)) for _ in range(100)]
    kept = []
    for _ in range(100):
        sock = socket.create_connection((HOST, healthy.port), timeout=10)
        sock.sendall(f"GET /health/ HTTP/1.1\r\nHost: {HOST}\r\n\r\n".encode())
        assert sock.recv(65536).startswith(b"HTTP/1.1 200 OK\r\n")
        kept.append(sock)
    opened = time.monotonic()
    idle = silent + kept
    try:
        answers = [timed_health(healthy.port) for _ in range(20)]
        assert [status for status, _ in answers] == [200] * 20, healthy.log_tail()
        assert max(seconds for _, seconds in answers) < ANSWER_WITHIN_S, answers
        # A worker starts a connection's timer when it accepts it: on a loaded
        # machine some may be accepted seconds late, so allow for that beyond the timeout.
        wait_until(lambda: all(closed_by_server(s) for s in idle), HEADER_TIMEOUT_S + 10, "idle connections still open")
        assert time.monotonic() - opened >= HEADER_TIMEOUT_S - 1
    finally:
        for sock in idle:
            sock.close()


def test_fifty_clients_sending_a_header_byte_a_second_leave_health_answering_and_are_cut_off(healthy):
    """50 clients trickling a request header at one byte a second: /health/ answers 200 within 1 s throughout, and the server cuts each client off after the header timeout."""
    header = f"GET /health/ HTTP/1.1\r\nHost: {HOST}\r\nUser-Agent: slow\r\nAccept: */*\r\n\r\n".encode()
    assert len(header) > HEADER_TIMEOUT_S + 3  # still sending when the timeout falls
    slow = [socket.create_connection((HOST, healthy.port)) for _ in range(50)]
    cut_after: dict[int, float] = {}
    done = threading.Event()
    started = time.monotonic()

    def trickle():
        for index in range(len(header)):
            for number, sock in enumerate(slow):
                if number in cut_after:
                    continue
                if closed_by_server(sock):
                    cut_after[number] = time.monotonic() - started
                    continue
                try:
                    sock.sendall(header[index : index + 1])
                except OSError:
                    cut_after[number] = time.monotonic() - started
            if len(cut_after) == len(slow) or done.wait(1.0):
                return

    sender = threading.Thread(target=trickle)
    sender.start()
    try:
        answers = []
        while len(cut_after) < len(slow) and time.monotonic() - started < HEADER_TIMEOUT_S + 4:
            answers.append(timed_health(healthy.port))
        assert answers and {status for status, _ in answers} == {200}, healthy.log_tail()
        assert max(seconds for _, seconds in answers) < ANSWER_WITHIN_S, max(answers, key=lambda a: a[1])
        assert len(cut_after) == 50, f"{50 - len(cut_after)} slow clients still connected"
        assert HEADER_TIMEOUT_S - 1 <= min(cut_after.values()) and max(cut_after.values()) <= HEADER_TIMEOUT_S + 3
    finally:
        done.set()
        sender.join()
        for sock in slow:
            sock.close()


# ---------------------------------------------------------------------------
# Crashed processes


def _site_answers(server: Server) -> bool:
    return health_ok(server.port, timeout_s=1) and status_of(server.live_port, LIVE_PATH, timeout_s=1) == 404


@pytest.mark.parametrize("marker", [b"serve_pages", b"serve_live"], ids=["pages", "live"])
def test_a_killed_worker_is_replaced_and_the_site_answers_within_5_s(healthy, marker):
    """kill -9 of one worker of either server: within 5 s its server runs 2 workers again, one of them new, and /health/ and the live port answer."""
    main = server_main(healthy.process.pid, marker)
    victim = workers(main)[0]
    os.kill(victim, signal.SIGKILL)
    killed_at = time.monotonic()

    def recovered():
        now = workers(main)
        return len(now) == 2 and victim not in now and _site_answers(healthy)

    wait_until(recovered, RECOVER_WITHIN_S, f"not recovered from the kill of {marker.decode()} worker {victim}:\n{healthy.log_tail()}")
    assert time.monotonic() - killed_at < RECOVER_WITHIN_S
    assert server_main(healthy.process.pid, marker) == main


@pytest.mark.parametrize("marker", [b"serve_pages", b"serve_live"], ids=["pages", "live"])
def test_a_killed_server_is_started_again(healthy, marker):
    """kill -9 of a server's main process: `bellwether serve` starts that server again, with 2 workers, and the site answers."""
    main = server_main(healthy.process.pid, marker)
    orphans = workers(main)
    os.kill(main, signal.SIGKILL)

    def restarted():
        new = server_main(healthy.process.pid, marker)
        return new and new != main and len(workers(new)) == 2 and _site_answers(healthy)

    wait_until(restarted, RESTART_WITHIN_S, f"{marker.decode()} not started again:\n{healthy.log_tail()}")
    # The old workers held the port: they are gone, not serving beside the new ones.
    assert [pid for pid in orphans if _alive(pid)] == []
    assert healthy.process.poll() is None


# ---------------------------------------------------------------------------
# Stopping


@pytest.mark.parametrize(
    ("signum", "to_group"),
    [(signal.SIGINT, True), (signal.SIGINT, False), (signal.SIGTERM, False)],
    ids=["ctrl-c-to-the-terminal-group", "sigint-to-the-main-process", "sigterm-to-the-main-process"],
)
def test_a_signal_stops_the_whole_demo_within_5_s_with_exit_code_0(site_env, tmp_path, signum, to_group):
    """`bellwether demo` (pages, live server, simulated traders): SIGINT or SIGTERM stops every process of its tree within 5 s, and it exits 0."""
    demo = start(["demo"], site_env, tmp_path / "demo.log")
    try:
        traders = wait_until(
            lambda: [pid for pid in children(demo.process.pid) if b"simulate" in cmdline(pid)],
            RESTART_WITHIN_S, "the simulated traders did not start",
        )
        tree = descendants(demo.process.pid)
        assert len(tree) >= 7, tree  # 2 servers with 2 workers each, and the traders
        assert set(traders) <= set(tree)
        if to_group:
            os.killpg(demo.process.pid, signum)  # what Ctrl-C in a terminal does
        else:
            os.kill(demo.process.pid, signum)
        signalled = time.monotonic()
        try:
            code = demo.process.wait(STOP_WITHIN_S)
        except subprocess.TimeoutExpired:
            pytest.fail(f"still running {STOP_WITHIN_S:.0f} s after {signal.Signals(signum).name}:\n{demo.log_tail()}")
        assert code == 0, demo.log_tail()
        assert [pid for pid in tree if _alive(pid)] == [], f"left running after {time.monotonic() - signalled:.1f} s"
        for port in (demo.port, demo.live_port):
            with socket.socket() as probe:
                assert probe.connect_ex((HOST, port)) != 0, f"port {port} still answers"
    finally:
        stop(demo)
