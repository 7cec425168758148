"""Friendly amounts for account pages and messages."""

from __future__ import annotations


def format_whole_credits(amount_micro: int) -> str:
    """Return an amount as friendly credits: whole numbers without decimals.

    >>> format_whole_credits(1_000_000_000), format_whole_credits(2_500_000), format_whole_credits(0)
    ('1,000', '2.50', '0')
    """
    whole, rest = divmod(amount_micro, 1_000_000)
    if rest == 0:
        return f"{whole:,}"
    cents = (amount_micro + 5_000) // 10_000
    return f"{cents // 100:,}.{cents % 100:02d}"
