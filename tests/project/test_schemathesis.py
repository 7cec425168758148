"""The API contract checked by schemathesis, against a real `bellwether serve` on the suite's database.

The server is the production one (granian over WSGI, every middleware), so
what schemathesis checks is what clients get: declared status codes, the
error body, content types, headers, response schemas, refusals of
malformed input and no 5xx. The database holds an open market, a market to
resolve and an article; the token belongs to an editor and resolver, so
every route is reachable. The ledger must still balance afterwards.

SCHEMATHESIS_EXAMPLES (default 50 per operation) and SCHEMATHESIS_SEED
(default fixed, so a failure reproduces) tune the run.
"""

from __future__ import annotations

import datetime as dt
import os
import re
import subprocess
import sys
import time
from io import StringIO
from pathlib import Path

import pytest
from django.core.management import call_command
from django.db import connection
from django.utils import timezone

from bellwether.accounts.services import create_token, create_user
from bellwether.markets import services
from bellwether.markets.models import Trade
from tests.conftest import IN_CI
from tests.news.factories import make_article
from tests.servers import database_url, free_port, health_ok, stop, wait_until_up

ROOT = Path(__file__).resolve().parents[2]
CONFIG = Path(__file__).with_name("schemathesis.toml")
SCHEMATHESIS = Path(sys.executable).with_name("schemathesis")
EXAMPLES = int(os.environ.get("SCHEMATHESIS_EXAMPLES", "50"))
SEED = os.environ.get("SCHEMATHESIS_SEED", "20261203")
RUN_TIMEOUT_S = 300


def _seed() -> dict[str, str]:
    """Create what the run reaches: an editor and resolver with a token, two open markets and an article."""
    editor = create_user(username="contract-editor", roles=("editor", "resolver"))
    _, token = create_token(user=editor, name="schemathesis")
    close_at = timezone.now() + dt.timedelta(days=30)
    trading = services.create_market(question="Will the contract hold?", liquidity_b_micro=100_000_000, close_at=close_at, created_by=editor)
    resolving = services.create_market(question="Will this one be resolved?", liquidity_b_micro=100_000_000, close_at=close_at, created_by=editor)
    make_article(headline="Contract tests run against the real server")
    return {"token": token, "ST_MARKET_SLUG": trading.slug, "ST_RESOLVE_SLUG": resolving.slug}


@pytest.mark.django_db(transaction=True)
def test_schemathesis_finds_no_failure_against_the_real_server(home, tmp_path):
    """Run `schemathesis run --checks all` against `bellwether serve`: exit code 0, no failure, and the audit passes afterwards."""
    if not SCHEMATHESIS.exists():
        message = f"schemathesis is not installed at {SCHEMATHESIS} (it is pinned in pyproject.toml)"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    seeded = _seed()
    port = free_port()
    env = {
        **os.environ,
        "DATABASE_URL": database_url(),
        "DJANGO_SETTINGS_MODULE": "bellwether.settings.base",
        # The run sends thousands of requests in a couple of minutes; the limits have tests of their own.
        "API_IP_RATE_LIMIT_PER_MIN": "0", "API_RATE_LIMIT_PER_MIN": "0", "API_TRADE_RATE_LIMIT_PER_MIN": "0",
    }
    log = tmp_path / "serve.log"
    with log.open("w") as out:
        server = subprocess.Popen(
            [sys.executable, "-m", "bellwether.cli", "serve", "--port", str(port), "--live-port", "0", "--workers", "1"],
            cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
        )
    try:
        wait_until_up(server, log=log, checks={"/health/ 200": lambda: health_ok(port)}, timeout_s=60)
        started = time.monotonic()
        run = subprocess.run(
            [
                str(SCHEMATHESIS), "--config-file", str(CONFIG), "--no-color", "run", f"http://127.0.0.1:{port}/api/v1/openapi.json",
                "--checks", "all", "--max-examples", str(EXAMPLES), "--seed", SEED, "--workers", "1",
                "--request-timeout", "20", "--header", f"Authorization: Bearer {seeded['token']}",
            ],
            cwd=tmp_path, env={**os.environ, **{k: v for k, v in seeded.items() if k.startswith("ST_")}},
            capture_output=True, text=True, timeout=RUN_TIMEOUT_S,
        )
        elapsed = time.monotonic() - started
    finally:
        stop(server, timeout_s=20)
    output = run.stdout + run.stderr
    assert run.returncode == 0, output
    counts = re.search(r"(\d+) generated, (\d+) passed", output)
    assert counts is not None, output
    generated, passed = map(int, counts.groups())
    failures = re.search(r"(\d+) failures?", output.rsplit("SUMMARY", 1)[-1])
    assert failures is None, output
    assert generated == passed and generated >= 300, output
    trades = Trade.objects.filter(market__slug=seeded["ST_MARKET_SLUG"]).count()
    print(f"\nschemathesis on {connection.vendor}: {generated} cases, 0 failures, {trades} trades filled, {elapsed:.0f} s (-n {EXAMPLES}, seed {SEED})")
    # The schema's examples trade for real, so the audit below checks a ledger that moved.
    assert trades >= 1
    audit = StringIO()
    call_command("audit", stdout=audit, stderr=StringIO())
    assert "audit passed" in audit.getvalue()
