"""A lean Django ASGI handler for the /live/ streams.

Django's own ASGIHandler runs the whole middleware stack, whose synchronous
parts (sessions, the page cache's generation check, ...) each run in a thread
kept for the whole request: for a stream that stays open for hours that is
one idle thread, and possibly one pooled database connection, per open
stream. The streams need none of that middleware (public data, no cookies),
so this handler resolves the URL and calls the async view directly, and
leaves per-request threads out: the views reach the database through
``bellwether.live.db.run_db``, which hands the connection back after each read.
"""

from __future__ import annotations

from django.core.handlers.asgi import ASGIHandler
from django.core.handlers.exception import convert_exception_to_response


class LiveStreamsHandler(ASGIHandler):
    """Serve URLs straight to their views, without middleware."""

    def load_middleware(self, is_async: bool = False) -> None:
        self._view_middleware = []
        self._template_response_middleware = []
        self._exception_middleware = []
        get_response = self._get_response_async if is_async else self._get_response
        self._middleware_chain = convert_exception_to_response(get_response)

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            raise ValueError(f"the live streams serve HTTP only, not {scope['type']}")
        # No ThreadSensitiveContext: it would give every open stream a thread.
        await self.handle(scope, receive, send)
