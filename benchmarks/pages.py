#!/usr/bin/env python
"""Measure requests/s of the home, article and section pages against /health/.

The pages are served the way production serves them (``bellwether serve``:
granian, WSGI, two workers, DEBUG off) from a database of 10,000 articles in
about twenty sections. /health/ runs one trivial query and skips the page
cache, so it is the ceiling a page could reach on the same server; the script
prints each page's rate as a fraction of it. The target from the issue is at
least half the health view's rate for the home and article pages.

The benchmark database lives apart from the development one: SQLite in
``var/bench/`` by default, or the PostgreSQL database named in
``--database-url``. It is built once (a few hundred articles through
``upsert_article``, the rest inserted in bulk with the page tree's path
arithmetic) and reused on later runs.

Run ``python benchmarks/pages.py --help`` for the options; the results are
recorded in docs/performance.md.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import html
import http.client
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.parse
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from common import (
    LOOPBACK,
    REPO,
    base_env,
    database_label,
    fetch,
    format_ms,
    format_ratio,
    load_average,
    prepare_database,
    running_server,
    start_django,
    warn_if_busy,
)

DEFAULT_VAR_DIR = REPO / "var" / "bench"
TARGET_RATIO = 0.5
BULK_BATCH = 500
# WhiteNoise answers this before any view runs: the server's ceiling without a database.
STATIC_PATH = "/static/css/site.css"
# Every benchmark article has this subheading, so a rendered body can be recognised.
BODY_SUBHEADING = "What happens next"
BODY_HEADING = f"<h2>{BODY_SUBHEADING}</h2>"

if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))


# ---------------------------------------------------------------------------
# Options


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Return the command-line options."""
    parser = argparse.ArgumentParser(
        prog="benchmarks/pages.py",
        description=(
            "Serve Bellwether with `bellwether serve` (granian, WSGI) on a database of "
            "--articles articles, load /health/, a static file (the no-database ceiling), the "
            "home page, one article page and the largest top-level section page with wrk (or a "
            "Python load generator when wrk is missing), and print requests/s, latency p50/p99 "
            "and each URL's ratio to /health/. A second "
            "server run with PAGE_CACHE_TTL_S=0 measures the pages without the page cache. "
            "At the defaults the measurement takes about two minutes; building the database "
            "the first time takes longer and is reported separately."
        ),
        epilog="Results and their interpretation: docs/performance.md.",
    )
    parser.add_argument(
        "--database-url",
        metavar="URL",
        default="",
        help=(
            "PostgreSQL URL of a dedicated benchmark database, e.g. "
            "postgres://postgres@127.0.0.1:5432/bellwether_bench; it is created (through the "
            "server's 'postgres' database) when missing. Default: SQLite in --var-dir."
        ),
    )
    parser.add_argument(
        "--var-dir",
        metavar="DIR",
        type=Path,
        default=DEFAULT_VAR_DIR,
        help=(
            "BELLWETHER_VAR_DIR for the benchmark: holds the SQLite database and the server "
            f"logs (default: {DEFAULT_VAR_DIR.relative_to(REPO)})"
        ),
    )
    parser.add_argument(
        "--articles",
        metavar="N",
        type=int,
        default=10_000,
        help="articles the database must hold; a smaller one is topped up (default: 10000)",
    )
    parser.add_argument(
        "--service-articles",
        metavar="N",
        type=int,
        default=200,
        help=(
            "how many of them to create through services.upsert_article, which also times "
            "that path; the rest are inserted in bulk (default: 200)"
        ),
    )
    parser.add_argument(
        "--rebuild",
        action="store_true",
        help=(
            "delete the benchmark database (the SQLite file in --var-dir, or the PostgreSQL "
            "database, whose name must contain 'bench') and build it afresh"
        ),
    )
    parser.add_argument(
        "--build-only", action="store_true", help="build or check the database, then stop without serving"
    )
    parser.add_argument(
        "--duration",
        metavar="S",
        type=float,
        default=10.0,
        help="seconds of measurement per URL (default: 10)",
    )
    parser.add_argument(
        "--warmup",
        metavar="S",
        type=float,
        default=2.0,
        help="seconds of unrecorded load per URL before its measurement, to fill caches (default: 2)",
    )
    parser.add_argument(
        "--connections",
        metavar="N",
        type=int,
        default=8,
        help="concurrent keep-alive connections (wrk -c; default: 8)",
    )
    parser.add_argument(
        "--threads",
        metavar="N",
        type=int,
        default=2,
        help="wrk threads (wrk -t; default: 2). The Python generator uses one thread per connection.",
    )
    parser.add_argument(
        "--workers",
        metavar="N",
        type=int,
        default=2,
        help="server worker processes (bellwether serve --workers; default: 2, one per core here)",
    )
    parser.add_argument(
        "--loadgen",
        choices=("auto", "wrk", "python"),
        default="auto",
        help=(
            "load generator: wrk, the Python one (threads and http.client keep-alive "
            "connections; far slower, so only its ratios are comparable), or auto: wrk when "
            "installed (default: auto)"
        ),
    )
    parser.add_argument(
        "--no-uncached",
        action="store_true",
        help="skip the second server run with the page cache off (PAGE_CACHE_TTL_S=0)",
    )
    parser.add_argument(
        "--seed", metavar="N", type=int, default=1, help="picks the article measured and the articles checked (default: 1)"
    )
    args = parser.parse_args(argv)
    for name in ("articles", "connections", "threads", "workers"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be at least 1")
    if args.service_articles < 1 or args.service_articles > args.articles:
        parser.error("--service-articles must be between 1 and --articles")
    if args.duration <= 0 or args.warmup < 0:
        parser.error("--duration must be positive and --warmup not negative")
    if args.database_url and not args.database_url.startswith(("postgres://", "postgresql://")):
        parser.error("--database-url must be a postgres:// URL (SQLite is the default)")
    args.var_dir = args.var_dir.resolve()
    return args


# ---------------------------------------------------------------------------
# Environment and database


def benchmark_env(args: argparse.Namespace, *, page_cache: bool = True) -> dict[str, str]:
    """Return the environment for this process and the servers it starts."""
    env = base_env(args)
    if not page_cache:
        env["PAGE_CACHE_TTL_S"] = "0"
    return env


def set_up_django(args: argparse.Namespace) -> None:
    """Point Django at the benchmark database, start it and migrate."""
    start_django(benchmark_env(args))


# ---------------------------------------------------------------------------
# Content

SECTION_PATHS: list[tuple[str, ...]] = [
    ("World",),
    ("World", "Europe"),
    ("World", "Asia-Pacific"),
    ("World", "Americas"),
    ("Politics",),
    ("Politics", "Diplomacy"),
    ("Politics", "Diplomacy", "Bilateral Relations"),
    ("Politics", "Elections"),
    ("Business",),
    ("Business", "Markets"),
    ("Business", "Energy"),
    ("Business", "Companies"),
    ("Technology",),
    ("Technology", "AI"),
    ("Technology", "Cybersecurity"),
    ("Science",),
    ("Science", "Climate"),
    ("Science", "Health"),
    ("Sport",),
    ("Sport", "Football"),
    ("Opinion", "Analysis"),
]
REGIONS = [
    "Asia-Pacific", "Europe", "North America", "Latin America", "Middle East", "Africa",
    "South Asia", "Central Asia", "Oceania", "Caribbean", "Nordics", "Balkans",
]
DESKS = [
    "National Security Desk", "Economics Desk", "Climate Desk", "Technology Desk",
    "Health Desk", "Sport Desk", "Investigations Desk", "Data Desk",
]
FIRST_NAMES = [
    "Amara", "Bruno", "Chen", "Dalia", "Emil", "Farah", "Gita", "Hugo", "Ines", "Jonas",
    "Kemi", "Lars", "Mina", "Nikolai", "Olga", "Pedro", "Quinn", "Rania", "Sven", "Tomoko",
]
LAST_NAMES = ["Okafor", "Lindqvist", "Haddad", "Moreau", "Tanaka", "Silva", "Novak"]
TAGS = [
    "Trade", "Elections", "Inflation", "Interest Rates", "Energy Prices", "Wind Power", "Solar",
    "Shipping", "Insurance", "Semiconductors", "AI Regulation", "Cyber Attacks", "Public Health",
    "Vaccines", "Water", "Drought", "Glaciers", "Fisheries", "Football", "Olympics", "Housing",
    "Pensions", "Strikes", "Railways", "Ports", "Bridges", "Coalitions", "Referendums",
    "Sanctions", "Summits", "Japan", "South Korea", "Brazil", "Germany", "Canada", "Kenya",
    "India", "Norway", "Chile", "Vietnam", "Budget", "Taxes", "Startups", "Data Privacy",
    "Hospitals", "Schools", "Universities", "Migration", "Tourism", "Agriculture",
]
SUBJECTS = [
    "Harbour authority", "Central bank", "Coalition partners", "Regional council", "Chipmaker",
    "Fisheries ministers", "Port operators", "Health officials", "Energy regulator", "Rail union",
    "Climate scientists", "Football federation", "Water utility", "Trade envoys",
    "Election commission", "Hospital network", "Wind developers", "Insurers", "Teachers",
    "Customs officers",
]
VERBS = [
    "approves", "delays", "rejects", "weighs", "announces", "expands", "halts", "revives",
    "questions", "backs", "defends", "reviews",
]
OBJECTS = [
    "bridge funding plan", "rate decision", "new emissions target", "fishing quota deal",
    "border inspection rules", "offshore wind auction", "hospital triage pilot", "water price rise",
    "semi-final schedule", "cyber security audit", "school vaccination drive",
    "shipping insurance levy", "chip plant timetable", "pension reform", "rail strike talks",
]
TAILS = [
    "after late-night vote", "amid budget pressure", "as talks stall", "ahead of summit",
    "despite opposition", "following public outcry", "in surprise move", "under new leadership",
]
SENTENCE_PARTS = [
    "Officials said the decision would be reviewed within weeks",
    "The proposal had been debated for more than a year",
    "Critics warned that costs could rise further",
    "Supporters argued the plan would protect jobs in the region",
    "Analysts expect markets to react cautiously",
    "Local residents gathered outside the building on Tuesday",
    "A spokesperson declined to comment on the timetable",
    "The figures were published in a report on Monday morning",
    "Negotiators met again late into the evening",
    "Independent experts called for more transparency",
    "The opposition said it would table amendments",
    "Forecasters put the chance of a deal this month at about one in three",
]


@dataclass(frozen=True)
class ArticleSpec:
    """Everything needed to create benchmark article number ``index``."""

    index: int
    source_key: str
    headline: str
    dek: str
    blocks: tuple  # of ingest Block, as a parser would return them
    section_path: tuple[str, ...]
    region: str
    desk: str
    authors: tuple[str, ...]
    tags: tuple[str, ...]
    published_at: dt.datetime
    featured: bool


def people() -> list[str]:
    """Return the names of the benchmark's reporters."""
    return [f"{first} {last}" for last in LAST_NAMES[:3] for first in FIRST_NAMES]


def article_spec(index: int, *, newest: dt.datetime) -> ArticleSpec:
    """Return the deterministic content of article ``index`` (0 is the newest and featured)."""
    from bellwether.news.ingest.types import Block

    rng = random.Random(index)
    headline = f"{rng.choice(SUBJECTS)} {rng.choice(VERBS)} {rng.choice(OBJECTS)} {rng.choice(TAILS)}"
    blocks = []
    for n in range(rng.randint(6, 9)):
        if n == 3:
            blocks.append(Block(kind="heading", text=BODY_SUBHEADING))
        if n == 5:
            blocks.append(Block(kind="quote", text=rng.choice(SENTENCE_PARTS) + "."))
        sentences = rng.sample(SENTENCE_PARTS, k=5)
        blocks.append(Block(kind="paragraph", html="<b>" + sentences[0] + ".</b> " + ". ".join(sentences[1:]) + "."))
    names = people()
    return ArticleSpec(
        index=index,
        source_key=f"bench-{index}",
        headline=headline,
        dek=f"{rng.choice(SENTENCE_PARTS)}, in story number {index}.",
        blocks=tuple(blocks),
        section_path=rng.choice(SECTION_PATHS),
        region=rng.choice(REGIONS) if rng.random() < 0.8 else "",
        desk=rng.choice(DESKS) if rng.random() < 0.7 else "",
        authors=tuple(rng.sample(names, k=rng.choice((1, 1, 2)))),
        tags=tuple(rng.sample(TAGS, k=rng.randint(2, 4))),
        # About a year of news, one story every 50 minutes.
        published_at=newest - dt.timedelta(minutes=50 * index),
        featured=index == 0,
    )


def ensure_snippets() -> None:
    """Create the regions, desks, people and tags the articles refer to."""
    from django.utils.text import slugify
    from taggit.models import Tag

    from bellwether.news.models import Desk, Person, Region

    for model, names in ((Region, REGIONS), (Desk, DESKS), (Person, people())):
        for name in names:
            model.objects.get_or_create(name=name, defaults={"slug": slugify(name)})
    for name in TAGS:
        if not Tag.objects.filter(name__iexact=name).exists():
            Tag.objects.create(name=name, slug=slugify(name))


def ensure_sections() -> dict[tuple[str, ...], object]:
    """Create every benchmark section through the service; return them by path."""
    from bellwether.news.services import ensure_home_page, ensure_section_path

    home = ensure_home_page()
    return {path: ensure_section_path(path=path, home=home) for path in SECTION_PATHS}


@contextlib.contextmanager
def search_indexing_off() -> Iterator[None]:
    """Stop saves from updating the search index while the block runs.

    The benchmark never searches, and indexing every article would only
    slow the build.
    """
    from django.db.models.signals import post_save
    from modelsearch import index
    from modelsearch.signal_handlers import post_save_signal_handler

    models = [m for m in index.get_indexed_models() if getattr(m, "search_auto_update", True)]
    for model in models:
        post_save.disconnect(post_save_signal_handler, sender=model)
    try:
        yield
    finally:
        for model in models:
            post_save.connect(post_save_signal_handler, sender=model)


def create_through_service(specs: list[ArticleSpec]) -> float:
    """Publish ``specs`` with ``upsert_article``, as ingestion does; return articles/s."""
    from tqdm import tqdm

    from bellwether.news.ingest.types import ParsedArticle
    from bellwether.news.services import upsert_article

    started = time.perf_counter()
    for spec in tqdm(specs, desc="service (upsert_article)", unit="article", file=sys.stderr):
        item = ParsedArticle(
            source_key=spec.source_key,
            headline=spec.headline,
            body=list(spec.blocks),
            dek=spec.dek,
            section_path=spec.section_path,
            region=spec.region,
            desk=spec.desk,
            authors=spec.authors,
            tags=spec.tags,
            published_at=spec.published_at,
            featured=spec.featured,
        )
        upsert_article(item=item)
    elapsed = time.perf_counter() - started
    return len(specs) / elapsed if elapsed else 0.0


def insert_in_bulk(specs: list[ArticleSpec], sections: dict) -> float:
    """Insert ``specs`` as live article pages without Wagtail's per-page work; return articles/s.

    Multi-table inheritance rules out ``ArticlePage.objects.bulk_create``, so
    the ``wagtailcore_page`` rows are bulk-created first (their tree paths
    computed the way treebeard's ``add_child`` computes them), then the
    ``news_articlepage`` rows, the authors and the tags, and each section's
    ``numchild`` is raised by the number of pages added. Each batch is one
    transaction, so an interrupted build leaves a consistent tree. No
    revisions are written: Wagtail serves a live page from its row, and the
    editor opens a page without unpublished changes from its row too.
    """
    from django.contrib.contenttypes.models import ContentType
    from django.db import connection, transaction
    from django.db.models import F
    from django.utils.text import slugify
    from taggit.models import Tag
    from tqdm import tqdm
    from wagtail.models import Page

    from bellwether.news.models import ArticlePage, ArticlePageTag, Desk, Person, Region
    from bellwether.news.services import body_stream

    content_type = ContentType.objects.get_for_model(ArticlePage)
    locale_id = next(iter(sections.values())).locale_id
    regions = dict(Region.objects.values_list("name", "pk"))
    desks = dict(Desk.objects.values_list("name", "pk"))
    persons = dict(Person.objects.values_list("name", "pk"))
    tags = {name.lower(): pk for name, pk in Tag.objects.values_list("name", "pk")}
    next_step = {}
    for path, section in sections.items():
        last = (
            Page.objects.filter(path__startswith=section.path, depth=section.depth + 1)
            .order_by("-path")
            .values_list("path", flat=True)
            .first()
        )
        next_step[path] = Page._str2int(last[-Page.steplen :]) + 1 if last else 1

    authors_through = ArticlePage.authors.through
    child_fields = ArticlePage._meta.local_concrete_fields
    quote = connection.ops.quote_name
    insert_child_sql = "INSERT INTO {} ({}) VALUES ({})".format(
        quote(ArticlePage._meta.db_table),
        ", ".join(quote(f.column) for f in child_fields),
        ", ".join(["%s"] * len(child_fields)),
    )

    started = time.perf_counter()
    with tqdm(total=len(specs), desc="bulk insert", unit="article", file=sys.stderr) as bar:
        for start in range(0, len(specs), BULK_BATCH):
            batch = specs[start : start + BULK_BATCH]
            with transaction.atomic():
                pages, added = [], {}
                for spec in batch:
                    section = sections[spec.section_path]
                    step = next_step[spec.section_path]
                    next_step[spec.section_path] += 1
                    added[section.pk] = added.get(section.pk, 0) + 1
                    slug = f"{slugify(spec.headline)[:60]}-{spec.index}"
                    pages.append(
                        Page(
                            title=spec.headline,
                            draft_title=spec.headline,
                            slug=slug,
                            content_type=content_type,
                            live=True,
                            has_unpublished_changes=False,
                            url_path=f"{section.url_path}{slug}/",
                            path=Page._get_path(section.path, section.depth + 1, step),
                            depth=section.depth + 1,
                            numchild=0,
                            first_published_at=spec.published_at,
                            last_published_at=spec.published_at,
                            locale_id=locale_id,
                            translation_key=uuid.uuid4(),
                        )
                    )
                Page.objects.bulk_create(pages)
                if any(page.pk is None for page in pages):
                    # Backends that cannot return ids from a bulk insert.
                    by_path = dict(Page.objects.filter(path__in=[p.path for p in pages]).values_list("path", "pk"))
                    for page in pages:
                        page.pk = by_path[page.path]
                articles = [
                    ArticlePage(
                        page_ptr_id=page.pk,
                        dek=spec.dek,
                        body=body_stream(list(spec.blocks)),
                        desk_id=desks.get(spec.desk),
                        region_id=regions.get(spec.region),
                        published_at=spec.published_at,
                        featured=spec.featured,
                        source_key=spec.source_key,
                    )
                    for page, spec in zip(pages, batch)
                ]
                rows = [[f.get_db_prep_save(getattr(a, f.attname), connection) for f in child_fields] for a in articles]
                with connection.cursor() as cursor:
                    cursor.executemany(insert_child_sql, rows)
                authors_through.objects.bulk_create(
                    authors_through(articlepage_id=page.pk, person_id=persons[name])
                    for page, spec in zip(pages, batch)
                    for name in spec.authors
                )
                ArticlePageTag.objects.bulk_create(
                    ArticlePageTag(content_object_id=page.pk, tag_id=tags[name.lower()])
                    for page, spec in zip(pages, batch)
                    for name in spec.tags
                )
                for section_pk, count in added.items():
                    Page.objects.filter(pk=section_pk).update(numchild=F("numchild") + count)
            bar.update(len(batch))
    elapsed = time.perf_counter() - started
    return len(specs) / elapsed if elapsed else 0.0


def check_tree() -> None:
    """Exit if the page tree's paths, depths or child counts are inconsistent."""
    from wagtail.models import Page

    problems = Page.find_problems()
    if any(problems):
        labels = ("bad characters", "bad path length", "orphans", "wrong depth", "wrong numchild")
        found = ", ".join(f"{label}: {ids[:5]}" for label, ids in zip(labels, problems) if ids)
        sys.exit(f"the page tree is inconsistent ({found})")


@dataclass
class BuildReport:
    """What building the database took."""

    reused: bool
    articles: int
    service_count: int = 0
    service_rate: float = 0.0
    bulk_count: int = 0
    bulk_rate: float = 0.0
    seconds: float = 0.0


def build_database(args: argparse.Namespace) -> BuildReport:
    """Make sure the database holds ``args.articles`` articles; build the missing ones."""
    from django.db import connection
    from django.utils import timezone

    from bellwether.news import services
    from bellwether.news.models import ArticlePage

    existing = ArticlePage.objects.live().count()
    if existing >= args.articles:
        return BuildReport(reused=True, articles=existing)

    started = time.perf_counter()
    print(f"building the benchmark database: {existing} of {args.articles} articles present", flush=True)
    report = BuildReport(reused=False, articles=args.articles)
    with search_indexing_off():
        ensure_snippets()
        sections = ensure_sections()
        have = set(ArticlePage.objects.filter(source_key__startswith="bench-").values_list("source_key", flat=True))
        # Anchor the dates to the newest article already built, so a top-up continues the same timeline.
        first = ArticlePage.objects.filter(source_key="bench-0").values_list("published_at", flat=True).first()
        newest = first or timezone.now().replace(microsecond=0)
        missing = [i for i in range(args.articles) if f"bench-{i}" not in have]
        through_service = [article_spec(i, newest=newest) for i in missing if i < args.service_articles]
        in_bulk = [article_spec(i, newest=newest) for i in missing if i >= args.service_articles]
        if through_service:
            report.service_count = len(through_service)
            report.service_rate = create_through_service(through_service)
            estimate_min = args.articles / report.service_rate / 60
            print(
                f"  upsert_article: {report.service_rate:.1f} articles/s, so {args.articles:,} "
                f"would take about {estimate_min:.1f} min that way",
                flush=True,
            )
        if in_bulk:
            report.bulk_count = len(in_bulk)
            report.bulk_rate = insert_in_bulk(in_bulk, sections)
            print(f"  bulk insert: {report.bulk_rate:,.0f} articles/s", flush=True)
    check_tree()
    report.articles = ArticlePage.objects.live().count()
    services.bump_content_generation()
    if connection.vendor == "sqlite":
        with connection.cursor() as cursor:
            cursor.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            cursor.execute("ANALYZE")
    else:
        with connection.cursor() as cursor:
            cursor.execute("ANALYZE")
    report.seconds = time.perf_counter() - started
    return report


@dataclass(frozen=True)
class Target:
    """A URL to load and what its page must show."""

    label: str
    path: str
    expect: str  # text the response must contain


def pick_targets(seed: int) -> list[Target]:
    """Return /health/, a static file, the home page, one article and one top-level section."""
    from wagtail.models import Page

    from bellwether.news.models import ArticlePage, SectionPage
    from bellwether.news.selectors import lead_story

    rng = random.Random(seed)
    lead = lead_story()
    ids = list(ArticlePage.objects.live().order_by("pk").values_list("pk", flat=True))
    article = ArticlePage.objects.get(pk=rng.choice(ids))
    sections = list(SectionPage.objects.live().filter(depth=3).order_by("path"))
    # The section with the most articles below it is the slowest to list.
    section = max(sections, key=lambda s: Page.objects.descendant_of(s).count())
    return [
        Target("health", "/health/", '"status": "ok"'),
        Target("static", STATIC_PATH, "{"),
        Target("home", "/", html.escape(lead.title)),
        Target("article", article.url, f'<h1 class="story__title">{html.escape(article.title)}</h1>'),
        Target("section", section.url, f"<h1>{html.escape(section.title)}</h1>"),
    ]


def sample_articles(count: int, seed: int) -> list[tuple[str, str]]:
    """Return (url, headline) of the first article (made by the service) and ``count`` random ones."""
    from bellwether.news.models import ArticlePage

    rng = random.Random(seed + 1)
    ids = list(ArticlePage.objects.live().order_by("pk").values_list("pk", flat=True))
    chosen = [ids[0]] + rng.sample(ids, k=min(count, len(ids)))
    return [(a.url, a.title) for a in ArticlePage.objects.filter(pk__in=chosen)]


# ---------------------------------------------------------------------------
# Server


def group_cpu_s(pgid: int) -> float | None:
    """Return the CPU seconds used so far by the live processes of group ``pgid`` (Linux only)."""
    if not os.path.isdir("/proc"):
        return None
    ticks = 0
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat") as stat:
                # The command name may contain spaces; the fields after it may not.
                fields = stat.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid:
            ticks += int(fields[11]) + int(fields[12])  # utime + stime
    return ticks / os.sysconf("SC_CLK_TCK")


def verify_pages(port: int, targets: list[Target], samples: list[tuple[str, str]], *, page_cache: bool) -> None:
    """Raise unless every page renders with the right content and the cache is as configured."""
    for target in targets:
        status, headers, body = fetch(port, target.path)
        if status != 200 or target.expect not in body:
            raise RuntimeError(f"{target.path} answered {status} without {target.expect!r}")
        if target.label not in ("health", "static"):
            status, headers, _ = fetch(port, target.path)
            cache_state = headers.get("x-page-cache")
            # Two workers each keep their own cache, so a second request may be another miss.
            if page_cache and cache_state not in ("hit", "miss"):
                raise RuntimeError(f"{target.path}: page cache expected, X-Page-Cache is {cache_state!r}")
            if not page_cache and cache_state is not None:
                raise RuntimeError(f"{target.path}: page cache should be off, X-Page-Cache is {cache_state!r}")
    for url, headline in samples:
        status, _, body = fetch(port, url)
        if status != 200 or f'<h1 class="story__title">{html.escape(headline)}</h1>' not in body:
            raise RuntimeError(f"{url} answered {status} without its headline {headline!r}")
        if BODY_HEADING not in body:
            raise RuntimeError(f"{url} answered without its body text")


# ---------------------------------------------------------------------------
# Load generators


@dataclass
class LoadResult:
    """One URL's measurement."""

    requests_per_s: float
    p50_ms: float | None
    p99_ms: float | None
    requests: int
    errors: int  # non-2xx/3xx answers plus socket errors


_UNIT_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0}


