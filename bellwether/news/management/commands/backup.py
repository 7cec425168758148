from __future__ import annotations

from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from bellwether.backup import BackupError, backup_database
from bellwether.commands import DetailedHelp

DETAILS = """\
SQLite: a copy through SQLite's online backup API, made inside one read
transaction: trades go on while it runs, and the copy holds exactly what was
committed when it began. The copy is a single file (no -wal beside it),
checked with PRAGMA quick_check.

PostgreSQL: pg_dump --format=custom (one consistent snapshot while the site
runs), with the host, port, user, password and name of DATABASE_URL. pg_dump
must be on PATH, in the server's major version or newer (Debian:
apt-get install postgresql-client; or /usr/lib/postgresql/15/bin).

The file is written under a temporary name, flushed to disk and then
renamed: an interrupted backup never leaves a file that looks complete.
Copy backups to another machine too: a backup on the same disk is lost with
it. Restore with `bellwether restore PATH`; docs/operations.md ("Backups")
says how often and how to check one.

Examples:
  bellwether backup /var/backups/bellwether/        # a timestamped file in that directory
  bellwether backup nightly.sqlite3 --force          # replace nightly.sqlite3
"""


class Command(DetailedHelp, BaseCommand):
    help = (
        "Back up the database while the site runs: SQLite through its online backup API, PostgreSQL through "
        "pg_dump (custom format). PATH is a file, or a directory to put a timestamped file in. Prints progress "
        "and the backup's size and time."
    )
    details = DETAILS

    def add_arguments(self, parser):
        parser.add_argument("path", type=Path, metavar="PATH", help="the backup file to write, or a directory for a timestamped one")
        parser.add_argument("--force", action="store_true", help="replace PATH if it exists")

    def handle(self, *args, path, force, **options):
        def progress(message: str) -> None:
            if options["verbosity"] >= 1:
                self.stdout.write(f"  {message}")

        try:
            report = backup_database(path=path, force=force, progress=progress)
        except BackupError as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write(self.style.SUCCESS(
            f"backup written: {report.path} ({report.size_bytes / 1024 / 1024:.1f} MiB) in {report.seconds:.1f} s; {report.detail}"
        ))
