from __future__ import annotations

from bellwether.ledger.models import Account


def account_summary(request) -> dict:
    """Add the signed-in reader's cash balance (micro-credits), read only if a template shows it."""
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return {}
    # A callable: the template calls it, so pages that do not show it pay nothing.
    return {"nav_balance_micro": lambda: _balance(user)}


def _balance(user) -> int:
    return Account.objects.filter(user=user).values_list("balance_micro", flat=True).first() or 0