def _wrk_ms(text: str) -> float:
    number, unit = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text).groups()
    return float(number) * _UNIT_MS[unit]


def run_wrk(url: str, *, duration_s: float, connections: int, threads: int) -> LoadResult:
    """Load ``url`` with wrk for ``duration_s`` and return its figures."""
    seconds = max(1, round(duration_s))
    argv = [
        "wrk", f"-t{min(threads, connections)}", f"-c{connections}", f"-d{seconds}s", "--latency",
        "-H", "Accept: text/html", url,
    ]
    out = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 30, check=True).stdout
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    total = int(re.search(r"(\d+) requests in", out).group(1))
    p50 = re.search(r"^\s+50%\s+(\S+)", out, re.M)
    p99 = re.search(r"^\s+99%\s+(\S+)", out, re.M)
    errors = 0
    if match := re.search(r"Non-2xx or 3xx responses: (\d+)", out):
        errors += int(match.group(1))
    if match := re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out):
        errors += sum(int(n) for n in match.groups())
    return LoadResult(rate, p50 and _wrk_ms(p50.group(1)), p99 and _wrk_ms(p99.group(1)), total, errors)


def run_python(url: str, *, duration_s: float, connections: int, threads: int) -> LoadResult:
    """Load ``url`` from one thread per keep-alive connection for ``duration_s``; return its figures.

    ``threads`` is ignored. The generator shares the GIL and the two cores
    with the server, so its absolute rates are far below wrk's.
    """
    parts = urllib.parse.urlsplit(url)
    path = parts.path or "/"
    deadline = time.monotonic() + duration_s
    latencies: list[list[float]] = [[] for _ in range(connections)]
    errors = [0] * connections

    def client(slot: int) -> None:
        conn = None
        while time.monotonic() < deadline:
            if conn is None:
                conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
            began = time.perf_counter()
            try:
                conn.request("GET", path, headers={"Accept": "text/html"})
                response = conn.getresponse()
                response.read()
            except (OSError, http.client.HTTPException):
                errors[slot] += 1
                conn.close()
                conn = None
                continue
            latencies[slot].append(time.perf_counter() - began)
            if response.status >= 400:
                errors[slot] += 1
            if response.will_close:
                conn.close()
                conn = None
        if conn is not None:
            conn.close()

    started = time.perf_counter()
    workers = [threading.Thread(target=client, args=(i,), daemon=True) for i in range(connections)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=duration_s + 15)
    elapsed = time.perf_counter() - started
    times = sorted(t for slot in latencies for t in slot)
    if not times:
        return LoadResult(0.0, None, None, 0, sum(errors))

    def percentile(q: float) -> float:
        return times[min(len(times) - 1, int(q * len(times)))] * 1000

    return LoadResult(len(times) / elapsed, percentile(0.50), percentile(0.99), len(times), sum(errors))


