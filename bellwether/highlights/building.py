"""Build a weekly issue: compute the week's sections once and freeze them in ``Issue.content``.

``build_issue`` reads the week ending at ``now`` (seven days) and writes the
sections as JSON, so the email and the web page show the odds as they were
when the issue was built, however the markets move afterwards. Rebuilding
an unsent issue computes everything again; an issue that is sending or sent
is never rebuilt (``IssueAlreadySent``).

Every item has a key, ``"article:<id>"`` or ``"market:<id>"``. An editor's
pins (``Issue.pinned``) put items first in their section, in pin order, and
keep them even past the section's limit; drops (``Issue.dropped``) leave
items out. A pinned market that is in no section joins the movers.

The frozen JSON (``Issue.content``), every time an ISO 8601 string in UTC,
every probability a float from 0 to 1 rounded to 4 places, every amount an
integer of micro-credits, every ``url`` a path under the site root (the
email prefixes ``settings.SITE_URL``)::

    {
      "version": 1,
      "number": 12,
      "week_start": "2026-11-13T07:00:00+00:00",
      "week_end": "2026-11-20T07:00:00+00:00",
      "built_at": "2026-11-20T07:00:00+00:00",
      "headlines": [                      # about 8: pinned, featured, then most linked and traded
        {"key": "article:12", "id": 12, "title": "...", "dek": "...", "url": "/world/story/",
         "section": "World", "published_at": "...", "kind": "news", "featured": true,
         "market_count": 2, "week_trades": 31}
      ],
      "insights": [                       # analysis and expert insight pieces of the week
        {"key": "article:15", "id": 15, "title": "...", "dek": "...", "url": "...", "kind": "insight",
         "published_at": "...",
         "expert": {"name": "...", "credentials": "...", "url": "/experts/ada/"} | null,
         "forecasts": [{"market": "slug", "question": "...", "url": "/markets/slug/",
                        "outcome": "yes", "probability": 0.3, "stated_at": "..."}]}
      ],
      "movers": [                         # biggest absolute change of YES (binary) or the leader
        {"key": "market:7", "id": 7, "slug": "...", "question": "...", "url": "/markets/slug/",
         "outcome": "YES", "start": 0.42, "end": 0.61, "change": 0.19,
         "week_trades": 14, "week_volume_micro": 52000000,
         "chart": "slug.png",              # highlights/<number>/<slug>.png in default storage, or null
         "series": [0.42, 0.45, ..., 0.61]}  # the focus outcome's price, start to end (at most 57 points)
      ],
      "closing_soon": [                   # trading markets closing within 7 days, soonest first
        {"key": "market:9", "id": 9, "slug": "...", "question": "...", "url": "...",
         "outcome": "YES", "probability": 0.73, "close_at": "..."}
      ],
      "resolved": [                       # resolved or cancelled during the week, latest first
        {"key": "market:4", "id": 4, "slug": "...", "question": "...", "url": "...",
         "resolved_at": "...", "status": "resolved" | "cancelled",
         "result": "YES" | "<outcome name>" | "Resolved to probabilities" | "Cancelled (N/A)",
         "winner": "yes" | null,          # outcome slug when one outcome won
         "price_before": 0.81 | null,     # the winner's probability a day before resolution
         "called": true | false | null}   # the winner led a day before
      ],
      "stats": {"trades": 120, "volume_micro": 845000000, "traders": 17,
                "markets_traded": 9, "new_markets": 2, "resolved": 3}
    }
"""

from __future__ import annotations

import datetime as dt
import logging

from django.core.exceptions import FieldDoesNotExist
from django.db import transaction
from django.db.models import Count, JSONField, Max, OuterRef, Prefetch, Q, Subquery, Sum
from django.db.models.functions import TruncHour
from django.utils import timezone

from bellwether.markets.models import Market, MarketArticle, Outcome, Trade
from bellwether.news.models import ArticlePage
from bellwether.news.selectors import attach_sections

from .models import Issue

