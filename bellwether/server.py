"""Start the web server (see docs/decisions/0001-serve-pages-over-wsgi.md)."""

from __future__ import annotations

import os


def serve(*, host: str, port: int, workers: int, threads: int = 8) -> None:
    """Serve the WSGI application with granian until interrupted.

    Each worker runs ``threads`` Python threads and accepts no more requests
    at once than it has threads, so requests queue in the socket instead of
    piling up inside one process (and its connection pool).
    """
    from granian import Granian
    from granian.constants import Interfaces

    # Worker processes import the application afresh and need the same settings.
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "bellwether.settings.base")
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
