"""Start the web server (see docs/decisions/0001-serve-pages-over-wsgi.md)."""

from __future__ import annotations

import os


def serve(*, host: str, port: int, workers: int) -> None:
    """Serve the WSGI application with granian until interrupted."""
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
        log_access=False,
    ).serve()
