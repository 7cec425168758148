from __future__ import annotations

import gc
import os

from django.core.management.base import BaseCommand, CommandError

from bellwether.commands import DetailedHelp
from bellwether.server import HEADER_TIMEOUT_S, PAGE_CONNECTIONS_PER_WORKER

DETAILS = f"""\
Supervision: each server runs in a child process with its own workers. A
worker that dies is replaced by its server; a server that dies is started
again by this process (at once, then after 1, 2, 5, 10 and 30 s if it keeps
dying within 10 s). Ctrl-C or SIGTERM stops every child within about 4 s
and exits 0; a second Ctrl-C kills them at once.

Slow and silent clients: a connection must send a complete request header
within --header-timeout seconds (default {HEADER_TIMEOUT_S}), and an idle keep-alive connection
is closed after the same time. Each worker holds up to --connections open
connections (default {PAGE_CONNECTIONS_PER_WORKER}), idle ones included. Both servers speak HTTP/1.1;
put a proxy in front for TLS and HTTP/2 (docs/operations.md).
"""


class Command(DetailedHelp, BaseCommand):
    help = (
        "Serve the site with granian: pages and the API over WSGI on --port, the fastest way measured here "
        "(docs/decisions/0001-serve-pages-over-wsgi.md), and the live streams over ASGI on --live-port "
        "(docs/live.md). Static files come from WhiteNoise. Ctrl-C or SIGTERM stops both."
    )
    details = DETAILS
    # `bellwether demo` passes the simulated traders here, to run under the same supervision.
    stealth_options = ("companions",)

    def add_arguments(self, parser):
        parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
        parser.add_argument("--port", type=int, default=8000, help="port for pages and the API (default 8000)")
        parser.add_argument(
            "--live-port", type=int, default=None,
            help="port for the live streams (default: --port + 1; 0 starts no live server)",
        )
        parser.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="worker processes for each server (default: one per core)")
        parser.add_argument("--threads", type=int, default=8, help="Python threads per page worker (default 8)")
        parser.add_argument(
            "--connections", type=int, default=PAGE_CONNECTIONS_PER_WORKER, metavar="N",
            help=f"open connections each page worker holds, idle ones included (default {PAGE_CONNECTIONS_PER_WORKER})",
        )
        parser.add_argument(
            "--header-timeout", type=int, default=HEADER_TIMEOUT_S, metavar="S",
            help=f"seconds a client has to send a request header, and an idle connection stays open (default {HEADER_TIMEOUT_S})",
        )

    def handle(self, *args, host, port, live_port, workers, threads, connections, header_timeout, **options):
        from bellwether.server import ServeError, serve

        if live_port is None:
            live_port = port + 1
        if live_port == port:
            raise CommandError("--live-port must differ from --port")
        if workers < 1 or threads < 1 or connections < 1:
            raise CommandError("--workers, --threads and --connections must be at least 1")
        if not 1 <= header_timeout <= 60:
            raise CommandError("--header-timeout must be between 1 and 60 seconds")
        self.stdout.write(self.style.SUCCESS(f"Serving Bellwether on http://{host}:{port}/  ({workers} worker(s); Ctrl-C stops)"))
        if live_port:
            self.stdout.write(f"Live streams on http://{host}:{live_port}/live/  ({workers} worker(s))")
        self.stdout.flush()
        try:
            serve(
                host=host, port=port, workers=workers, threads=threads, live_port=live_port or None,
                connections=connections, header_timeout_s=header_timeout, companions=options.get("companions") or (),
            )
        except ServeError as exc:
            raise CommandError(str(exc)) from exc
        # The process exits next. Interpreter shutdown runs full garbage
        # collections over everything still loaded (seconds, after the demo
        # has loaded its content); frozen objects are skipped, so it stays
        # well within the five seconds a stop may take.
        gc.freeze()
