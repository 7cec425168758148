"""Render a built issue as an email: subject, plain text and email-safe HTML.

The HTML uses tables with widths in attributes, CSS inlined by css-inline
(only the dark-mode media query stays in a ``<style>`` block, for the
clients that honour it), PNG charts by absolute URL, and no script or SVG.

Sending goes to thousands of subscribers, so the part every subscriber
shares is rendered and inlined once per issue (``shared_parts``, kept per
process and keyed by the issue's build). Each message only fills in the
subscriber's unsubscribe token and, for a subscriber with an account, a
short section on their open positions, which is a small fragment of its
own. ``positions_by_user`` reads that section for many subscribers in one
query, so a sender can fetch a whole batch at once.
"""

from __future__ import annotations

import datetime as dt
import threading
from dataclasses import dataclass

import css_inline
from django.conf import settings
from django.db.models import Count, IntegerField, JSONField, OuterRef, Subquery
from django.template.loader import render_to_string
from django.urls import reverse

from bellwether.markets.models import Market, Outcome, Position, Trade

from .models import Issue, Subscriber

TOKEN = "BWSUBSCRIBERTOKEN0"  # replaced by each subscriber's token (URL-safe, so no escaping differs)
SLOT_HTML = "BWPERSONALSLOTHTML0"
SLOT_TEXT = "BWPERSONALSLOTTEXT0"
PERSONAL_LIMIT = 10
_INLINER = css_inline.CSSInliner(keep_at_rules=True, load_remote_stylesheets=False)
_CACHE_SIZE = 4


@dataclass(frozen=True)
class SharedParts:
    """The rendered parts of one issue that every subscriber shares, with slots for the rest."""

    subject: str
    html: str
    text: str


_shared_cache: dict[tuple, SharedParts] = {}
_shared_lock = threading.Lock()


def absolute(path: str) -> str:
    """Return ``path`` as an absolute URL under SITE_URL (absolute URLs are returned unchanged)."""
    if not path or path.startswith(("http://", "https://")):
        return path or settings.SITE_URL + "/"
    return settings.SITE_URL + (path if path.startswith("/") else "/" + path)


def _when(iso: str | None):
    return dt.datetime.fromisoformat(iso) if iso else None


def _context(issue: Issue) -> dict:
    """Return the template context for an issue: its frozen content with absolute links and dates."""
    content = issue.content or {}

    def linked(items, **extra):
        out = []
        for item in items:
            row = dict(item)
            row["abs_url"] = absolute(item.get("url", ""))
            for name in ("published_at", "close_at", "resolved_at"):
                if item.get(name):
                    row[name] = _when(item[name])
            for name, build in extra.items():
                row[name] = build(item)
            out.append(row)
        return out

    insights = linked(content.get("insights", []))
    for insight in insights:
        if insight.get("expert") and insight["expert"].get("url"):
            insight["expert"] = {**insight["expert"], "abs_url": absolute(insight["expert"]["url"])}
        insight["forecasts"] = [{**f, "abs_url": absolute(f.get("url", ""))} for f in insight.get("forecasts", [])]
    number = issue.number
    return {
        "issue": issue,
        "site_url": settings.SITE_URL,
        "browser_url": absolute(issue.get_absolute_url()),
        "archive_url": absolute(reverse("highlights:archive")),
        "markets_url": absolute(reverse("markets:index")),
        "unsubscribe_url": absolute(reverse("highlights:unsubscribe", args=[TOKEN])),
        "intro": issue.intro,
        "week_start": _when(content.get("week_start")) or issue.week_start,
        "week_end": _when(content.get("week_end")) or issue.week_end,
        "headlines": linked(content.get("headlines", [])),
        "insights": insights,
        "movers": linked(
            content.get("movers", []),
            chart_url=lambda m: absolute(reverse("highlights:chart", args=[number, m["slug"]])) if m.get("chart") else "",
        ),
        "closing_soon": linked(content.get("closing_soon", [])),
        "resolved": linked(content.get("resolved", [])),
        "stats": content.get("stats", {}),
        "slot_html": SLOT_HTML,
        "slot_text": SLOT_TEXT,
    }


def shared_parts(issue: Issue) -> SharedParts:
    """Return the issue's shared subject, HTML (CSS inlined) and text, rendered once per build of the issue."""
    key = (issue.pk, issue.number, issue.built_at, issue.subject, issue.intro)
    with _shared_lock:
        parts = _shared_cache.get(key)
    if parts is not None:
        return parts
    context = _context(issue)
    html = _INLINER.inline(render_to_string("highlights/email/issue.html", context))
    text = render_to_string("highlights/email/issue.txt", context)
    parts = SharedParts(subject=issue.subject or str(issue), html=html, text=text)
    with _shared_lock:
        if len(_shared_cache) >= _CACHE_SIZE:
            _shared_cache.pop(next(iter(_shared_cache)))
        _shared_cache[key] = parts
    return parts


# --- the personal section ----------------------------------------------------


def _probs_at(when) -> Subquery:
    return Subquery(
        Trade.objects.filter(market_id=OuterRef("market_id"), created_at__lte=when)
        .order_by("-created_at", "-id").values("probabilities_after")[:1],
        output_field=JSONField(),
    )