logger = logging.getLogger(__name__)

WEEK = dt.timedelta(days=7)
DAY = dt.timedelta(days=1)
CLOSING_WINDOW = dt.timedelta(days=7)
HEADLINE_COUNT = 8
INSIGHT_COUNT = 6
MOVER_COUNT = 5
CLOSING_COUNT = 6
RESOLVED_COUNT = 6
MIN_MOVE = 0.005  # a move that rounds to 0 points is no move
SERIES_STEP = dt.timedelta(hours=3)
INSIGHT_KINDS = ("insight", "analysis")
CONTENT_VERSION = 1


class IssueAlreadySent(Exception):
    """The issue is sending or sent: its content is final and cannot be rebuilt."""


# --- small helpers ---------------------------------------------------------


def _iso(when) -> str | None:
    return when.astimezone(dt.timezone.utc).isoformat() if when else None


def _p(value) -> float | None:
    return None if value is None else round(float(value), 4)


def _last_probs(*, before=None, before_ref=None) -> Subquery:
    """Return a subquery: the market's outcome prices after its last trade at or before a time."""
    trades = Trade.objects.filter(market_id=OuterRef("pk"))
    if before is not None:
        trades = trades.filter(created_at__lte=before)
    if before_ref is not None:
        trades = trades.filter(created_at__lte=before_ref)
    return Subquery(trades.order_by("-created_at", "-id").values("probabilities_after")[:1], output_field=JSONField())


def _focus(market: Market, outcomes: list[Outcome], probs: list[float]) -> int:
    """Return the index shown for a market: YES for a binary market, else the leader (first on a tie)."""
    if market.kind == Market.Kind.BINARY:
        return next((i for i, o in enumerate(outcomes) if o.slug == "yes"), 0)
    return max(range(len(probs)), key=lambda i: (probs[i], -i))


def _label(market: Market, outcome: Outcome) -> str:
    return "YES" if market.kind == Market.Kind.BINARY else outcome.name


def _arrange(items: list[dict], *, limit: int, pinned: list[str], dropped: set[str]) -> list[dict]:
    """Return ``items`` without dropped keys, pinned keys first in pin order, cut at ``limit`` (pins always kept)."""
    kept = [item for item in items if item["key"] not in dropped]
    by_key = {item["key"]: item for item in kept}
    first = [by_key[key] for key in pinned if key in by_key]
    rest = [item for item in kept if item["key"] not in pinned]
    return first + rest[: max(0, limit - len(first))]


def _key_ids(keys, prefix: str) -> list[int]:
    ids = []
    for key in keys:
        kind, _, ident = str(key).partition(":")
        if kind == prefix and ident.isdigit():
            ids.append(int(ident))
    return ids


def _has_field(model, name: str) -> bool:
    try:
        model._meta.get_field(name)
    except FieldDoesNotExist:
        return False
    return True


def _forecast_relation():
    """Return the article's reverse relation to expert forecasts, if a forecast model points at articles."""
    for rel in ArticlePage._meta.related_objects:
        if "forecast" in rel.related_model.__name__.lower():
            return rel
    return None


# --- sections ---------------------------------------------------------------


def _week_market_activity(*, start, end) -> dict[int, dict]:
    """Return {market id: {"trades", "volume_micro"}} for trades in (start, end]."""
    rows = (
        Trade.objects.filter(created_at__gt=start, created_at__lte=end)
        .values("market_id").annotate(trades=Count("id"), volume=Sum("amount_micro")).order_by()
    )
    return {r["market_id"]: {"trades": r["trades"], "volume_micro": int(r["volume"] or 0)} for r in rows}


def _article_queryset():
    # The byline is prefetched because an insight's expert comes from it
    # (ArticlePage.expert reads authors.all()), or from a foreign key.
    qs = ArticlePage.objects.live().public().prefetch_related("authors")
    if _has_field(ArticlePage, "expert"):
        qs = qs.select_related("expert")
    rel = _forecast_relation()
    if rel is not None:
        joined = [name for name in ("market", "outcome") if _has_field(rel.related_model, name)]
        qs = qs.prefetch_related(Prefetch(rel.get_accessor_name(), queryset=rel.related_model.objects.select_related(*joined)))
    return qs


