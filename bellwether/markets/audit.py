"""The money audit: the ledger's own checks plus every market's.

Checks, each reported with the rows involved:
- every account's balance equals its transfers, balances sum to zero, no
  account but the treasury is negative (bellwether.ledger.selectors);
- every position's shares equal the sum of its trades' fills, and every
  outcome's quantity q_i equals the shares its holders hold;
- every open market's pool covers the largest payout it could owe, max q_i;
- every settled market's pool is empty (its remainder went back).
"""

from __future__ import annotations

from django.db.models import Case, F, IntegerField, Sum, When

from bellwether.ledger.selectors import LedgerAudit, audit_ledger

from .models import Market, Outcome, Position, Trade


def run_audit() -> LedgerAudit:
    """Return the ledger audit extended with the market checks."""
    report = audit_ledger()
    signed = Case(When(side=Trade.Side.BUY, then=F("shares_micro")), default=-F("shares_micro"), output_field=IntegerField())
    fills = {
        (row["user_id"], row["outcome_id"]): row["total"]
        for row in Trade.objects.values("user_id", "outcome_id").annotate(total=Sum(signed))
    }
    held: dict[int, int] = {}
    for position in Position.objects.values("user_id", "outcome_id", "shares_micro").iterator():
        key = (position["user_id"], position["outcome_id"])
        expected = fills.pop(key, 0)
        if position["shares_micro"] != expected:
            report.problems.append(
                f"position of user {key[0]} in outcome {key[1]}: {position['shares_micro']} µ-shares, trades say {expected}"
            )
        held[key[1]] = held.get(key[1], 0) + position["shares_micro"]
    for (user_id, outcome_id), total in fills.items():
        if total:
            report.problems.append(f"trades of user {user_id} in outcome {outcome_id} sum to {total} µ-shares but no position exists")
    for outcome in Outcome.objects.values("id", "shares_micro").iterator():
        if outcome["shares_micro"] != held.get(outcome["id"], 0):
            report.problems.append(
                f"outcome {outcome['id']}: q = {outcome['shares_micro']} µ-shares, holders hold {held.get(outcome['id'], 0)}"
            )
    for market in Market.objects.select_related("pool").iterator():
        biggest = max(market.outcomes.values_list("shares_micro", flat=True), default=0)
        if market.status == Market.Status.OPEN and market.pool.balance_micro < biggest:
            report.problems.append(
                f"market {market.slug}: pool holds {market.pool.balance_micro} µ, could owe {biggest} µ"
            )
        if market.status in (Market.Status.RESOLVED, Market.Status.CANCELLED) and market.pool.balance_micro != 0:
            report.problems.append(f"market {market.slug} is settled but its pool still holds {market.pool.balance_micro} µ")
    return report
