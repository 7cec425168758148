"""The Content Security Policy and what it relies on: no inline scripts or styles in our pages."""

from __future__ import annotations

import re

import pytest

from bellwether.security import ADMIN_POLICY, POLICY, build_policy
from tests.news.factories import make_article

pytestmark = pytest.mark.django_db
INLINE_SCRIPT = re.compile(r"<script(?![^>]*\b(?:src=|type=\"application/json\"))[^>]*>", re.I)
INLINE_STYLE = re.compile(r"<style\b|\sstyle=", re.I)


def test_public_pages_carry_the_policy_and_admin_its_own(client, home, admin_user, settings):
    """Public pages forbid inline and foreign scripts; Wagtail's admin gets a policy that keeps its inline scripts working.

    With the live streams on this same origin the policy is POLICY; tests/live/test_serving.py
    checks the connect-src a separate live port adds.
    """
    settings.LIVE_URL, settings.LIVE_PORT = None, 0
    response = client.get("/")
    assert response["Content-Security-Policy"] == POLICY
    assert "script-src 'self'" in POLICY and "unsafe-inline" not in POLICY and "unsafe-eval" not in POLICY
    client.force_login(admin_user)
    admin = client.get("/admin/")
    assert admin["Content-Security-Policy"] == ADMIN_POLICY
    assert "script-src 'self' 'unsafe-inline'" in ADMIN_POLICY and "unsafe-eval" not in ADMIN_POLICY
    assert "frame-ancestors 'self'" in ADMIN_POLICY and "form-action 'self'" in ADMIN_POLICY


def test_cached_pages_keep_the_policy(client, home, settings):
    """A page served from the public page cache still carries the header, built for this request's live origin."""
    settings.PAGE_CACHE_TTL_S = 60
    settings.LIVE_URL, settings.LIVE_PORT = None, 8001
    client.get("/")
    again = client.get("/")
    assert again["X-Page-Cache"] == "hit"
    assert again["Content-Security-Policy"] == build_policy(connect_origin="http://testserver:8001")


PAGES = [
    "/", "{article}", "/markets/", "/markets/?tab=resolved", "{market}", "/markets/panels/home/",
    "/markets/panels/article/{article_id}/", "/accounts/login/", "/accounts/signup/", "/accounts/password/reset/",
    "/search/?q=harbour", "/tags/harbours/",
]
SIGNED_IN_PAGES = ["{market}", "/portfolio/", "/accounts/", "/accounts/email/", "/accounts/password/change/"]


def test_pages_have_no_inline_scripts_or_styles(client, home, django_user_model):
    """Every page a reader can reach renders without inline script or style, so the policy breaks nothing."""
    import datetime as dt

    from django.utils import timezone

    from bellwether.accounts.services import create_user
    from bellwether.markets.services import MICRO, TradeRequest, create_market, place_trade

    article = make_article()
    market = create_market(question="Will it rain?", liquidity_b_micro=100 * MICRO, close_at=timezone.now() + dt.timedelta(days=3), articles=[article])
    reader = create_user(username="reader", password="pw-123456789x")
    place_trade(user=reader, market_slug=market.slug, request=TradeRequest(outcome="yes", side="buy", amount_micro=5 * MICRO))
    names = {"article": article.url, "article_id": article.pk, "market": market.get_absolute_url()}
    for signed_in, paths in ((False, PAGES), (True, SIGNED_IN_PAGES)):
        if signed_in:
            client.force_login(reader)
        for path in paths:
            url = path.format(**names)
            response = client.get(url)
            assert response.status_code == 200, url
            html = response.content.decode()
            assert not INLINE_SCRIPT.findall(html), url
            assert not INLINE_STYLE.findall(html), url
