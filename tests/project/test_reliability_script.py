"""benchmarks/reliability.py runs against a real server and reports every figure in its fixed form.

The short run here is the CI form of the hostile checks (issue 10): one
kill -9 under load with its restart, two double-spend rounds and the whole
hostile list, on the test database of the pass (SQLite or PostgreSQL). Any
5xx, lost or doubled trade, wrong double-spend outcome or failed audit makes
the script exit 1 and this test fail with the script's report.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.servers import database_url

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "benchmarks" / "reliability.py"
# The report's figures, in order: docs/reliability.md pastes the table as it is.
FIGURES = [
    "kill -9 under load: rounds",
    "kill -9 under load: trades acknowledged (201) / found after the restart",
    "kill -9 under load: requests without an answer, retried twice with their Idempotency-Key",
    "kill -9 under load: acknowledged trades sent again with their Idempotency-Key",
    "kill -9 under load: new Trade rows / keys answered 201",
    "kill -9 under load: kill to /health/ 200 on a fresh server",
    "kill -9 under load: bellwether audit after each restart",
    "double spend: racing buys against a balance of one buy and a half",
    "double spend: balance after each round",
    "hostile inputs: requests tried",
    "hostile inputs: answered 4xx",
    "hostile inputs: answered 5xx or not at all",
    "hostile inputs: answered as expected (status, JSON error body, checks)",
    "bellwether audit at the end",
]


def test_help_names_every_option():
    """--help exits 0 and lists the rounds, clients and duration options."""
    result = subprocess.run([sys.executable, str(SCRIPT), "--help"], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    for option in ("--database", "--kill-rounds", "--clients", "--duration", "--double-spend-rounds", "--racers", "--only"):
        assert option in result.stdout


def test_zero_rounds_everywhere_is_refused():
    """A run with nothing to do is an error, not an empty report."""
    result = subprocess.run(
        [sys.executable, str(SCRIPT), "--only", "kill", "--kill-rounds", "0"], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 2
    assert "nothing to run: every part chosen has 0 rounds" in result.stderr


@pytest.mark.django_db(transaction=True)
def test_short_run_meets_every_figure(tmp_path):
    """One kill -9 round, two double-spend rounds and the hostile list: every figure met, the table in its fixed form."""
    argv = [
        sys.executable, str(SCRIPT), "--database-url", database_url(), "--var-dir", str(tmp_path),
        "--kill-rounds", "1", "--clients", "4", "--duration", "2", "--replay-sample", "5",
        "--double-spend-rounds", "2", "--racers", "10",
    ]
    result = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=600)
    report = result.stdout[-8000:] + result.stderr[-4000:]
    assert result.returncode == 0, report
    rows = [line.split(" | ") for line in result.stdout.splitlines() if line.startswith("| ") and not line.startswith("| figure")]
    assert [row[0].removeprefix("| ") for row in rows] == FIGURES, report
    assert {row[2].removesuffix(" |") for row in rows} == {"met", "—"}, report
    assert "| hostile inputs: answered 5xx or not at all | 0 + 0 | met |" in result.stdout
