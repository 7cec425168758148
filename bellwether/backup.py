"""Back up the database while the site runs, and restore a backup (docs/operations.md, "Backups").

SQLite: the backup is a copy made through SQLite's online backup API
(``sqlite3.Connection.backup``) in one step, that is inside one read
transaction. In WAL mode, which the site always uses, a reader blocks no
writer: trades go on while the copy is made, and the copy holds exactly
what was committed when it began. (Copying in several steps would let
readers and writers take turns, but SQLite restarts a stepwise backup each
time another connection writes, so under steady trading it might never
finish.) The copy is switched to rollback-journal mode, a single
self-contained file, and checked with ``PRAGMA quick_check``.

PostgreSQL: ``pg_dump --format=custom``, which reads one consistent
snapshot of the whole database while the site runs, with the connection
settings of ``DATABASES["default"]`` (the password through the environment,
never on the command line). ``pg_restore`` reads it back.

Either way the backup is written under a temporary name, flushed to disk,
and only then renamed into place: a backup cut short never leaves a file
that looks complete.

A restore goes into the configured database and only into a fresh one
unless told otherwise: SQLite refuses a file that holds tables or that
another process has open (the site running), unless ``force``; PostgreSQL
refuses a database with tables unless ``clean`` (drop the backup's objects
first) and one with other sessions unless ``force``. A PostgreSQL restore
runs in one transaction: if it fails, the database is left as it was.
"""

from __future__ import annotations

import datetime as dt
import os
import shutil
import sqlite3
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from django.db import connections

SQLITE_BUSY_TIMEOUT_S = 20.0  # as the site's own connections (bellwether.settings.env)
SQLITE_SUFFIX = ".sqlite3"
POSTGRES_SUFFIX = ".pgdump"
# libpq's environment variables for the connection options Django passes through OPTIONS.
LIBPQ_OPTIONS = {
    "sslmode": "PGSSLMODE",
    "sslrootcert": "PGSSLROOTCERT",
    "sslcert": "PGSSLCERT",
    "sslkey": "PGSSLKEY",
    "service": "PGSERVICE",
    "passfile": "PGPASSFILE",
    "connect_timeout": "PGCONNECT_TIMEOUT",
}

Progress = Callable[[str], None]


class BackupError(Exception):
    """A backup or restore that cannot go ahead; the message says why and what to do."""


@dataclass(frozen=True)
class Report:
    """What a backup or restore did: the file, its size, how long it took, and a line of detail."""

    path: Path
    size_bytes: int
    seconds: float
    engine: str
    detail: str


def _quiet(message: str) -> None:
    pass


def backup_database(*, path: Path, alias: str = "default", force: bool = False, progress: Progress = _quiet) -> Report:
    """Write a backup of database ``alias`` to ``path`` and return the report.

    When ``path`` is a directory, the file is named after the database and
    the time, e.g. ``bellwether-20261203T140000Z.sqlite3``. An existing file
    is replaced only with ``force``.
    """
    settings_dict = connections[alias].settings_dict
    engine = _engine(settings_dict)
    suffix = SQLITE_SUFFIX if engine == "SQLite" else POSTGRES_SUFFIX
    path = Path(path)
    if path.is_dir():
        stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
        path = path / f"{Path(str(settings_dict['NAME'])).stem}-{stamp}{suffix}"
    if path.exists() and not force:
        raise BackupError(f"{path} already exists; pick another name or a directory, or pass --force to replace it")
    if not path.parent.is_dir():
        raise BackupError(f"the directory {path.parent} does not exist")
    partial = path.with_name(f".{path.name}.partial")
    started = time.monotonic()
    try:
        if engine == "SQLite":
            detail = _backup_sqlite(Path(settings_dict["NAME"]), partial, progress)
        else:
            detail = _backup_postgres(settings_dict, partial, progress)
        _flush(partial)
        os.replace(partial, path)
        _flush(path.parent)
    finally:
        partial.unlink(missing_ok=True)
    return Report(path=path, size_bytes=path.stat().st_size, seconds=time.monotonic() - started, engine=engine, detail=detail)


