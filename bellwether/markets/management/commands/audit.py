from __future__ import annotations

import sys

from django.core.management.base import BaseCommand

from bellwether.ledger.services import format_micro
from bellwether.markets.audit import run_audit


class Command(BaseCommand):
    help = (
        "Check the money: recompute every balance from the transfers, check debits equal credits, "
        "positions equal the sum of their trades, and each open market's pool covers its largest possible payout. "
        "Prints a summary; exits 1 on any mismatch."
    )

    def handle(self, *args, **options):
        report = run_audit()
        self.stdout.write(
            f"{report.accounts} accounts, {report.transfers} transfers, balances sum to {format_micro(report.total_micro)} credits"
        )
        if report.problems:
            for problem in report.problems:
                self.stderr.write(self.style.ERROR(f"mismatch: {problem}"))
            self.stderr.write(self.style.ERROR(f"audit failed: {len(report.problems)} problem(s)"))
            sys.exit(1)
        self.stdout.write(self.style.SUCCESS("audit passed"))
