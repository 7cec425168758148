"""Read every environment variable Bellwether understands, in one place.

docs/operations.md lists each variable with its default. Nothing else in the
code base reads ``os.environ`` for configuration.
"""

from __future__ import annotations

import os
from pathlib import Path

import dj_database_url

BASE_DIR = Path(__file__).resolve().parent.parent.parent
VAR_DIR = Path(os.environ.get("BELLWETHER_VAR_DIR", BASE_DIR / "var"))

_TRUE = {"1", "true", "yes", "on"}


def env_str(name: str, default: str = "") -> str:
    """Return the variable ``name`` or ``default`` when it is unset."""
    return os.environ.get(name, default)


def env_bool(name: str, default: bool = False) -> bool:
    """Return the variable ``name`` read as a yes/no flag."""
    value = os.environ.get(name)
    if value is None:
        return default
    return value.strip().lower() in _TRUE


def env_int(name: str, default: int) -> int:
    """Return the variable ``name`` as an integer."""
    value = os.environ.get(name)
    return default if value in (None, "") else int(value)


def env_float(name: str, default: float) -> float:
    """Return the variable ``name`` as a number."""
    value = os.environ.get(name)
    return default if value in (None, "") else float(value)


def env_optional(name: str) -> str | None:
    """Return the variable ``name``, or None when it is unset (an empty value counts as set)."""
    return os.environ.get(name)


def env_list(name: str, default: list[str]) -> list[str]:
    """Return a comma-separated variable as a list without blanks."""
    value = os.environ.get(name)
    if value is None:
        return default
    return [part.strip() for part in value.split(",") if part.strip()]


def database_config(url: str | None = None) -> dict:
    """Return Django's ``DATABASES["default"]`` for ``DATABASE_URL``.

    SQLite (the default, in ``var/bellwether.sqlite3``) runs in WAL mode with
    IMMEDIATE transactions, so writers queue on the busy timeout instead of
    failing with "database is locked". PostgreSQL gets psycopg 3's pool.
    """
    url = url if url is not None else env_str("DATABASE_URL")
    if not url:
        VAR_DIR.mkdir(parents=True, exist_ok=True)
        url = f"sqlite:///{VAR_DIR / 'bellwether.sqlite3'}"
    config = dj_database_url.parse(url)
    if config["ENGINE"] == "django.db.backends.sqlite3":
        config["OPTIONS"] = {
            "transaction_mode": "IMMEDIATE",
            "timeout": 20,
            "init_command": (
                "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; "
                "PRAGMA busy_timeout=20000; PRAGMA foreign_keys=ON;"
            ),
        }
        # Opening a SQLite connection (and running the PRAGMAs) per request
        # cost more than the query itself in benchmarks/pages.py.
        config["CONN_MAX_AGE"] = None
        config["CONN_HEALTH_CHECKS"] = True
    elif config["ENGINE"] == "django.db.backends.postgresql":
        config["OPTIONS"] = {
            # Bind parameters on the server: psycopg then prepares statements
            # it sees repeatedly, sparing PostgreSQL a parse and plan per trade.
            "server_side_binding": env_bool("DATABASE_SERVER_SIDE_BINDING", True),
            "pool": {
                "min_size": 1,
                "max_size": env_int("DATABASE_POOL_SIZE", 8),
                "timeout": 10,
            }
        }
        config["CONN_MAX_AGE"] = 0  # the pool keeps connections; Django must not
    return config
