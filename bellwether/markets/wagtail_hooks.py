"""Put markets into the Wagtail admin: the Markets menu and a Markets button on articles.

The article buttons live here, not in ``news``, so that ``news`` never
imports ``markets``.
"""

from __future__ import annotations

from wagtail import hooks
from wagtail.permissions import register_permission_policy

from .admin_views import MarketPermissionPolicy, MarketViewSet, article_markets_button
from .models import Market

register_permission_policy(Market, MarketPermissionPolicy(Market))


@hooks.register("register_admin_viewset")
def register_market_viewset():
    return MarketViewSet()


@hooks.register("register_page_header_buttons")
def article_header_markets_button(page, user, view_name, next_url=None):
    button = article_markets_button(page, user, priority=55)
    return [button] if button else []


@hooks.register("register_page_listing_more_buttons")
def article_listing_markets_button(page, user, next_url=None):
    button = article_markets_button(page, user, priority=55)
    return [button] if button else []
