from __future__ import annotations

import os

from django.core.management.base import BaseCommand, CommandError


class Command(BaseCommand):
    help = (
        "Serve the site with granian: pages and the API over WSGI on --port, the fastest way measured here "
        "(docs/decisions/0001-serve-pages-over-wsgi.md), and the live streams over ASGI on --live-port "
        "(docs/live.md). Static files come from WhiteNoise. Ctrl-C or SIGTERM stops both."
    )

    def add_arguments(self, parser):
        parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
        parser.add_argument("--port", type=int, default=8000, help="port for pages and the API (default 8000)")
        parser.add_argument(
            "--live-port", type=int, default=None,
            help="port for the live streams (default: --port + 1; 0 starts no live server)",
        )
        parser.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="worker processes for each server (default: one per core)")
        parser.add_argument("--threads", type=int, default=8, help="Python threads per page worker (default 8)")

    def handle(self, *args, host, port, live_port, workers, threads, **options):
        from bellwether.server import serve

        if live_port is None:
            live_port = port + 1
        if live_port == port:
            raise CommandError("--live-port must differ from --port")
        self.stdout.write(self.style.SUCCESS(f"Serving Bellwether on http://{host}:{port}/  ({workers} worker(s); Ctrl-C stops)"))
        if live_port:
            self.stdout.write(f"Live streams on http://{host}:{live_port}/live/  ({workers} worker(s))")
        serve(host=host, port=port, workers=workers, threads=threads, live_port=live_port or None)
