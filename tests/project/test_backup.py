"""`bellwether backup` while trades run, `bellwether restore` into a fresh database, and the audit on it."""

from __future__ import annotations

import datetime as dt
import io
import os
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command
from django.db import connection
from django.utils import timezone

from bellwether.accounts.services import create_user
from bellwether.markets.models import Trade
from bellwether.markets.services import MICRO, TradeRequest, create_market, place_trade
from tests import servers

ROOT = Path(__file__).resolve().parents[2]
WAIT_S = 30.0


def bellwether(*argv: str, database_url: str, var_dir: Path) -> subprocess.CompletedProcess:
    """Run the `bellwether` command in a process of its own against ``database_url``."""
    env = {name: value for name, value in os.environ.items() if not name.startswith(("DJANGO_", "DATABASE_"))}
    env.update(DJANGO_SETTINGS_MODULE="bellwether.settings.base", DATABASE_URL=database_url, BELLWETHER_VAR_DIR=str(var_dir))
    return subprocess.run(
        [sys.executable, "-m", "bellwether.cli", *argv], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300
    )


class Trader(threading.Thread):
    """Buy one credit after another on two markets until stopped; keep the ids of the acknowledged trades."""

    def __init__(self, user, markets) -> None:
        super().__init__()
        self.user, self.markets = user, markets
        self.acknowledged: list[int] = []
        self.stop = threading.Event()
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            n = 0
            while not self.stop.is_set():
                market = self.markets[n % 2]
                request = TradeRequest(outcome="yes" if n % 3 else "no", side="buy", amount_micro=MICRO)
                self.acknowledged.append(place_trade(user=self.user, market_slug=market.slug, request=request)["trade_id"])
                n += 1
        except BaseException as exc:  # reported by the test
            self.error = exc
        finally:
            connection.close()

    def wait_for(self, count: int) -> None:
        """Wait a bounded while until ``count`` trades are acknowledged."""
        deadline = time.monotonic() + WAIT_S
        while len(self.acknowledged) < count:
            assert self.error is None, self.error
            assert time.monotonic() < deadline, f"only {len(self.acknowledged)} trades in {WAIT_S:.0f} s"
            time.sleep(0.01)


def restored_trade_ids(database_url: str) -> set[int]:
    if database_url.startswith("sqlite"):
        with sqlite3.connect(database_url.removeprefix("sqlite:///")) as conn:
            return {row[0] for row in conn.execute(f"SELECT id FROM {Trade._meta.db_table}")}
    import psycopg

    with psycopg.connect(database_url.replace("postgres://", "postgresql://", 1)) as conn:
        return {row[0] for row in conn.execute(f"SELECT id FROM {Trade._meta.db_table}")}


def admin(sql: str) -> None:
    """Run ``sql`` on the PostgreSQL server's maintenance database, outside any transaction."""
    import psycopg

    with psycopg.connect(servers.database_url(name="postgres").replace("postgres://", "postgresql://", 1), autocommit=True) as conn:
        conn.execute(sql)


@pytest.mark.django_db(transaction=True)
def test_a_backup_taken_while_trading_restores_into_a_fresh_database_that_passes_the_audit(tmp_path):
    """Back up while a thread keeps trading; restore into a fresh database; the audit passes there.

    The restored database holds every trade acknowledged before the backup
    began, and no trade that was never acknowledged. On PostgreSQL the
    fresh database is made for the test and dropped afterwards, and a
    restore is first refused while another session is connected to it.
    """
    user = create_user(username="ana")
    close_at = timezone.now() + dt.timedelta(days=3)
    markets = [
        create_market(question=question, liquidity_b_micro=100 * MICRO, close_at=close_at)
        for question in ("Will it rain?", "Will it snow?")
    ]
    trader = Trader(user, markets)
    trader.start()
    try:
        trader.wait_for(20)
        before = list(trader.acknowledged)
        out = io.StringIO()
        call_command("backup", str(tmp_path), stdout=out)
        trader.wait_for(len(trader.acknowledged) + 5)  # still trading after the backup
    finally:
        trader.stop.set()
        trader.join()
    assert trader.error is None, trader.error
    summary = out.getvalue().splitlines()[-1]
    (backup,) = tmp_path.iterdir()
    size_mib = backup.stat().st_size / 1024 / 1024
    assert summary.startswith(f"backup written: {backup} ({size_mib:.1f} MiB) in ")

    if connection.vendor == "sqlite":
        target_url = f"sqlite:///{tmp_path / 'restored' / 'fresh.sqlite3'}"
        (tmp_path / "restored").mkdir()
    else:
        fresh = f"{connection.settings_dict['NAME']}_restored"
        admin(f'DROP DATABASE IF EXISTS "{fresh}"')
        admin(f'CREATE DATABASE "{fresh}"')
        target_url = servers.database_url(name=fresh)
    try:
        if connection.vendor == "postgresql":
            import psycopg

            with psycopg.connect(target_url.replace("postgres://", "postgresql://", 1)):
                refused = bellwether("restore", str(backup), database_url=target_url, var_dir=tmp_path)
            assert refused.returncode == 1
            assert refused.stderr.strip() == (
                f"CommandError: the database {fresh} has 1 other session(s) (is the site running?); stop them first, "
                "or pass --force to restore anyway"
            )
        restored = bellwether("restore", str(backup), database_url=target_url, var_dir=tmp_path)
        assert restored.returncode == 0, restored.stderr
        assert f"restored {backup} ({size_mib:.1f} MiB) in " in restored.stdout
        audit = bellwether("audit", database_url=target_url, var_dir=tmp_path)
        assert audit.returncode == 0, audit.stdout + audit.stderr
        assert audit.stdout.splitlines()[-1] == "audit passed"
        ids = restored_trade_ids(target_url)
    finally:
        if connection.vendor == "postgresql":
            admin(f'DROP DATABASE IF EXISTS "{fresh}" WITH (FORCE)')
    assert set(before) <= ids
    assert ids <= set(trader.acknowledged)


