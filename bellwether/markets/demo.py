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
from .models import Market

DEMO_TRADERS = ("ana", "bo", "chen", "dara", "eli", "femi")
LIQUIDITY_B_MICRO = 100 * services.MICRO


def load_demo_markets(*, content_dir: Path, seed: int = 7) -> int:
    """Create a market for each question in the demo articles' front matter, linked to its article.

    Runs again harmlessly: existing markets (same question) are linked, not
    duplicated, and only new markets get simulated trades. Returns how many
    markets were created.
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
                _simulate(market=market, traders=traders, rng=rng)
            services.link_article(market=market, article=article)
    return created


def _trader(name: str):
    from django.contrib.auth import get_user_model

    user = get_user_model().objects.filter(username=name).first()
    return user or create_user(username=name)


def _simulate(*, market: Market, traders: list, rng: random.Random) -> None:
    """Place a handful of buys so the demo odds are not all 50/50."""
    lean = rng.choice(["yes", "no"])
    for _ in range(rng.randint(3, 8)):
        outcome = lean if rng.random() < 0.7 else ("no" if lean == "yes" else "yes")
        request = services.TradeRequest(outcome=outcome, side="buy", amount_micro=rng.randint(5, 40) * services.MICRO)
        try:
            services.place_trade(user=rng.choice(traders), market_slug=market.slug, request=request)
        except (InsufficientFunds, InvalidTrade):
            continue
