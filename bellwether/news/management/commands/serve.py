from __future__ import annotations

import os

from django.core.management.base import BaseCommand


class Command(BaseCommand):
    help = (
        "Serve the site with granian: pages and the API over WSGI, the fastest way measured here "
        "(docs/decisions/0001-serve-pages-over-wsgi.md). Static files come from WhiteNoise."
    )

    def add_arguments(self, parser):
        parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
        parser.add_argument("--port", type=int, default=8000, help="port (default 8000)")
        parser.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="worker processes (default: one per core)")
        parser.add_argument("--threads", type=int, default=8, help="Python threads per worker (default 8)")

    def handle(self, *args, host, port, workers, threads, **options):
        from bellwether.server import serve

        self.stdout.write(self.style.SUCCESS(f"Serving Bellwether on http://{host}:{port}/  ({workers} worker(s); Ctrl-C stops)"))
        serve(host=host, port=port, workers=workers, threads=threads)