def _article_kind(article) -> str:
    return getattr(article, "kind", None) or "news"


def _article_items(*, start, end, activity, pinned_ids: list[int], dropped: set[str]) -> tuple[list[dict], list[dict]]:
    """Return (headline candidates, insight candidates) for articles published in the week or pinned."""
    in_week = Q(published_at__gt=start, published_at__lte=end)
    articles = list(
        _article_queryset().filter(in_week | Q(pk__in=pinned_ids))
        .order_by("-published_at", "-id")
    )
    articles = [a for a in articles if f"article:{a.pk}" not in dropped]
    attach_sections(articles)
    links: dict[int, list[int]] = {}
    for article_id, market_id in (
        MarketArticle.objects.filter(article_id__in=[a.pk for a in articles])
        .exclude(market__status=Market.Status.DRAFT).values_list("article_id", "market_id")
    ):
        links.setdefault(article_id, []).append(market_id)
    tagged_insight: set[int] = set()
    has_kind = _has_field(ArticlePage, "kind")
    if not has_kind and articles:
        tagged_insight = set(
            ArticlePage.tags.through.objects.filter(
                content_object_id__in=[a.pk for a in articles], tag__slug__in=INSIGHT_KINDS,
            ).values_list("content_object_id", flat=True)
        )
    rel = _forecast_relation()
    forecasts_by_article: dict[int, list] = {}
    if rel is not None:
        for article in articles:
            forecasts_by_article[article.pk] = sorted(
                getattr(article, rel.get_accessor_name()).all(), key=lambda f: (getattr(f, "stated_at", None) is None, getattr(f, "pk", 0))
            )

    headlines, insights = [], []
    for article in articles:
        kind = _article_kind(article)
        is_insight = kind in INSIGHT_KINDS if has_kind else article.pk in tagged_insight
        if is_insight and not has_kind:
            kind = "insight"
        market_ids = links.get(article.pk, [])
        item = {
            "key": f"article:{article.pk}",
            "id": article.pk,
            "title": article.title,
            "dek": article.dek or "",
            "url": article.url or "",
            "section": article.section.title if getattr(article, "section", None) else "",
            "published_at": _iso(article.published_at),
            "kind": kind,
            "featured": bool(article.featured),
            "market_count": len(market_ids),
            "week_trades": sum(activity.get(m, {}).get("trades", 0) for m in market_ids),
        }
        if is_insight:
            item["expert"] = _expert(article)
            item["forecasts"] = [_forecast(f) for f in forecasts_by_article.get(article.pk, [])]
            insights.append(item)
        else:
            headlines.append(item)
    pinned_rank = {pk: i for i, pk in enumerate(pinned_ids)}
    headlines.sort(key=lambda h: (
        not h["featured"], -h["market_count"], -h["week_trades"], -_ts(h["published_at"]), -h["id"],
    ))
    insights.sort(key=lambda h: (pinned_rank.get(h["id"], len(pinned_rank)), -_ts(h["published_at"]), -h["id"]))
    return headlines, insights


def _ts(iso: str | None) -> float:
    return dt.datetime.fromisoformat(iso).timestamp() if iso else 0.0


def _expert(article) -> dict | None:
    expert = getattr(article, "expert", None)
    if expert is None:
        return None
    url = ""
    if hasattr(expert, "get_absolute_url"):
        try:
            url = expert.get_absolute_url()
        except Exception:  # a profile page that cannot be reversed is shown without a link
            logger.exception("no profile url for expert %s", getattr(expert, "pk", None))
    return {"name": getattr(expert, "name", str(expert)), "credentials": getattr(expert, "credentials", "") or "", "url": url}