def choose_loadgen(choice: str):
    """Return the load function to use, explaining a fallback to the Python one."""
    have_wrk = shutil.which("wrk") is not None
    if choice == "wrk" and not have_wrk:
        sys.exit("wrk is not installed: run `apt-get install -y wrk` (or use --loadgen python)")
    if choice == "python" or not have_wrk:
        if not have_wrk:
            print(
                "NOTE: wrk is not installed, so the Python load generator is used. Its rates are "
                "several times lower than wrk's and not comparable with docs/performance.md; "
                "install wrk with `apt-get install -y wrk` for real figures.",
                flush=True,
            )
        return "python", run_python
    return "wrk", run_wrk


# ---------------------------------------------------------------------------
# Measurement and report


@dataclass
class Row:
    """A measured URL with the run it belongs to."""

    target: Target
    cache: str
    result: LoadResult
    cpu_ms_per_request: float | None = None  # the server's CPU time, all workers
    health_rate: float = 0.0

    @property
    def ratio(self) -> float:
        return self.result.requests_per_s / self.health_rate if self.health_rate else 0.0


@dataclass
class Run:
    """One server run's settings and rows."""

    page_cache: bool
    rows: list[Row] = field(default_factory=list)


def measure(args, env, targets, samples, load, *, page_cache: bool, log_name: str) -> Run:
    """Start a server, verify the pages, load each target, stop the server."""
    run = Run(page_cache=page_cache)
    cache_label = "on" if page_cache else "off"
    with running_server(env, workers=args.workers, log_path=args.var_dir / log_name) as (port, pgid):
        verify_pages(port, targets, samples, page_cache=page_cache)
        base = f"http://{LOOPBACK}:{port}"
        for target in targets:
            print(f"  page cache {cache_label}: {target.label:8} {target.path}", end=" ... ", flush=True)
            opts = {"connections": args.connections, "threads": args.threads}
            if args.warmup:
                load(base + target.path, duration_s=args.warmup, **opts)
            cpu_before = group_cpu_s(pgid)
            result = load(base + target.path, duration_s=args.duration, **opts)
            cpu_after = group_cpu_s(pgid)
            cpu_ms = None
            if cpu_before is not None and cpu_after is not None and result.requests:
                cpu_ms = (cpu_after - cpu_before) * 1000 / result.requests
            print(f"{result.requests_per_s:,.0f} req/s", flush=True)
            run.rows.append(Row(target, cache_label, result, cpu_ms))
    health = next(r.result.requests_per_s for r in run.rows if r.target.label == "health")
    for row in run.rows:
        row.health_rate = health
    return run


