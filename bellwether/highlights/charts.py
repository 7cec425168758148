"""Small PNG price charts for the email: one per mover, drawn with Pillow.

Email clients show neither JavaScript nor SVG, so each mover's week is a
PNG of ``WIDTH`` x ``HEIGHT`` pixels, shown at half size in the email for
sharp lines on high-density screens. It is drawn at twice that size again
and scaled down, which smooths the line without needing anti-aliased
drawing. The y axis is the probability, 0% at the bottom and 100% at the
top, with guides at 0, 50 and 100.
"""

from __future__ import annotations

import io

from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from PIL import Image, ImageDraw, ImageFont

WIDTH, HEIGHT = 560, 160  # stored size; the email shows it at 280 x 80
DISPLAY_WIDTH, DISPLAY_HEIGHT = WIDTH // 2, HEIGHT // 2
SUPERSAMPLE = 2
# Plot area inside the stored image: room for the axis labels on the left
# and the end label on the right.
LEFT, RIGHT, TOP, BOTTOM = 56, 64, 14, 14

BACKGROUND = (255, 255, 255)
GUIDE = (226, 230, 236)
AXIS_TEXT = (120, 128, 140)
UP = (22, 128, 78)
DOWN = (200, 50, 50)
FLAT = (37, 99, 235)


def chart_path(*, number: int, slug: str) -> str:
    """Return the storage name of a mover's chart in issue ``number``."""
    return f"highlights/{number}/{slug}.png"


def plot_y(probability: float, *, height: int = HEIGHT) -> float:
    """Return the y pixel (from the top) of ``probability`` in an image ``height`` tall.

    >>> plot_y(1.0), plot_y(0.0), plot_y(0.5)
    (14.0, 146.0, 80.0)
    """
    scale = height / HEIGHT
    top, bottom = TOP * scale, height - BOTTOM * scale
    p = min(1.0, max(0.0, float(probability)))
    return bottom - p * (bottom - top)


def plot_x(i: int, count: int, *, width: int = WIDTH) -> float:
    """Return the x pixel of point ``i`` of ``count``, spread evenly over the plot area.

    >>> plot_x(0, 3), plot_x(2, 3)
    (56.0, 496.0)
    """
    scale = width / WIDTH
    left, right = LEFT * scale, width - RIGHT * scale
    return left if count < 2 else left + i * (right - left) / (count - 1)


def _font(size: int):
    return ImageFont.load_default(size=size)


def render_chart(series: list[float]) -> bytes:
    """Return PNG bytes of a line chart of ``series`` (probabilities from 0 to 1, oldest first)."""
    series = [min(1.0, max(0.0, float(v))) for v in series] or [0.5]
    if len(series) == 1:
        series = series * 2
    s = SUPERSAMPLE
    w, h = WIDTH * s, HEIGHT * s
    image = Image.new("RGB", (w, h), BACKGROUND)
    draw = ImageDraw.Draw(image)
    label_font = _font(11 * s)
    value_font = _font(13 * s)

    for level in (0.0, 0.5, 1.0):
        y = plot_y(level, height=h)
        draw.line([(LEFT * s, y), (w - RIGHT * s, y)], fill=GUIDE, width=s)
        draw.text((LEFT * s - 8 * s, y), f"{round(level * 100)}%", fill=AXIS_TEXT, font=label_font, anchor="rm")

    change = series[-1] - series[0]
    colour = UP if change >= 0.005 else DOWN if change <= -0.005 else FLAT
    shade = tuple(round(c + (255 - c) * 0.85) for c in colour)
    points = [(plot_x(i, len(series), width=w), plot_y(v, height=h)) for i, v in enumerate(series)]
    floor = plot_y(0.0, height=h)
    draw.polygon([(points[0][0], floor), *points, (points[-1][0], floor)], fill=shade)
    draw.line(points, fill=colour, width=3 * s, joint="curve")
    for x, y in (points[0], points[-1]):
        draw.ellipse([x - 4 * s, y - 4 * s, x + 4 * s, y + 4 * s], fill=colour)

    start_label, end_label = f"{round(series[0] * 100)}%", f"{round(series[-1] * 100)}%"
    # The start value sits above its point unless that would leave the image.
    sx, sy = points[0]
    draw.text((sx + 8 * s, sy - 8 * s if sy > 24 * s else sy + 8 * s), start_label, fill=AXIS_TEXT, font=value_font, anchor="ls" if sy > 24 * s else "lt")
    ex, ey = points[-1]
    draw.text((ex + 10 * s, ey), end_label, fill=colour, font=value_font, anchor="lm")

    image = image.resize((WIDTH, HEIGHT), Image.Resampling.LANCZOS)
    out = io.BytesIO()
    image.save(out, format="PNG", optimize=True)
    return out.getvalue()


def store_chart(*, number: int, slug: str, series: list[float]) -> str:
    """Draw the chart and store it (replacing an earlier one); return its file name, ``<slug>.png``."""
    name = chart_path(number=number, slug=slug)
    if default_storage.exists(name):
        default_storage.delete(name)
    default_storage.save(name, ContentFile(render_chart(series)))
    return f"{slug}.png"