def positions_by_user(*, issue: Issue, user_ids) -> dict[int, list[dict]]:
    """Return each user's open positions with their change in value over the issue's week, in one query.

    A position's value is its shares times its outcome's price; the change
    is that value at the issue's build (``week_end``) minus the value of
    the same shares at ``week_start``. Markets still open only; largest
    change first, at most PERSONAL_LIMIT per user. Amounts in micro-credits.
    """
    user_ids = [uid for uid in user_ids if uid]
    if not user_ids:
        return {}
    outcome_count = Subquery(
        Outcome.objects.filter(market_id=OuterRef("market_id")).order_by().values("market_id")
        .annotate(n=Count("id")).values("n")[:1],
        output_field=IntegerField(),
    )
    rows = (
        Position.objects.filter(user_id__in=user_ids, shares_micro__gt=0, payout_micro__isnull=True, market__status=Market.Status.OPEN)
        .annotate(start_probs=_probs_at(issue.week_start), end_probs=_probs_at(issue.week_end), outcome_count=outcome_count)
        .values_list(
            "user_id", "shares_micro", "outcome__position", "outcome__name", "market__slug", "market__question",
            "market__kind", "start_probs", "end_probs", "outcome_count",
        )
    )
    result: dict[int, list[dict]] = {}
    for user_id, shares, index, outcome_name, slug, question, kind, start, end, n in rows:
        uniform = 1 / (n or 2)
        start_price = start[index] if start else uniform
        end_price = end[index] if end else uniform
        value_end = shares * end_price
        value_start = shares * start_price
        result.setdefault(user_id, []).append({
            "slug": slug,
            "question": question,
            "url": absolute(reverse("markets:detail", args=[slug])),
            "outcome": outcome_name.upper() if kind == Market.Kind.BINARY else outcome_name,
            "shares_micro": shares,
            "price_start": round(start_price, 4),
            "price_end": round(end_price, 4),
            "value_micro": round(value_end),
            "change_micro": round(value_end) - round(value_start),
        })
    for positions in result.values():
        positions.sort(key=lambda p: (-abs(p["change_micro"]), p["slug"], p["outcome"]))
        del positions[PERSONAL_LIMIT:]
    return result


def _personal(positions: list[dict] | None, *, sample: bool = False) -> tuple[str, str]:
    """Return the (html, text) of the personal section; empty for subscribers without an account."""
    if positions is None:
        return "", ""
    context = {
        "positions": positions,
        "total_value_micro": sum(p["value_micro"] for p in positions),
        "total_change_micro": sum(p["change_micro"] for p in positions),
        "sample": sample,
        "portfolio_url": absolute(reverse("markets:portfolio")),
        "markets_url": absolute(reverse("markets:index")),
    }
    html = _INLINER.inline_fragment(
        render_to_string("highlights/email/_personal.html", context), _PERSONAL_CSS
    )
    return html, render_to_string("highlights/email/_personal.txt", context)


# Kept here rather than in the issue's <style>: the fragment is inlined on its own.
_PERSONAL_CSS = """
.personal { width: 100%; border-collapse: collapse; margin: 0 0 8px 0; }
.personal td { padding: 6px 0; border-bottom: 1px solid #e5e7eb; font-size: 14px; line-height: 20px; color: #111827; }
.personal .num { text-align: right; white-space: nowrap; padding-left: 12px; }
.personal .up { color: #15803d; }
.personal .down { color: #b91c1c; }
.personal .muted { color: #6b7280; font-size: 13px; }
.personal a { color: #1d4ed8; text-decoration: none; }
h2.personal-title { font-size: 18px; line-height: 24px; margin: 24px 0 8px 0; color: #111827; font-family: Georgia, 'Times New Roman', serif; }
p.personal-note { font-size: 13px; line-height: 18px; color: #6b7280; margin: 4px 0 0 0; }
"""


def _fill(parts: SharedParts, *, token: str, personal: tuple[str, str]) -> tuple[str, str, str]:
    html = parts.html.replace(TOKEN, token).replace(SLOT_HTML, personal[0])
    text = parts.text.replace(TOKEN, token).replace(SLOT_TEXT, personal[1])
    return parts.subject, text, html


def render_email(*, issue: Issue, subscriber: Subscriber, positions: list[dict] | None = None) -> tuple[str, str, str]:
    """Return (subject, text, html) of ``issue`` for ``subscriber``.

    A subscriber with an account gets the personal section; pass their
    ``positions`` (from ``positions_by_user``) to save its query when
    sending in batches.
    """
    parts = shared_parts(issue)
    if subscriber.user_id is not None:
        if positions is None:
            positions = positions_by_user(issue=issue, user_ids=[subscriber.user_id]).get(subscriber.user_id, [])
        personal = _personal(positions)
    else:
        personal = ("", "")
    return _fill(parts, token=subscriber.token, personal=personal)


def render_preview(issue: Issue) -> tuple[str, str, str]:
    """Return (subject, text, html) as a subscriber with an account would see it, with a sample personal section."""
    parts = shared_parts(issue)
    sample = []
    for mover in (issue.content or {}).get("movers", [])[:2]:
        shares = 10 * 1_000_000
        value_end, value_start = round(shares * mover["end"]), round(shares * mover["start"])
        sample.append({
            "slug": mover["slug"], "question": mover["question"], "url": absolute(mover["url"]), "outcome": mover["outcome"],
            "shares_micro": shares, "price_start": mover["start"], "price_end": mover["end"],
            "value_micro": value_end, "change_micro": value_end - value_start,
        })
    return _fill(parts, token="preview", personal=_personal(sample, sample=True))
