"""Market panels are reused until the next trade, and never served stale after one."""

from __future__ import annotations

import datetime as dt

import pytest
from django.utils import timezone

from bellwether.accounts.services import create_user
from bellwether.markets import services
from bellwether.news.middleware import page_cache
from tests.news.factories import make_article

pytestmark = pytest.mark.django_db
M = services.MICRO


@pytest.fixture
def panel_cache(settings):
    settings.PANEL_CACHE_TTL_S = 60
    page_cache.clear()
    yield
    page_cache.clear()


def test_a_panel_is_rendered_once_per_trade(client, home, panel_cache, django_assert_num_queries):
    """A repeat costs one query (the newest trade id); a trade in between shows its new odds at once."""
    article = make_article(published_at=timezone.now() - dt.timedelta(hours=1))
    market = services.create_market(question="Will it rain?", liquidity_b_micro=100 * M, close_at=timezone.now() + dt.timedelta(days=2), articles=[article])
    url = f"/markets/panels/article/{article.pk}/"
    first = client.get(url).content.decode()
    assert "50%" in first
    with django_assert_num_queries(1):
        assert client.get(url).content.decode() == first
    services.place_trade(user=create_user(username="ana"), market_slug=market.slug, request=services.TradeRequest(outcome="yes", side="buy", shares_micro=50 * M))
    after = client.get(url).content.decode()
    assert after != first and "62%" in after