def _forecast(forecast) -> dict:
    market = getattr(forecast, "market", None)
    probability = getattr(forecast, "probability", None)
    if probability is None and getattr(forecast, "probability_micro", None) is not None:
        probability = forecast.probability_micro / 1_000_000
    outcome = getattr(forecast, "outcome", None)
    outcome_slug = getattr(outcome, "slug", outcome) if outcome is not None else None
    return {
        "market": market.slug if market else "",
        "question": market.question if market else "",
        "url": market.get_absolute_url() if market else "",
        "outcome": outcome_slug if isinstance(outcome_slug, str) else None,
        "probability": _p(probability),
        "stated_at": _iso(getattr(forecast, "stated_at", None) or getattr(forecast, "created_at", None)),
    }


def _markets_with_outcomes(qs):
    markets = list(qs)
    outcomes: dict[int, list[Outcome]] = {}
    if markets:
        for o in Outcome.objects.filter(market_id__in=[m.pk for m in markets]).order_by("market_id", "position"):
            outcomes.setdefault(o.market_id, []).append(o)
    return [(m, outcomes.get(m.pk, [])) for m in markets if outcomes.get(m.pk)]


def _series(*, market_ids: list[int], start, end) -> dict[int, list[tuple]]:
    """Return {market id: [(time, probabilities)]}: the last trade of each hour in (start, end], one query."""
    if not market_ids:
        return {}
    hourly_last = (
        Trade.objects.filter(market_id__in=market_ids, created_at__gt=start, created_at__lte=end)
        .annotate(hour=TruncHour("created_at", tzinfo=dt.timezone.utc))
        .values("market_id", "hour").annotate(last_id=Max("id")).values("last_id")
    )
    points: dict[int, list[tuple]] = {}
    for market_id, at, probs in (
        Trade.objects.filter(pk__in=hourly_last).order_by("created_at", "id").values_list("market_id", "created_at", "probabilities_after")
    ):
        points.setdefault(market_id, []).append((at, probs))
    return points


def _stepped(points: list[tuple], *, index: int, start, end, start_value: float) -> list[float]:
    """Return the focus price at ``start``, at every SERIES_STEP, and at ``end`` (the last trade at or before each)."""
    values, current, i = [start_value], start_value, 0
    boundary = start + SERIES_STEP
    while boundary < end:
        while i < len(points) and points[i][0] <= boundary:
            current = points[i][1][index]
            i += 1
        values.append(round(current, 4))
        boundary += SERIES_STEP
    if points:
        current = points[-1][1][index]
    values.append(round(current, 4))
    return values


def _mover_items(*, start, end, activity, pinned_ids: list[int]) -> list[dict]:
    ids = set(activity) | set(pinned_ids)
    if not ids:
        return []
    qs = (
        Market.objects.filter(pk__in=ids).exclude(status=Market.Status.DRAFT)
        .annotate(start_probs=_last_probs(before=start), end_probs=_last_probs(before=end))
    )
    items = []
    for market, outcomes in _markets_with_outcomes(qs):
        uniform = [1 / len(outcomes)] * len(outcomes)
        end_probs = market.end_probs or uniform
        start_probs = market.start_probs or uniform
        index = _focus(market, outcomes, end_probs)
        change = end_probs[index] - start_probs[index]
        if abs(change) < MIN_MOVE and market.pk not in pinned_ids:
            continue
        week = activity.get(market.pk, {"trades": 0, "volume_micro": 0})
        items.append({
            **_market_fields(market),
            "outcome": _label(market, outcomes[index]),
            "start": _p(start_probs[index]),
            "end": _p(end_probs[index]),
            "change": _p(change),
            "week_trades": week["trades"],
            "week_volume_micro": week["volume_micro"],
            "chart": None,
            "series": [],
            "_index": index,
            "_start_value": start_probs[index],
            "_from": max(start, market.created_at),
        })
    items.sort(key=lambda m: (-abs(m["change"]), -m["week_volume_micro"], -m["id"]))
    return items


