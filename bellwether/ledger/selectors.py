"""Reads over the ledger: statements and the balance audit."""

from __future__ import annotations

from dataclasses import dataclass, field

from django.db.models import Q, QuerySet, Sum

from .models import Account, Transfer


def account_transfers(*, account: Account) -> QuerySet[Transfer]:
    """Return every transfer into or out of ``account``, newest first."""
    return (
        Transfer.objects.filter(Q(debit=account) | Q(credit=account))
        .select_related("debit", "credit")
        .order_by("-created_at", "-id")
    )


@dataclass
class LedgerAudit:
    accounts: int = 0
    transfers: int = 0
    total_micro: int = 0
    problems: list[str] = field(default_factory=list)


def audit_ledger() -> LedgerAudit:
    """Recompute every balance from the transfers and compare.

    Also checks that balances sum to zero (each transfer's debit equals its
    credit, so the treasury's negative balance mirrors all money issued) and
    that no account but the treasury is negative.
    """
    report = LedgerAudit()
    debits = dict(Transfer.objects.values_list("debit").annotate(total=Sum("amount_micro")))
    credits = dict(Transfer.objects.values_list("credit").annotate(total=Sum("amount_micro")))
    for account in Account.objects.order_by("pk").iterator():
        report.accounts += 1
        expected = credits.get(account.pk, 0) - debits.get(account.pk, 0)
        if expected != account.balance_micro:
            report.problems.append(
                f"account {account.pk} ({account.name}): balance {account.balance_micro} µ, transfers say {expected} µ"
            )
        if account.balance_micro < 0 and account.kind != Account.Kind.TREASURY:
            report.problems.append(f"account {account.pk} ({account.name}) is overdrawn: {account.balance_micro} µ")
        report.total_micro += account.balance_micro
    report.transfers = Transfer.objects.count()
    if report.total_micro != 0:
        report.problems.append(f"balances sum to {report.total_micro} µ, not 0: debits and credits differ")
    return report
