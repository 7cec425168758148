"""Where pages find the streams (LIVE_BASE), the CSP that lets them connect, and `bellwether serve`."""

from __future__ import annotations

import http.client
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bellwether.accounts.services import create_token, create_user
from bellwether.security import POLICY
from tests.live.conftest import new_market
from tests.servers import database_url, free_port_pair, status_of, stop, wait_until_up

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("live_url", "live_port", "host", "expected"),
    [
        (None, 0, "127.0.0.1:8000", ""),
        (None, 8001, "127.0.0.1:8000", "http://127.0.0.1:8001"),
        (None, 8001, "localhost", "http://localhost:8001"),
        ("", 8001, "127.0.0.1:8000", ""),
        ("https://live.example.org/", 0, "127.0.0.1:8000", "https://live.example.org"),
    ],
)
def test_pages_are_told_where_the_streams_are_and_may_connect_there(client, home, settings, live_url, live_port, host, expected):
    """LIVE_URL wins when set; else the live port on the page's own host name; the CSP's connect-src allows that origin only."""
    settings.LIVE_URL, settings.LIVE_PORT = live_url, live_port
    response = client.get("/", HTTP_HOST=host)
    assert response.context["LIVE_BASE"] == expected
    if expected:
        assert response["Content-Security-Policy"] == POLICY.replace("connect-src 'self'", f"connect-src 'self' {expected}")
    else:
        assert response["Content-Security-Policy"] == POLICY


def test_serve_tells_the_workers_the_live_port_through_the_environment():
    """Settings read LIVE_PORT, LIVE_URL (empty counts as set), LIVE_POLL_S and LIVE_HEARTBEAT_S from the environment."""
    code = "from bellwether.settings import base as s; print(s.LIVE_PORT, repr(s.LIVE_URL), s.LIVE_POLL_S, s.LIVE_HEARTBEAT_S, s.DEMO_TRADERS)"
    env = {**os.environ, "LIVE_PORT": "8123", "LIVE_URL": "", "LIVE_POLL_S": "0.5", "LIVE_HEARTBEAT_S": "3"}
    env.pop("DEMO_TRADERS", None)
    output = subprocess.run([sys.executable, "-c", code], env=env, cwd=ROOT, capture_output=True, text=True, check=True).stdout
    assert output.split() == ["8123", "''", "0.5", "3.0", "3"]


@pytest.mark.django_db(transaction=True)
def test_serve_runs_pages_and_streams_and_a_trade_through_the_api_reaches_a_stream(tmp_path):
    """`bellwether serve --workers 2`: a trade posted to the WSGI API reaches an SSE client on the live port within 2 s; SIGTERM stops both servers."""
    market = new_market()
    ana = create_user(username="ana")
    _, token = create_token(user=ana)
    port = free_port_pair()
    env = {**os.environ, "DATABASE_URL": database_url(), "DJANGO_SETTINGS_MODULE": "bellwether.settings.base", "LIVE_POLL_S": "0.05"}
    env.pop("LIVE_URL", None)
    log_path = tmp_path / "serve.log"
    log = log_path.open("w")
    server = subprocess.Popen(
        [sys.executable, "-m", "bellwether.cli", "serve", "--port", str(port), "--workers", "2"],
        cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
    )
    try:
        checks = {
            "/health/": lambda: status_of(port, "/health/") is not None,
            "the live port": lambda: status_of(port + 1, "/live/markets/no-such-market/") is not None,
        }
        wait_until_up(server, log=log_path, checks=checks, timeout_s=60)
        stream = http.client.HTTPConnection("127.0.0.1", port + 1, timeout=5)
        stream.request("GET", f"/live/markets/{market.slug}/")
        answer = stream.getresponse()
        assert (answer.status, answer.getheader("Content-Type")) == (200, "text/event-stream")
        assert answer.readline() == b"retry: 2000\n"
        answer.readline()
        page = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        page.request("GET", "/")
        csp = page.getresponse().getheader("Content-Security-Policy")
        assert f"connect-src 'self' http://127.0.0.1:{port + 1};" in csp
        api = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        body = json.dumps({"outcome": "yes", "side": "buy", "amount": "5"})
        started = time.monotonic()
        api.request("POST", f"/api/v1/markets/{market.slug}/trades", body, {"Authorization": f"Bearer {token}", "Content-Type": "application/json"})
        trade = api.getresponse()
        assert trade.status in (200, 201), trade.read()
        trade_id = json.loads(trade.read())["trade_id"]
        lines = [answer.readline() for _ in range(4)]
        elapsed = time.monotonic() - started
        assert lines[0] == f"id: {trade_id}\n".encode() and lines[1] == b"event: trade\n"
        event = json.loads(lines[2].removeprefix(b"data: "))
        assert (event["trade_id"], event["market"], event["user"], event["amount"]) == (trade_id, market.slug, "ana", "5.000000")
        assert elapsed < 2.0
        stream.close()
    finally:
        stopped = stop(server, timeout_s=20)
        log.close()
        if not stopped:
            pytest.fail("bellwether serve did not stop within 20 s of SIGTERM")
    assert server.returncode == 0, log_path.read_text()
    time.sleep(0.5)
    for p in (port, port + 1):
        with socket.socket() as s:
            assert s.connect_ex(("127.0.0.1", p)) != 0, f"port {p} still answers after serve stopped"
