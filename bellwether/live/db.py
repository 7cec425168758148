"""Database reads from the live streams' event loop."""

from __future__ import annotations

from asgiref.sync import sync_to_async
from django.db import close_old_connections


async def run_db(function, /, **kwargs):
    """Run the synchronous ``function`` in a worker thread and hand its connection back.

    Not thread-sensitive: a long-lived stream must not pin a thread (and a
    pooled PostgreSQL connection) for its whole life.
    """

    def call():
        try:
            return function(**kwargs)
        finally:
            close_old_connections()

    return await sync_to_async(call, thread_sensitive=False)()