def test_a_sqlite_restore_refuses_a_database_in_use_or_holding_data_unless_forced(tmp_path):
    """Into a fresh file it restores; into the same file while another process has it open, or once it holds data, it refuses; --force replaces it.

    Runs the command in processes of its own against SQLite files, whatever
    the database of the test pass.
    """
    backup = tmp_path / "backup.sqlite3"
    with sqlite3.connect(backup) as conn:
        conn.execute("CREATE TABLE django_migrations (id integer PRIMARY KEY, app text, name text, applied text)")
        conn.execute("INSERT INTO django_migrations (app, name, applied) VALUES ('markets', '0001_initial', '2026-12-03')")
    target = tmp_path / "site.sqlite3"
    url = f"sqlite:///{target}"

    first = bellwether("restore", str(backup), database_url=url, var_dir=tmp_path)
    assert first.returncode == 0, first.stderr
    # The site running: another process with the database open, idle.
    holder = subprocess.Popen(
        [sys.executable, "-c", f"import sqlite3, sys; c = sqlite3.connect({str(target)!r}); "
         "c.execute('SELECT count(*) FROM django_migrations').fetchall(); print('open', flush=True); sys.stdin.read()"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )
    try:
        assert holder.stdout.readline() == "open\n"
        in_use = bellwether("restore", str(backup), database_url=url, var_dir=tmp_path)
        forced = bellwether("restore", str(backup), "--force", database_url=url, var_dir=tmp_path)
    finally:
        holder.stdin.close()
        holder.wait(timeout=30)
    holding_data = bellwether("restore", str(backup), database_url=url, var_dir=tmp_path)

    assert in_use.returncode == 1
    assert in_use.stderr.strip() == (
        f"CommandError: the database {target} is in use by another process (is the site running?); stop it first, "
        "or pass --force to replace the data under it"
    )
    assert forced.returncode == 0, forced.stderr
    assert holding_data.returncode == 1
    assert holding_data.stderr.strip() == (
        f"CommandError: the database {target} already holds 1 tables; restore into a fresh file "
        "(point DATABASE_URL at a new sqlite:/// path) or pass --force to replace it"
    )
    with sqlite3.connect(target) as conn:
        assert conn.execute("SELECT app, name FROM django_migrations").fetchall() == [("markets", "0001_initial")]
        assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)


@pytest.mark.django_db(transaction=True)
def test_a_backup_never_replaces_a_file_unless_forced_and_restore_checks_its_input(tmp_path):
    """An existing PATH is kept unless --force; a missing file or one of the wrong kind is refused with what it is."""
    existing = tmp_path / "kept.bin"
    existing.write_bytes(b"an older backup")
    with pytest.raises(CommandError) as refused:
        call_command("backup", str(existing), stdout=io.StringIO())
    assert str(refused.value) == f"{existing} already exists; pick another name or a directory, or pass --force to replace it"
    assert existing.read_bytes() == b"an older backup"
    with pytest.raises(CommandError) as missing:
        call_command("restore", str(tmp_path / "nothing.sqlite3"), stdout=io.StringIO())
    assert str(missing.value) == f"no backup file at {tmp_path / 'nothing.sqlite3'}"
    with pytest.raises(CommandError) as wrong:
        call_command("restore", str(existing), stdout=io.StringIO())
    if connection.vendor == "sqlite":
        assert str(wrong.value) == f"{existing} is not a SQLite backup: file is not a database"
    else:
        assert str(wrong.value).startswith(f"{existing} is not a pg_dump custom-format backup: pg_restore: error: ")
    assert [p.name for p in tmp_path.iterdir()] == ["kept.bin"]  # no partial file left behind


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_postgresql_backup_without_pg_dump_and_restore_over_data_are_refused(tmp_path, monkeypatch):
    """Without pg_dump on PATH the backup says how to get it; a restore into a database with tables asks for a fresh one or --clean."""
    assert connection.vendor == "postgresql"  # the marker keeps this out of the SQLite pass
    name = connection.settings_dict["NAME"]
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM pg_catalog.pg_tables WHERE schemaname NOT IN ('pg_catalog', 'information_schema')")
        tables = cursor.fetchone()[0]
    out = io.StringIO()
    call_command("backup", str(tmp_path / "data.pgdump"), stdout=out)
    with pytest.raises(CommandError) as over_data:
        call_command("restore", str(tmp_path / "data.pgdump"), stdout=io.StringIO())
    assert str(over_data.value) == (
        f"the database {name} already holds {tables} tables; restore into a fresh one (createdb NEWNAME, then "
        "point DATABASE_URL at it) or pass --clean to drop the backup's objects first"
    )
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(CommandError) as no_tool:
        call_command("backup", str(tmp_path / "other.pgdump"), stdout=io.StringIO())
    assert str(no_tool.value) == (
        "pg_dump was not found on PATH. Install PostgreSQL's client tools, in the same major version as the server "
        "or newer (Debian: apt-get install postgresql-client), or add their directory to PATH "
        "(e.g. /usr/lib/postgresql/15/bin)."
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data.pgdump"]