def print_report(
    args, runs: list[Run], build: BuildReport, loadgen: str, db_label: str, elapsed_s: float, load_before: str
) -> None:
    """Print the results table, the target verdict and the build figures."""
    print()
    print(
        f"Bellwether pages on {db_label}, {build.articles:,} articles; bellwether serve "
        f"--workers {args.workers} (granian, WSGI); {loadgen} "
        f"{'-t%d ' % min(args.threads, args.connections) if loadgen == 'wrk' else ''}-c{args.connections}, "
        f"{args.duration:g} s per URL after {args.warmup:g} s warm-up; {os.cpu_count()} CPUs"
    )
    header = (
        f"{'page':8} {'cache':5} {'url':48} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8} "
        f"{'x health':>8} {'cpu ms/req':>10} {'errors':>6}"
    )
    print(header)
    print("-" * len(header))
    for run in runs:
        for row in run.rows:
            url = row.target.path if len(row.target.path) <= 48 else row.target.path[:45] + "..."
            print(
                f"{row.target.label:8} {row.cache:5} {url:48} {row.result.requests_per_s:9,.0f} "
                f"{format_ms(row.result.p50_ms):>8} {format_ms(row.result.p99_ms):>8} {format_ratio(row.ratio):>8} {format_ms(row.cpu_ms_per_request):>10} {row.result.errors:6}"
            )
    print()
    cached = {row.target.label: row for row in runs[0].rows}
    for label in ("home", "article"):
        row = cached[label]
        verdict = "met" if row.ratio >= TARGET_RATIO else "NOT met"
        print(f"target >= {TARGET_RATIO:g}x /health/ for {label} (page cache on): {format_ratio(row.ratio)}x, {verdict}")
    if len(runs) > 1:
        for row in runs[1].rows:
            if row.target.label in ("home", "article"):
                verdict = "met" if row.ratio >= TARGET_RATIO else "not met"
                print(f"  without the page cache, {row.target.label}: {format_ratio(row.ratio)}x, {verdict}")
    print(
        "cpu ms/req: CPU time of all server processes per request while loading that URL; "
        f"req/s cannot exceed {os.cpu_count()} cores' worth of it (cores x 1000 / cpu ms)."
    )
    if any(row.result.errors for run in runs for row in run.rows):
        print("WARNING: some requests failed (see the errors column); the server logs are in", args.var_dir)
    print()
    if build.reused:
        print(f"database: reused ({build.articles:,} live articles)")
    else:
        print(
            f"database built in {build.seconds:.0f} s: {build.service_count} articles through "
            f"upsert_article at {build.service_rate:.1f}/s, {build.bulk_count:,} in bulk at "
            f"{build.bulk_rate:,.0f}/s"
        )
    print(f"measurement took {elapsed_s:.0f} s; load average at the start {load_before}, at the end {load_average()}")


