"""The `bellwether` command: Django's management commands plus Bellwether's own."""

from __future__ import annotations

import os
import sys

OVERVIEW = """\
bellwether — a newsroom with live prediction markets

Usage: bellwether COMMAND [options]      (bellwether COMMAND --help for details)

Getting started
  demo          migrate, load the demo newsroom, create the demo editor, serve it
                with simulated traders (--traders N, 0 for none; DEMO_TRADERS)
  serve         serve the pages on http://127.0.0.1:8000 and the live price streams on the
                next port (--host, --port, --live-port, --workers)
  worker        run background tasks and send the weekly highlights on schedule
                (HIGHLIGHTS_WEEKDAY, HIGHLIGHTS_TIME, HIGHLIGHTS_TIME_ZONE)

Content
  ingest        import articles from .txt/.md/.html files, folders, RSS/Atom feeds or URLs
  highlights build [--intro TEXT] [--pin KEY ...] [--drop KEY ...] | preview [--to FILE.html] | send
                the weekly highlights email: freeze this week's issue, look at it, mail it
                to the subscribers through EMAIL_HOST (progress bar; safe to re-run)

Markets and money
  user create NAME [--role editor|resolver]
                make a user with the starting balance (editors create markets, resolvers settle them)
  token create USERNAME
                print a new API token for `Authorization: Bearer ...` (shown once)
  audit         recompute every balance from the ledger and check every market; exit 1 on a mismatch
  simulate [--traders N] [--rate PER_MIN] [--duration S] [--seed K]
                run simulated traders (sim-ana, ...) on the open markets; the demo starts 3

Administration
  migrate       create or update the database tables
  createsuperuser
                make an administrator for /admin/
  check         check the configuration (add --deploy with production settings)

Every Django and Wagtail management command works too: `bellwether help --commands`.
Configuration comes from environment variables (DATABASE_URL, SECRET_KEY, DEBUG, ...);
docs/operations.md lists them all with their defaults.
"""


def main(argv: list[str] | None = None) -> None:
    """Run a management command, defaulting to the project's settings."""
    argv = list(sys.argv if argv is None else argv)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "bellwether.settings.base")
    if len(argv) < 2 or argv[1] in ("-h", "--help"):
        sys.stdout.write(OVERVIEW)
        return
    from django.core.management import execute_from_command_line

    argv[0] = "bellwether"
    execute_from_command_line(argv)


if __name__ == "__main__":
    main()
