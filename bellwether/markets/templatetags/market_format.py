"""Filters for showing money and odds on pages.

>>> credits(12_500_000), credits(-2_250_000), credits(0)
('12.50', '−2.25', '0.00')
>>> percent(0.4567), percent(0.004), percent(0.999)
('46%', '<1%', '>99%')
>>> points(0.123), points(-0.05), points(0.001)
('+12', '−5', '0')
>>> signed_credits(1_500_000), signed_credits(-250_000), signed_credits(0)
('+1.50', '−0.25', '0.00')
>>> trend(3), trend(-3), trend(0)
('up', 'down', '')
"""

from __future__ import annotations

from django import template

register = template.Library()
MINUS = "\u2212"


@register.filter
def credits(amount_micro) -> str:
    """Return micro-credits as credits with two decimals (exact amounts stay in the API)."""
    if amount_micro in (None, ""):
        return ""
    value = int(amount_micro)
    sign = MINUS if value < 0 else ""
    # Round half away from zero on the magnitude, so a sign never flips.
    cents = (abs(value) + 5_000) // 10_000
    return f"{sign}{cents // 100:,}.{cents % 100:02d}"


@register.filter
def percent(probability) -> str:
    """Return a probability as a whole percentage, never showing a false 0% or 100%."""
    if probability in (None, ""):
        return ""
    p = float(probability)
    if 0 < p < 0.005:
        return "<1%"
    if 0.995 < p < 1:
        return ">99%"
    return f"{round(p * 100)}%"


@register.filter
def points(change) -> str:
    """Return a change in probability as signed percentage points."""
    if change in (None, ""):
        return ""
    pts = round(float(change) * 100)
    if pts == 0:
        return "0"
    return f"+{pts}" if pts > 0 else f"{MINUS}{abs(pts)}"


@register.filter
def signed_credits(amount_micro) -> str:
    """Return micro-credits like ``credits``, with a plus sign on a gain (profit and loss, ledger amounts)."""
    text = credits(amount_micro)
    return f"+{text}" if text and int(amount_micro) > 0 else text


@register.filter
def trend(amount) -> str:
    """Return the CSS class for a signed amount: "up" above zero, "down" below, "" at zero."""
    if amount in (None, ""):
        return ""
    return "up" if amount > 0 else "down" if amount < 0 else ""
