"""Filters for showing money and odds on pages.

>>> credits(12_500_000), credits(-2_250_000), credits(0)
('12.50', '−2.25', '0.00')
>>> percent(0.4567), percent(0.004), percent(0.999)
('46%', '<1%', '>99%')
>>> points(0.123), points(-0.05), points(0.001)
('+12', '−5', '0')
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
