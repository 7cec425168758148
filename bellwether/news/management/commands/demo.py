from __future__ import annotations

from pathlib import Path

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand

DEMO_CONTENT = Path(__file__).resolve().parents[2] / "demo_content"
SEEDS = settings.BASE_DIR.parent / "shared" / "seeds"


class Command(BaseCommand):
    help = (
        "Set up the demo newsroom and serve it: migrate the database, load the demo articles "
        "(and the seed articles in ../shared/seeds when present), create the demo editor login, "
        "then start the server on http://127.0.0.1:8000. Safe to run again: content is updated, not duplicated."
    )

    def add_arguments(self, parser):
        parser.add_argument("--no-serve", action="store_true", help="set everything up but do not start the server")
        parser.add_argument("--port", type=int, default=8000)
        parser.add_argument("--host", default="127.0.0.1")

    def handle(self, *args, no_serve, port, host, **options):
        from bellwether.news import services

        self.stdout.write("Migrating the database...")
        call_command("migrate", interactive=False, verbosity=0)
        self.stdout.write("Loading the demo newsroom...")
        sources = [str(DEMO_CONTENT)]
        if SEEDS.is_dir():
            sources.append(str(SEEDS))
        report = services.ingest_sources(sources=sources, default_section=("World",))
        for failure in report.failures:
            self.stderr.write(self.style.WARNING(f"skipped {failure}"))
        self.stdout.write(f"  {report.created} articles created, {report.updated} updated")
        from bellwether.markets.demo import load_demo_markets

        markets = load_demo_markets(content_dir=DEMO_CONTENT)
        self.stdout.write(f"  {markets} markets created from the stories' questions")
        username, password = services.ensure_demo_editor()
        credits = settings.STARTING_BALANCE_MICRO // 1_000_000
        self.stdout.write(
            self.style.SUCCESS(
                f"\nDemo editor login: {username} / {password}   (admin at http://{host}:{port}/admin/)\n"
            )
            + f"Readers: sign up at http://{host}:{port}/accounts/signup/ to trade with {credits:,} credits; "
            f"markets at http://{host}:{port}/markets/ (emails are printed here).\n"
        )
        if not no_serve:
            call_command("serve", host=host, port=port)