def _market_fields(market: Market) -> dict:
    """Return what every market item in an issue carries: its key, id, slug, question and address."""
    return {
        "key": f"market:{market.pk}",
        "id": market.pk,
        "slug": market.slug,
        "question": market.question,
        "url": market.get_absolute_url(),
    }


def _closing_items(*, now) -> list[dict]:
    qs = (
        Market.objects.filter(status=Market.Status.OPEN, close_at__gt=now, close_at__lte=now + CLOSING_WINDOW)
        .annotate(end_probs=_last_probs(before=now)).order_by("close_at", "id")[: CLOSING_COUNT * 3]
    )
    items = []
    for market, outcomes in _markets_with_outcomes(qs):
        probs = market.end_probs or [1 / len(outcomes)] * len(outcomes)
        index = _focus(market, outcomes, probs)
        items.append({
            **_market_fields(market),
            "outcome": _label(market, outcomes[index]),
            "probability": _p(probs[index]),
            "close_at": _iso(market.close_at),
        })
    return items


def _resolved_items(*, start, end) -> list[dict]:
    qs = (
        Market.objects.filter(status__in=(Market.Status.RESOLVED, Market.Status.CANCELLED), resolved_at__gt=start, resolved_at__lte=end)
        .annotate(before_probs=_last_probs(before_ref=OuterRef("resolved_at") - DAY))
        .order_by("-resolved_at", "-id")[: RESOLVED_COUNT * 3]
    )
    items = []
    for market, outcomes in _markets_with_outcomes(qs):
        resolution = market.resolution or {}
        winner = resolution.get("outcome") if market.status == Market.Status.RESOLVED else None
        slugs = [o.slug for o in outcomes]
        price_before = called = None
        if market.status == Market.Status.CANCELLED:
            result = "Cancelled (N/A)"
        elif winner in slugs:
            index = slugs.index(winner)
            result = _label(market, outcomes[index]) if market.kind == Market.Kind.MULTIPLE else outcomes[index].name.upper()
            probs = market.before_probs or [1 / len(outcomes)] * len(outcomes)
            price_before = _p(probs[index])
            called = probs[index] == max(probs) and probs.count(max(probs)) == 1
        else:
            result = "Resolved to probabilities"
            winner = None
        items.append({
            **_market_fields(market),
            "resolved_at": _iso(market.resolved_at),
            "status": market.status,
            "result": result,
            "winner": winner,
            "price_before": price_before,
            "called": called,
        })
    return items


def _stats(*, start, end, activity) -> dict:
    traders = Trade.objects.filter(created_at__gt=start, created_at__lte=end).values("user_id").distinct().count()
    counts = Market.objects.exclude(status=Market.Status.DRAFT).aggregate(
        new=Count("id", filter=Q(created_at__gt=start, created_at__lte=end)),
        resolved=Count("id", filter=Q(resolved_at__gt=start, resolved_at__lte=end)),
    )
    return {
        "trades": sum(a["trades"] for a in activity.values()),
        "volume_micro": sum(a["volume_micro"] for a in activity.values()),
        "traders": traders,
        "markets_traded": len(activity),
        "new_markets": counts["new"],
        "resolved": counts["resolved"],
    }