def restore_database(
    *, path: Path, alias: str = "default", force: bool = False, clean: bool = False, progress: Progress = _quiet
) -> Report:
    """Restore the backup at ``path`` into database ``alias`` and return the report.

    Only into a fresh database unless ``force`` (SQLite: replace a database
    with data or in use; PostgreSQL: go ahead while other sessions are
    connected) or ``clean`` (PostgreSQL only: drop the backup's objects
    before recreating them).
    """
    path = Path(path)
    if not path.is_file():
        raise BackupError(f"no backup file at {path}")
    connection = connections[alias]
    engine = _engine(connection.settings_dict)
    if clean and engine != "PostgreSQL":
        raise BackupError("--clean is for PostgreSQL; a SQLite restore replaces the whole file (--force)")
    started = time.monotonic()
    # This process's own connection would count as a user of the database.
    connection.close()
    if engine == "SQLite":
        detail = _restore_sqlite(path, Path(connection.settings_dict["NAME"]), force=force, progress=progress)
    else:
        detail = _restore_postgres(path, connection, force=force, clean=clean, progress=progress)
    return Report(path=path, size_bytes=path.stat().st_size, seconds=time.monotonic() - started, engine=engine, detail=detail)


def _engine(settings_dict: dict) -> str:
    vendor = settings_dict["ENGINE"].rsplit(".", 1)[-1]
    if vendor == "sqlite3":
        name = str(settings_dict["NAME"])
        if name == ":memory:" or "mode=memory" in name:
            raise BackupError("the database is in memory: there is no file to back up or restore into")
        return "SQLite"
    if vendor == "postgresql":
        return "PostgreSQL"
    raise BackupError(f"backups support SQLite and PostgreSQL, not {settings_dict['ENGINE']}")


def _flush(path: Path) -> None:
    """Ask the operating system to put ``path`` (a file or a directory) on disk."""
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


# ---------------------------------------------------------------------------
# SQLite


def _sqlite_connect(path: Path, *, timeout: float = SQLITE_BUSY_TIMEOUT_S) -> sqlite3.Connection:
    # isolation_level=None: no transaction Python opens behind the backup's back.
    return sqlite3.connect(path, timeout=timeout, isolation_level=None)


def _sqlite_tables(conn: sqlite3.Connection) -> int:
    return conn.execute("SELECT count(*) FROM sqlite_master WHERE type = 'table'").fetchone()[0]


def _sqlite_check(conn: sqlite3.Connection, what: str) -> None:
    result = conn.execute("PRAGMA quick_check").fetchone()[0]
    if result != "ok":
        raise BackupError(f"{what} failed SQLite's quick_check: {result}")


def _backup_sqlite(source: Path, target: Path, progress: Progress) -> str:
    if not source.is_file():
        raise BackupError(f"the database file {source} does not exist")
    source_conn = _sqlite_connect(source)
    target_conn = _sqlite_connect(target)
    try:
        pages, page_size = (source_conn.execute(f"PRAGMA {name}").fetchone()[0] for name in ("page_count", "page_size"))
        progress(f"copying {source} ({_mib(pages * page_size)}, {pages:,} pages) in one read transaction")
        copy_started = time.monotonic()
        source_conn.backup(target_conn, pages=-1)
        progress(f"copied in {time.monotonic() - copy_started:.1f} s; checking the copy")
        # One file, no -wal beside it, whatever the source's journal mode.
        target_conn.execute("PRAGMA journal_mode=DELETE")
        _sqlite_check(target_conn, "the copy")
        tables = _sqlite_tables(target_conn)
    finally:
        target_conn.close()
        source_conn.close()
    return f"SQLite online backup of {source}, {tables} tables, quick_check ok"