def main(argv: list[str] | None = None) -> None:
    """Build or reuse the benchmark database, serve it, load it and print the figures."""
    args = parse_args(argv)
    # SIGTERM must unwind through the `finally` blocks that stop the servers.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    loadgen_name, load = ("-", None) if args.build_only else choose_loadgen(args.loadgen)

    prepare_database(args, example_name="bellwether_bench")
    set_up_django(args)
    from django.db import connection, connections

    db_label = database_label(args, connection)
    build = build_database(args)
    if not build.reused:
        print(f"database ready in {build.seconds:.0f} s", flush=True)
    targets = pick_targets(args.seed)
    samples = sample_articles(5, args.seed)
    connections.close_all()
    if args.build_only:
        print(f"{db_label}: {build.articles:,} live articles; --build-only, so nothing is served")
        return

    warn_if_busy("the server and the load generator")
    load_before = load_average()
    started = time.perf_counter()
    print(f"measuring with {loadgen_name} against {db_label}", flush=True)
    runs = [measure(args, benchmark_env(args), targets, samples, load, page_cache=True, log_name="server-cached.log")]
    if not args.no_uncached:
        # The page cache does not touch /health/ or static files; /health/ stays as the reference.
        page_targets = [t for t in targets if t.label != "static"]
        runs.append(
            measure(
                args, benchmark_env(args, page_cache=False), page_targets, samples, load,
                page_cache=False, log_name="server-uncached.log",
            )
        )
    print_report(args, runs, build, loadgen_name, db_label, time.perf_counter() - started, load_before)


if __name__ == "__main__":
    main()