def compute_sections(*, now, number: int, pinned=(), dropped=()) -> tuple[dict, dict[str, dict]]:
    """Return the issue's content (see the module docstring) and, per mover slug, its chart points.

    A fixed number of queries whatever the number of articles and markets.
    """
    start = now - WEEK
    pinned = [str(k) for k in pinned]
    dropped_set = {str(k) for k in dropped}
    pinned_articles = _key_ids(pinned, "article")
    pinned_markets = _key_ids(pinned, "market")
    activity = _week_market_activity(start=start, end=now)

    headlines, insights = _article_items(start=start, end=now, activity=activity, pinned_ids=pinned_articles, dropped=dropped_set)
    closing = _arrange(_closing_items(now=now), limit=CLOSING_COUNT, pinned=pinned, dropped=dropped_set)
    resolved = _arrange(_resolved_items(start=start, end=now), limit=RESOLVED_COUNT, pinned=pinned, dropped=dropped_set)
    placed = {item["key"] for item in closing + resolved}
    settled = {item["key"] for item in resolved}
    movers = _mover_items(start=start, end=now, activity=activity, pinned_ids=pinned_markets)
    # A resolved market is told in its own section; a pinned market shown
    # elsewhere that did not move is not pulled into the movers.
    movers = [m for m in movers if m["key"] not in settled and (abs(m["change"]) >= MIN_MOVE or m["key"] not in placed)]
    movers = _arrange(movers, limit=MOVER_COUNT, pinned=pinned, dropped=dropped_set)

    charts: dict[str, dict] = {}
    points = _series(market_ids=[m["id"] for m in movers], start=start, end=now)
    for mover in movers:
        index, start_value, since = mover.pop("_index"), mover.pop("_start_value"), mover.pop("_from")
        mover["series"] = _stepped(points.get(mover["id"], []), index=index, start=since, end=now, start_value=start_value)
        charts[mover["slug"]] = {"series": mover["series"]}

    content = {
        "version": CONTENT_VERSION,
        "number": number,
        "week_start": _iso(start),
        "week_end": _iso(now),
        "built_at": _iso(now),
        "headlines": _arrange(headlines, limit=HEADLINE_COUNT, pinned=pinned, dropped=dropped_set),
        "insights": _arrange(insights, limit=INSIGHT_COUNT, pinned=pinned, dropped=dropped_set),
        "movers": movers,
        "closing_soon": closing,
        "resolved": resolved,
        "stats": _stats(start=start, end=now, activity=activity),
    }
    return content, charts


def _subject(number: int, content: dict) -> str:
    lead = next(iter(content["headlines"]), None) or next(iter(content["insights"]), None)
    subject = f"Weekly highlights: {lead['title']}" if lead else f"Weekly highlights #{number}"
    return subject if len(subject) <= 200 else subject[:199] + "…"


def build_issue(*, now=None, number=None, intro=None, pinned=None, dropped=None, issue: Issue | None = None) -> Issue:
    """Compute the week's sections as of ``now`` and freeze them in an issue; return the issue.

    With ``issue`` (or the ``number`` of an existing issue) the issue is
    rebuilt; otherwise a new issue takes the next number. ``intro``,
    ``pinned`` and ``dropped`` replace the stored ones when given (None
    keeps them). Raises IssueAlreadySent for an issue that is sending or
    sent. Writes the movers' chart PNGs to the default storage.
    """
    from .charts import store_chart

    now = now or timezone.now()
    with transaction.atomic():
        if issue is None and number is not None:
            issue = Issue.objects.select_for_update().filter(number=number).first()
        elif issue is not None:
            issue = Issue.objects.select_for_update().get(pk=issue.pk)
        if issue is not None and issue.status in (Issue.Status.SENDING, Issue.Status.SENT):
            raise IssueAlreadySent(f"issue #{issue.number} is {issue.status}: a sent issue is never rebuilt")
        if issue is None:
            if number is None:
                number = (Issue.objects.aggregate(top=Max("number"))["top"] or 0) + 1
            issue = Issue(number=number)
        if intro is not None:
            issue.intro = intro
        if pinned is not None:
            issue.pinned = [str(k) for k in pinned]
        if dropped is not None:
            issue.dropped = [str(k) for k in dropped]
        content, charts = compute_sections(now=now, number=issue.number, pinned=issue.pinned, dropped=issue.dropped)
        for mover in content["movers"]:
            mover["chart"] = store_chart(number=issue.number, slug=mover["slug"], series=charts[mover["slug"]]["series"])
        issue.content = content
        issue.subject = _subject(issue.number, content)
        issue.week_start = now - WEEK
        issue.week_end = now
        issue.built_at = now
        issue.status = Issue.Status.BUILT
        issue.save()
    return issue