def _sqlite_in_use(conn: sqlite3.Connection) -> bool:
    """Return True if another connection has the WAL-mode database of ``conn`` open.

    Leaving WAL mode needs the only connection: SQLite answers "database is
    locked" while any other one, even idle, in any process, is open. When
    nothing else has it open, WAL mode is put back at once.
    """
    if conn.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
        return False
    conn.execute("PRAGMA busy_timeout = 0")
    try:
        conn.execute("PRAGMA journal_mode=DELETE")
    except sqlite3.OperationalError:
        return True
    finally:
        conn.execute(f"PRAGMA busy_timeout = {int(SQLITE_BUSY_TIMEOUT_S * 1000)}")
    conn.execute("PRAGMA journal_mode=WAL")
    return False


def _open_sqlite_backup(backup: Path) -> sqlite3.Connection:
    """Open the backup at ``backup`` read-only, checked; raise if it is not a sound Bellwether database."""
    try:
        conn = sqlite3.connect(f"file:{backup}?mode=ro", uri=True, isolation_level=None)
    except sqlite3.Error as exc:
        raise BackupError(f"{backup} cannot be opened: {exc}") from exc
    try:
        _sqlite_check(conn, f"the backup {backup}")
        if not conn.execute("SELECT 1 FROM sqlite_master WHERE name = 'django_migrations'").fetchone():
            raise BackupError(f"{backup} is a SQLite database but not a Bellwether backup (no django_migrations table)")
    except sqlite3.DatabaseError as exc:
        conn.close()
        raise BackupError(f"{backup} is not a SQLite backup: {exc}") from exc
    except BackupError:
        conn.close()
        raise
    return conn


def _restore_sqlite(backup: Path, target: Path, *, force: bool, progress: Progress) -> str:
    if not target.parent.is_dir():
        raise BackupError(f"the directory {target.parent} does not exist")
    source_conn = _open_sqlite_backup(backup)
    created = not target.exists()
    target_conn = None
    try:
        target_conn = _sqlite_connect(target)
        tables = _sqlite_tables(target_conn)
        if _sqlite_in_use(target_conn) and not force:
            raise BackupError(
                f"the database {target} is in use by another process (is the site running?); stop it first, "
                "or pass --force to replace the data under it"
            )
        if tables and not force:
            raise BackupError(
                f"the database {target} already holds {tables} tables; restore into a fresh file "
                "(point DATABASE_URL at a new sqlite:/// path) or pass --force to replace it"
            )
        progress(f"copying {backup} ({_mib(backup.stat().st_size)}) into {target}")
        source_conn.backup(target_conn, pages=-1)
        # The site runs SQLite in WAL mode (bellwether.settings.env).
        target_conn.execute("PRAGMA journal_mode=WAL")
        progress("copied; checking the database")
        _sqlite_check(target_conn, "the restored database")
        tables = _sqlite_tables(target_conn)
    except BaseException:
        if target_conn is not None:
            target_conn.close()
            target_conn = None
        if created:  # leave no half-made database behind
            for suffix in ("", "-wal", "-shm", "-journal"):
                Path(f"{target}{suffix}").unlink(missing_ok=True)
        raise
    finally:
        if target_conn is not None:
            target_conn.close()
        source_conn.close()
    return f"SQLite database {target}, {tables} tables, quick_check ok"


# ---------------------------------------------------------------------------
# PostgreSQL


def _tool(name: str) -> str:
    found = shutil.which(name)
    if found is None:
        raise BackupError(
            f"{name} was not found on PATH. Install PostgreSQL's client tools, in the same major version as the "
            f"server or newer (Debian: apt-get install postgresql-client), or add their directory to PATH "
            f"(e.g. /usr/lib/postgresql/15/bin)."
        )
    return found


def _libpq_env(settings_dict: dict) -> dict[str, str]:
    """Return this process's environment plus libpq's variables for ``settings_dict``."""
    env = dict(os.environ)
    for key, variable in (("HOST", "PGHOST"), ("PORT", "PGPORT"), ("USER", "PGUSER"), ("PASSWORD", "PGPASSWORD"), ("NAME", "PGDATABASE")):
        if settings_dict.get(key):
            env[variable] = str(settings_dict[key])
    for option, variable in LIBPQ_OPTIONS.items():
        value = (settings_dict.get("OPTIONS") or {}).get(option)
        if value is not None:
            env[variable] = str(value)
    return env


