"""The demo markets: linked to their stories, with a history worth charting."""

from __future__ import annotations

import pytest
from django.utils import timezone

from bellwether.markets.audit import run_audit
from bellwether.markets.demo import load_demo_markets
from bellwether.markets.models import Market, MarketArticle
from bellwether.news import services as news_services
from bellwether.news.management.commands.demo import DEMO_CONTENT

pytestmark = pytest.mark.django_db


def test_demo_markets_have_a_history_that_starts_before_their_story():
    """Each demo market opens before its story, trades in time order up to now, and the books balance."""
    news_services.ingest_sources(sources=[str(DEMO_CONTENT)], default_section=("World",))
    created = load_demo_markets(content_dir=DEMO_CONTENT)
    assert created == Market.objects.count() >= 14
    now = timezone.now()
    for link in MarketArticle.objects.select_related("market", "article"):
        market = link.market
        assert market.created_at < link.article.published_at
        times = list(market.trades.order_by("id").values_list("created_at", flat=True))
        assert len(times) >= 5, market.question
        assert times == sorted(times)
        assert market.created_at <= times[0] and times[-1] <= now
    assert run_audit().problems == []
    assert load_demo_markets(content_dir=DEMO_CONTENT) == 0
