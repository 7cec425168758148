from __future__ import annotations

import sys

from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from bellwether.news import services


class Command(BaseCommand):
    help = (
        "Import articles from files, folders or URLs and publish them.\n\n"
        "Understands the plain-text newsroom layout (.txt), Markdown with YAML front matter (.md), "
        "RSS/Atom feeds (.xml/.rss/.atom or a feed URL) and HTML article pages (.html or a page URL). "
        "Ingesting an item again updates it instead of duplicating it. Each item is stored on its own: "
        "a bad one is reported on one line and the rest still go in; the exit code is 1 if any failed."
    )

    def add_arguments(self, parser):
        parser.add_argument("sources", nargs="+", metavar="PATH_OR_URL", help="files, folders (read recursively) or http(s) URLs")
        parser.add_argument(
            "--section",
            default="News",
            help='breadcrumb for items that name no section, e.g. "World > Asia" (default: News)',
        )
        parser.add_argument("--region", default="", help="region for items that name none, e.g. Asia-Pacific")
        parser.add_argument("--no-progress", action="store_true", help="do not draw a progress bar")

    def handle(self, *args, sources, section, region, no_progress, **options):
        default_section = tuple(p.strip() for p in section.split(">") if p.strip())
        if not default_section:
            raise CommandError("--section must name at least one section")
        show_bar = not no_progress and sys.stderr.isatty()

        def progress(items):
            items = list(items)
            if not show_bar or len(items) < 2:
                return items
            return tqdm(items, desc="Ingesting", unit="item", file=sys.stderr)

        report = services.ingest_sources(
            sources=sources, default_section=default_section, region=region, progress=progress
        )
        for failure in report.failures:
            self.stderr.write(self.style.ERROR(f"error: {failure}"))
        summary = f"{report.created} created, {report.updated} updated, {len(report.failures)} failed"
        if report.unchanged_feeds:
            summary += f", {report.unchanged_feeds} feed(s) not modified"
        self.stdout.write(summary)
        if report.failures:
            sys.exit(1)
