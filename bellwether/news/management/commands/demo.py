from __future__ import annotations

import sys
from pathlib import Path

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand

DEMO_CONTENT = Path(__file__).resolve().parents[2] / "demo_content"
SEEDS = settings.BASE_DIR.parent / "shared" / "seeds"


def demo_traders(option: int | None) -> int:
    """Return how many simulated traders the demo runs: ``--traders`` if given, else the DEMO_TRADERS setting."""
    count = getattr(settings, "DEMO_TRADERS", 3) if option is None else option
    return max(0, int(count))


def simulator_argv(*, traders: int) -> list[str] | None:
    """Return the command line of the simulated traders' process, or None when there are to be none.

    The child runs this interpreter's `bellwether simulate` quietly (errors
    only), so the server's log stays readable.
    """
    if traders <= 0:
        return None
    return [sys.executable, "-m", "bellwether.cli", "simulate", "--traders", str(traders), "--verbosity", "0"]


class Command(BaseCommand):
    help = (
        "Set up the demo newsroom and serve it: migrate the database, load the demo articles "
        "(and the seed articles in ../shared/seeds when present), create the demo editor login, "
        "then start the server on http://127.0.0.1:8000 with a few simulated traders (sim-ana, sim-bo, ...) "
        "trading the open markets so prices move (DEMO_TRADERS sets how many, default 3; --traders 0 turns them off). "
        "Safe to run again: content is updated, not duplicated."
    )

    def add_arguments(self, parser):
        parser.add_argument("--no-serve", action="store_true", help="set everything up but do not start the server")
        parser.add_argument("--port", type=int, default=8000)
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument(
            "--traders", type=int, default=None, metavar="N",
            help="simulated traders to run beside the server (default: the DEMO_TRADERS setting, 3 unless set); 0 turns them off",
        )

    def handle(self, *args, no_serve, port, host, traders, **options):
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
        from bellwether.highlights.building import build_issue
        from bellwether.highlights.models import Issue

        if not Issue.objects.exists():
            issue = build_issue()
            self.stdout.write(f"  weekly highlights issue #{issue.number} built (see /highlights/)")
        username, password = services.ensure_demo_editor()
        credits = settings.STARTING_BALANCE_MICRO // 1_000_000
        self.stdout.write(
            self.style.SUCCESS(
                f"\nDemo editor login: {username} / {password}   (admin at http://{host}:{port}/admin/)\n"
            )
            + f"Readers: sign up at http://{host}:{port}/accounts/signup/ to trade with {credits:,} credits; "
            f"markets at http://{host}:{port}/markets/ (emails are printed here).\n"
        )
        if no_serve:
            return
        from bellwether.server import Companion

        count = demo_traders(traders)
        argv = simulator_argv(traders=count)
        companions = [Companion(name="simulated traders", argv=argv)] if argv else []
        if companions:
            self.stdout.write(
                f"{count} simulated traders (sim-ana, sim-bo, ...) are trading the open markets; "
                "turn them off with `bellwether demo --traders 0` or DEMO_TRADERS=0.\n"
            )
        # The server supervises the traders with its own children: one Ctrl-C stops them all.
        call_command("serve", host=host, port=port, companions=companions)