def _run_tool(argv: list[str], env: dict[str, str], progress: Progress, shown: tuple[str, ...]) -> None:
    """Run a PostgreSQL tool; pass on its verbose lines that contain one of ``shown``; raise with its errors."""
    lines: list[str] = []
    with subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True) as process:
        for line in process.stderr:
            line = line.rstrip()
            if any(marker in line for marker in shown):
                progress(line.split(": ", 1)[-1])
            else:
                lines.append(line)
    if process.returncode:
        errors = [line for line in lines if "error" in line.lower() or "fatal" in line.lower()] or lines[-5:]
        raise BackupError(f"{Path(argv[0]).name} failed (exit code {process.returncode}):\n" + "\n".join(errors))


def _backup_postgres(settings_dict: dict, target: Path, progress: Progress) -> str:
    pg_dump = _tool("pg_dump")
    name = settings_dict["NAME"]
    progress(f"dumping PostgreSQL database {name} with {pg_dump} (one snapshot; the site keeps running)")
    argv = [pg_dump, "--format=custom", "--no-password", "--verbose", f"--file={target}", f"--dbname={name}"]
    _run_tool(argv, _libpq_env(settings_dict), progress, shown=("dumping contents of table",))
    return f"pg_dump custom format of PostgreSQL database {name}"


def _restore_postgres(backup: Path, connection, *, force: bool, clean: bool, progress: Progress) -> str:
    pg_restore = _tool("pg_restore")
    env = _libpq_env(connection.settings_dict)
    name = connection.settings_dict["NAME"]
    listing = subprocess.run([pg_restore, "--list", str(backup)], env=env, capture_output=True, text=True)
    if listing.returncode:
        raise BackupError(f"{backup} is not a pg_dump custom-format backup: {listing.stderr.strip()}")
    tables, sessions = _postgres_occupancy(connection)
    if tables and not clean:
        raise BackupError(
            f"the database {name} already holds {tables} tables; restore into a fresh one (createdb NEWNAME, then "
            "point DATABASE_URL at it) or pass --clean to drop the backup's objects first"
        )
    if sessions and not force:
        raise BackupError(
            f"the database {name} has {sessions} other session(s) (is the site running?); stop them first, "
            "or pass --force to restore anyway"
        )
    progress(f"restoring {backup} ({_mib(backup.stat().st_size)}) into PostgreSQL database {name}, in one transaction")
    argv = [
        pg_restore, "--no-password", "--verbose", "--single-transaction", "--exit-on-error", "--no-owner",
        "--no-privileges", f"--dbname={name}",
    ]
    if clean:
        argv += ["--clean", "--if-exists"]
    _run_tool([*argv, str(backup)], env, progress, shown=("processing data for table",))
    return f"PostgreSQL database {name}" + (", its previous objects dropped first" if clean else "")


def _postgres_occupancy(connection) -> tuple[int, int]:
    """Return how many tables the database holds and how many sessions other than this check's are connected.

    Asked over a connection of its own, outside Django's pool, whose idle
    connections would count as sessions; the pool is closed first.
    """
    import psycopg

    connection.close()
    if connection.alias in getattr(connection, "_connection_pools", {}):
        connection.close_pool()
    params = connection.get_connection_params()
    for key in ("cursor_factory", "context", "prepare_threshold"):
        params.pop(key, None)
    with psycopg.connect(**params, autocommit=True) as conn:
        tables = conn.execute(
            "SELECT count(*) FROM pg_catalog.pg_tables WHERE schemaname NOT IN ('pg_catalog', 'information_schema')"
        ).fetchone()[0]
        sessions = conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()"
        ).fetchone()[0]
    return tables, sessions


def _mib(size_bytes: int) -> str:
    return f"{size_bytes / 1024 / 1024:.1f} MiB"
