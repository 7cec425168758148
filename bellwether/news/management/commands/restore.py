from __future__ import annotations

from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from bellwether.backup import BackupError, restore_database
from bellwether.commands import DetailedHelp

DETAILS = """\
The backup goes into the database DATABASE_URL names, and by default only
into a fresh one:

SQLite: the file must not exist yet, or hold no tables, and no other
process may have it open. --force replaces a database that holds data or
that the running site has open (the site then sees the restored data).
After the copy the database is put in WAL mode and checked (quick_check).

PostgreSQL: pg_restore into an existing database that holds no tables and
has no other sessions; create it first (createdb NAME, or CREATE DATABASE)
and point DATABASE_URL at it. Owners and grants are not restored: the
restored objects belong to DATABASE_URL's user. It runs in one
transaction: if anything fails, the database is left as it was.
--clean drops the objects the backup holds before recreating them, to
restore over a Bellwether database (tables it does not hold stay: prefer a
fresh database). --force goes ahead while other sessions are connected.
pg_restore must be on PATH (Debian: apt-get install postgresql-client).

Then check the money: `bellwether audit` must print "audit passed".

Examples:
  DATABASE_URL=sqlite:///var/restored.sqlite3 bellwether restore backups/bellwether-20261203T140000Z.sqlite3
  createdb bellwether_restored
  DATABASE_URL=postgres://bellwether@db/bellwether_restored bellwether restore bellwether-20261203T140000Z.pgdump
"""


class Command(DetailedHelp, BaseCommand):
    help = (
        "Restore a backup made by `bellwether backup` into the configured database, a fresh one unless "
        "--force (or --clean on PostgreSQL). Prints progress and the size and time; then run `bellwether audit`."
    )
    details = DETAILS

    def add_arguments(self, parser):
        parser.add_argument("path", type=Path, metavar="PATH", help="the backup file (.sqlite3 or .pgdump)")
        parser.add_argument(
            "--force", action="store_true",
            help="SQLite: replace a database that holds data or is in use; PostgreSQL: restore while other sessions are connected",
        )
        parser.add_argument(
            "--clean", action="store_true",
            help="PostgreSQL only: drop the backup's objects before recreating them (restore over an existing Bellwether database)",
        )

    def handle(self, *args, path, force, clean, **options):
        def progress(message: str) -> None:
            if options["verbosity"] >= 1:
                self.stdout.write(f"  {message}")

        try:
            report = restore_database(path=path, force=force, clean=clean, progress=progress)
        except BackupError as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write(self.style.SUCCESS(
            f"restored {report.path} ({report.size_bytes / 1024 / 1024:.1f} MiB) in {report.seconds:.1f} s into the "
            f"{report.detail}; check it with `bellwether audit`"
        ))
