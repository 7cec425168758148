from __future__ import annotations

import signal
import threading
import time

from django.core.management.base import BaseCommand, CommandError

from bellwether.commands import DetailedHelp
from bellwether.markets.simulation import USERNAME_PREFIX, Simulation, ensure_traders, run

DETAILS = f"""\
Each simulated trader has its own account (usernames {USERNAME_PREFIX}ana, {USERNAME_PREFIX}bo, ...,
created with the starting balance the first time) and trades the markets that
are open through the same trade service as people: every rule, lock and ledger
line applies, and `bellwether audit` covers their trades. Drafts, closed,
resolved and cancelled markets are never traded.

Behaviour: every trader holds a noisy, drifting belief about each market. It
buys the outcome that looks cheapest against that belief with a modest budget
(1 to 18 credits, never more than a tenth of its cash), sells part of a
holding that looks overpriced, and now and then takes profit. A trader short
of cash sells half of its largest holding, or waits. Some markets draw more
interest than others.

Output: a line when the traders start and a summary when they stop; -v 2
adds a line per trade, -v 0 prints only errors. Ctrl-C or SIGTERM stops them cleanly after the trade
in progress.

Examples:
  bellwether simulate                          3 traders, about 30 trades a minute, until stopped
  bellwether simulate --traders 10 --rate 120 --duration 300 -v 2
  bellwether simulate --seed 7 --steps 200     the same 200 decisions on the same data
"""


class Command(DetailedHelp, BaseCommand):
    help = "Run simulated traders that trade the open markets, so a demo site looks alive."

    details = DETAILS

    def add_arguments(self, parser):
        parser.add_argument("--traders", type=int, default=3, metavar="N", help="how many simulated traders (default 3)")
        parser.add_argument(
            "--rate", type=float, default=30.0, metavar="TRADES_PER_MIN",
            help="decisions per minute, all traders together (default 30); a trader who sees no bargain passes, so trades are somewhat fewer",
        )
        parser.add_argument("--duration", type=float, default=0.0, metavar="S", help="stop after S seconds (default 0: run until stopped)")
        parser.add_argument("--steps", type=int, default=0, metavar="N", help="stop after N decisions (default 0: no limit)")
        parser.add_argument("--seed", type=int, default=None, metavar="K", help="seed the randomness: the same seed on the same data makes the same trades")

    def handle(self, *args, traders, rate, duration, steps, seed, verbosity, **options):
        if traders < 1:
            raise CommandError("--traders must be at least 1")
        if rate <= 0:
            raise CommandError("--rate must be positive")
        if duration < 0 or steps < 0:
            raise CommandError("--duration and --steps cannot be negative")
        people = ensure_traders(count=traders)
        simulation = Simulation(traders=people, seed=seed)
        stop = threading.Event()
        previous = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGINT, signal.SIGTERM)}
        names = ", ".join(p.get_username() for p in people[:5]) + (", ..." if len(people) > 5 else "")
        if verbosity >= 1:
            self.stdout.write(
                f"{traders} simulated trader(s) ({names}) trading about {rate:g} times a minute"
                + (f" for {duration:g} s" if duration else "")
                + "; Ctrl-C stops them."
            )

        def on_trade(trade):
            if verbosity >= 2:
                self.stdout.write(f"{time.strftime('%H:%M:%S')} #{trade.trade_id} {trade.describe()}")

        def on_error(exc):
            self.stderr.write(self.style.WARNING(f"database error, retrying: {exc}"))

        started = time.monotonic()
        try:
            tally = run(simulation, rate_per_min=rate, duration_s=duration, steps=steps, stop=stop, on_trade=on_trade, on_error=on_error, seed=seed)
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        if verbosity < 1:
            return
        self.stdout.write(
            f"Simulated traders stopped after {time.monotonic() - started:.0f} s: {tally.trades} trades "
            f"({tally.buys} buys, {tally.sells} sells, {tally.volume_micro / 1_000_000:,.2f} credits), "
            f"{tally.passes} passes, {tally.waits} waits for cash, {tally.refused} refused"
            + (f", {tally.errors} database errors" if tally.errors else "")
            + "."
        )
