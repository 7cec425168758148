"""Small charts drawn on the server: inline SVG sparklines, no script needed.

The SVG carries classes only (no style attributes), so it renders under the
site's Content Security Policy; markets-browse.css gives it colour.

>>> sparkline_points([0.4, 0.6], width=100, height=20, pad=0)
'0,20 100,0'
>>> sparkline_points([0.5, 0.5, 0.5], width=100, height=20, pad=0)
'0,10 50,10 100,10'
>>> direction(0.031), direction(-0.2), direction(0.004)
('up', 'down', 'flat')
"""

from __future__ import annotations

from django import template
from django.utils.html import format_html

from .market_format import percent

register = template.Library()

WIDTH = 120
HEIGHT = 32
PAD = 3
# A week that moves a point or two should not fill the whole box and look
# like a crash: the vertical scale always spans at least ten points.
MIN_SPAN = 0.10


def _number(value: float) -> str:
    text = f"{value:.2f}".rstrip("0").rstrip(".")
    return "0" if text in ("", "-0") else text


def _y_range(values: list[float], min_span: float) -> tuple[float, float]:
    """Return the (low, high) probabilities the box spans: the data, widened to ``min_span`` within [0, 1].

    >>> _y_range([0.41, 0.57], 0.1)
    (0.41, 0.57)
    >>> _y_range([0.5, 0.52], 0.1)
    (0.46, 0.56)
    >>> _y_range([0.0, 0.02], 0.1)
    (0.0, 0.1)
    """
    low, high = min(values), max(values)
    if high - low < min_span:
        middle = (low + high) / 2
        low, high = middle - min_span / 2, middle + min_span / 2
        if low < 0:
            low, high = 0.0, min_span
        elif high > 1:
            low, high = 1 - min_span, 1.0
    return round(low, 9), round(high, 9)


def sparkline_points(values, *, width: int = WIDTH, height: int = HEIGHT, pad: int = PAD, min_span: float = MIN_SPAN) -> str:
    """Return SVG polyline points for ``values`` (probabilities), spread evenly across ``width``.

    Higher probabilities sit higher (smaller y); ``pad`` keeps the line's
    ends clear of the box edges.

    >>> sparkline_points([0.2, 0.8, 0.5], width=60, height=30, pad=0, min_span=0)
    '0,30 30,0 60,15'
    >>> sparkline_points([0.7], width=60, height=30, pad=5)
    '0,15 60,15'
    >>> sparkline_points([])
    ''
    """
    values = [float(v) for v in values]
    if not values:
        return ""
    if len(values) == 1:
        values = values * 2
    low, high = _y_range(values, min_span)
    span = (high - low) or 1.0
    inner = height - 2 * pad
    last = len(values) - 1
    points = []
    for i, value in enumerate(values):
        x = width * i / last
        y = pad + (high - value) / span * inner
        points.append(f"{_number(x)},{_number(y)}")
    return " ".join(points)


@register.filter
def direction(change) -> str:
    """Return "up", "down" or "flat" for a change in probability, as it shows in whole points."""
    if change in (None, ""):
        return "flat"
    points = round(float(change) * 100)
    return "up" if points > 0 else "down" if points < 0 else "flat"


@register.simple_tag
def sparkline(values, label: str = "", days: int = 7, width: int = WIDTH, height: int = HEIGHT):
    """Render ``values`` as an inline <svg> line, named for screen readers ("YES 41% → 57% over 7 days").

    The class ends in --up, --down or --flat by the change from the first
    value to the last.
    """
    values = [float(v) for v in values or []]
    if not values:
        return ""
    first, last = values[0], values[-1]
    description = f"{label} {percent(first)} → {percent(last)} over {days} day{'s' if days != 1 else ''}".strip()
    return format_html(
        '<svg class="sparkline sparkline--{}" viewBox="0 0 {} {}" width="{}" height="{}" preserveAspectRatio="none" '
        'role="img" aria-label="{}" focusable="false"><polyline points="{}"/></svg>',
        direction(last - first), width, height, width, height, description, sparkline_points(values, width=width, height=height),
    )
