"""Demo markets: the questions the demo articles raise, with some trading history."""

from __future__ import annotations

import datetime as dt
import random
from pathlib import Path

import yaml
from django.utils import timezone

from bellwether.accounts.services import create_user
from bellwether.news.models import ArticlePage

from . import services
from .exceptions import InsufficientFunds, InvalidTrade
from .models import Market, Trade

DEMO_TRADERS = ("ana", "bo", "chen", "dara", "eli", "femi")
LIQUIDITY_B_MICRO = 100 * services.MICRO


def load_demo_markets(*, content_dir: Path, seed: int = 7) -> int:
    """Create a market for each question in the demo articles' front matter, linked to its article.

    Runs again harmlessly: existing markets (same question) are linked, not
    duplicated, and only new markets get simulated trades. Forecasts an
    expert insight states in its front matter are recorded on its markets.
    Returns how many markets were created.
    """
    rng = random.Random(seed)
    traders = [_trader(name) for name in DEMO_TRADERS]
    created = 0
    for path in sorted(content_dir.glob("*.md")):
        if path.name == "README.md":
            continue
        meta = yaml.safe_load(path.read_text().split("\n---", 1)[0].lstrip("-\n")) or {}
        article = ArticlePage.objects.filter(source_key=meta.get("id")).first()
        if article is None:
            continue
        for question in meta.get("questions") or []:
            market = Market.objects.filter(question=question).first()
            if market is None:
                market = services.create_market(
                    question=question,
                    liquidity_b_micro=LIQUIDITY_B_MICRO,
                    close_at=timezone.now() + dt.timedelta(days=rng.randint(20, 120)),
                    description=f"Raised by the story “{article.title}”.",
                    resolution_criteria="Resolves by the newsroom's reporting on the stated date; see the linked stories.",
                )
                created += 1
                opened_at = _backdate_opening(market=market, published_at=article.published_at)
                _simulate(market=market, traders=traders, rng=rng, since=opened_at)
            services.link_article(market=market, article=article)
        # After the links: a forecast is recorded only on a market linked to its insight.
        if article.stated_forecasts:
            services.record_stated_forecasts(article=article)
    return created


def _trader(name: str):
    from django.contrib.auth import get_user_model

    user = get_user_model().objects.filter(username=name).first()
    return user or create_user(username=name)


def _backdate_opening(*, market: Market, published_at) -> dt.datetime:
    """Open the demo market a few hours before its story appeared, so its chart has a history."""
    now = timezone.now()
    opened_at = min((published_at or now) - dt.timedelta(hours=6), now - dt.timedelta(hours=2))
    Market.objects.filter(pk=market.pk).update(created_at=opened_at)
    return opened_at


def _simulate(*, market: Market, traders: list, rng: random.Random, since: dt.datetime) -> None:
    """Trade the market from ``since`` until now, so the demo odds move the way real ones do.

    A hidden belief drifts as a random walk; each trader buys the side that
    looks cheap against a noisy view of it. Trade times are drawn towards the
    present, so the recent movers on the home page have something to show.
    """
    belief = rng.uniform(0.2, 0.8)
    now = timezone.now()
    span_s = max((now - since).total_seconds() - 60, 60)
    times = sorted(since + dt.timedelta(seconds=span_s * rng.random() ** 0.6) for _ in range(rng.randint(14, 36)))
    price = 0.5
    for at in times:
        belief = min(0.95, max(0.05, belief + rng.gauss(0, 0.06)))
        view = min(0.99, max(0.01, belief + rng.gauss(0, 0.08)))
        if abs(view - price) < 0.02:
            continue
        outcome = "yes" if view > price else "no"
        request = services.TradeRequest(outcome=outcome, side="buy", amount_micro=rng.randint(3, 30) * services.MICRO)
        try:
            body = services.place_trade(user=rng.choice(traders), market_slug=market.slug, request=request)
        except (InsufficientFunds, InvalidTrade):
            continue
        trade = Trade.objects.filter(pk=body["trade_id"])
        trade.update(created_at=at)
        price = trade.values_list("probabilities_after", flat=True).first()[0]
