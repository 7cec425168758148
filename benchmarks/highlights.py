"""Build one weekly highlights issue and send it to 10,000 subscribers through a local SMTP sink.

Prints the time to build the issue and emails per minute through real SMTP
(aiosmtpd in a separate process that only counts what it accepts).
"""

from __future__ import annotations

import argparse
import multiprocessing
import random
import subprocess
import sys
import time
from pathlib import Path

from common import (
    REPO,
    base_env,
    bellwether_command,
    free_port,
    prepare_database,
    start_django,
)

DEFAULT_VAR_DIR = (REPO / "var" / "bench-highlights").resolve()
DOMAIN = "bench.example.org"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="benchmarks/highlights.py",
        description=(
            "On a database with the demo newsroom plus --subscribers active subscribers (--with-positions "
            "of them with accounts holding positions in the demo's open markets), build one weekly "
            "highlights issue and send it over SMTP to an aiosmtpd sink in a separate process that "
            "counts the messages it accepts; print the build time and emails per minute (aim: 10,000/min). "
            "Each run builds and sends a fresh issue; the subscribers are made once."
        ),
        epilog="Results: docs/performance.md (section Weekly highlights (issue 6)).",
    )
    parser.add_argument("--database-url", metavar="URL", default="", help="PostgreSQL URL of a dedicated benchmark database (created when missing); default SQLite in --var-dir")
    parser.add_argument("--var-dir", metavar="DIR", type=Path, default=DEFAULT_VAR_DIR, help="BELLWETHER_VAR_DIR for the benchmark (default: %(default)s)")
    parser.add_argument("--subscribers", type=int, default=10_000, help="active subscribers (default: %(default)s)")
    parser.add_argument("--with-positions", type=int, default=1_000, help="subscribers with an account holding positions (default: %(default)s)")
    parser.add_argument("--batch-size", type=int, default=200, help="messages per SMTP connection (default: %(default)s)")
    parser.add_argument("--rebuild", action="store_true", help="start from an empty database")
    return parser.parse_args(argv)


def step(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def run_sink(port: int, counter, ready) -> None:
    """Run an SMTP server on 127.0.0.1:``port`` that accepts and counts every message."""
    from aiosmtpd.controller import Controller

    class Counting:
        async def handle_DATA(self, server, session, envelope):
            with counter.get_lock():
                counter.value += 1
            return "250 OK"

    controller = Controller(Counting(), hostname="127.0.0.1", port=port)
    controller.start()
    ready.set()
    try:
        while True:
            time.sleep(3600)
    finally:
        controller.stop()


def ensure_subscribers(count: int, with_positions: int) -> None:
    """Create the subscribers (and accounts with positions) once; positions are written directly, as fixture data."""
    from django.contrib.auth import get_user_model
    from django.contrib.auth.hashers import make_password

    from bellwether.highlights.models import Subscriber
    from bellwether.markets.models import Market, Outcome, Position

    if Subscriber.objects.filter(email__endswith=f"@{DOMAIN}", status=Subscriber.Status.ACTIVE).count() >= count:
        return
    step(f"creating {count:,} subscribers, {with_positions:,} with accounts and positions")
    User = get_user_model()
    unusable = make_password(None)
    users = [User(username=f"hl-bench-{i}", email=f"reader{i}@{DOMAIN}", password=unusable) for i in range(with_positions)]
    User.objects.bulk_create(users, ignore_conflicts=True, batch_size=1000)
    user_ids = dict(User.objects.filter(username__startswith="hl-bench-").values_list("username", "id"))
    outcomes = list(Outcome.objects.filter(market__status=Market.Status.OPEN).values_list("id", "market_id"))
    rng = random.Random(6)
    positions = []
    for i in range(with_positions):
        for outcome_id, market_id in rng.sample(outcomes, min(3, len(outcomes))):
            shares = rng.randint(1, 50) * 1_000_000
            positions.append(Position(user_id=user_ids[f"hl-bench-{i}"], outcome_id=outcome_id, market_id=market_id,
                                      shares_micro=shares, cost_basis_micro=shares // 2, spent_micro=shares // 2))
    Position.objects.bulk_create(positions, ignore_conflicts=True, batch_size=1000)
    subscribers = [
        Subscriber(email=f"reader{i}@{DOMAIN}", status=Subscriber.Status.ACTIVE,
                   user_id=user_ids.get(f"hl-bench-{i}"), source="benchmark")
        for i in range(count)
    ]
    Subscriber.objects.bulk_create(subscribers, ignore_conflicts=True, batch_size=1000)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    args.var_dir = args.var_dir.resolve()
    prepare_database(args, example_name="bellwether_bench_highlights")
    env = base_env(args, unset=("EMAIL_HOST", "EMAIL_PORT", "EMAIL_BACKEND", "EMAIL_USE_TLS", "EMAIL_HOST_USER", "EMAIL_HOST_PASSWORD"))

    port = free_port()
    counter = multiprocessing.Value("q", 0)
    ready = multiprocessing.Event()
    sink = multiprocessing.Process(target=run_sink, args=(port, counter, ready), daemon=True)
    sink.start()
    if not ready.wait(15):
        sys.exit("the SMTP sink did not start")

    env.update({"EMAIL_HOST": "127.0.0.1", "EMAIL_PORT": str(port), "SITE_URL": f"https://{DOMAIN}"})
    step("migrating")
    start_django(env)
    from bellwether.markets.models import Market

    if not Market.objects.exists():
        step("loading the demo (bellwether demo --no-serve)")
        result = subprocess.run(bellwether_command() + ["demo", "--no-serve"], env=env, cwd=REPO, capture_output=True, text=True)
        if result.returncode != 0:
            sys.exit(f"demo failed:\n{result.stdout[-2000:]}\n{result.stderr[-2000:]}")
    ensure_subscribers(args.subscribers, args.with_positions)

    from django.db import connection

    from bellwether.highlights import building, sending
    from bellwether.highlights.models import Subscriber

    active = Subscriber.objects.filter(status=Subscriber.Status.ACTIVE).count()
    step(f"building an issue ({connection.vendor}, {active:,} active subscribers)")
    started = time.perf_counter()
    issue = building.build_issue()
    build_s = time.perf_counter() - started

    from tqdm import tqdm

    step(f"sending issue #{issue.number} in batches of {args.batch_size}")
    started = time.perf_counter()
    issue = sending.start_sending(issue)
    total = sending.due_count(issue=issue)
    with tqdm(total=total, unit="email", file=sys.stderr, mininterval=1.0) as bar:
        summary = sending.send_issue(issue=issue, batch_size=args.batch_size, progress=lambda outcome: bar.update(1))
    send_s = time.perf_counter() - started
    time.sleep(0.5)
    received = counter.value
    sink.terminate()

    per_minute = summary.sent / send_s * 60 if send_s else 0.0
    print()
    print(f"database          {connection.vendor}")
    print(f"subscribers       {total:,} ({args.with_positions:,} with positions)")
    print(f"build issue       {build_s:.2f} s")
    print(f"send              {send_s:.1f} s: {summary.as_line()}")
    print(f"received by sink  {received:,}")
    print(f"emails/minute     {per_minute:,.0f} (aim 10,000)")
    if received != summary.sent:
        sys.exit(1)


if __name__ == "__main__":
    main()
