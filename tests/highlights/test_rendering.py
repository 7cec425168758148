"""Rendering an issue as an email: both parts, absolute links, inlined CSS and the personal section."""

from __future__ import annotations

import datetime as dt
import re
from html import unescape

import pytest
from django.conf import settings
from django.db import connection
from django.test.utils import CaptureQueriesContext

from bellwether.accounts.services import create_user
from bellwether.highlights.building import build_issue
from bellwether.highlights.models import Subscriber
from bellwether.highlights.rendering import positions_by_user, render_email, render_preview
from bellwether.markets.models import Trade
from bellwether.markets.templatetags.market_format import credits, signed_credits
from tests.highlights.test_building import media, trade, world  # noqa: F401  (fixtures)

pytestmark = pytest.mark.django_db
M = 1_000_000


@pytest.fixture
def issue(world):
    return build_issue(now=world.now, intro="A busy week.")


def test_both_parts_have_the_content_and_absolute_links(world, issue):
    """Text and HTML carry the headlines, movers and intro, a view-in-browser and an unsubscribe link with absolute URLs."""
    subscriber = Subscriber.objects.create(email="reader@example.com", status=Subscriber.Status.ACTIVE)
    subject, text, html = render_email(issue=issue, subscriber=subscriber)
    assert subject == "Weekly highlights: Featured lead story"
    browser = f"{settings.SITE_URL}/highlights/1/"
    unsubscribe = f"{settings.SITE_URL}/highlights/unsubscribe/{subscriber.token}/"
    chart = f"{settings.SITE_URL}/highlights/1/charts/{world.alpha.slug}.png"
    for part in (text, html):
        for title in ("Featured lead story", "Story with two markets", "Story with one market", "Story without markets",
                      "An expert's view", "Will alpha happen?", "Will bravo happen?", "Will charlie happen?",
                      "Will delta happen?", "A busy week."):
            assert title in unescape(part), title
        assert browser in part
        assert unsubscribe in part
        assert f"{settings.SITE_URL}{world.featured.url}" in part
        assert "positions this week" not in part.lower()
    assert "Last week's story" not in text
    assert f'href="{browser}"' in html and f'href="{unsubscribe}"' in html
    assert f'src="{chart}"' in html
    assert "<script" not in html.lower() and "<svg" not in html.lower()
    # CSS is inlined: styles sit on the elements, and only the media queries stay in <style>.
    assert re.search(r'<a class="headline" href="[^"]+" style="[^"]*font-family', html)
    style_blocks = re.findall(r"<style>(.*?)</style>", html, re.S)
    assert style_blocks and all(block.strip().startswith("@media") for block in style_blocks)
    assert "prefers-color-scheme: dark" in html
    # Nothing in the HTML points at a relative path.
    assert not re.search(r'(?:href|src)="/', html)


def test_each_subscriber_gets_their_own_token(issue):
    """The shared part is reused, but each message carries its subscriber's unsubscribe token only."""
    a = Subscriber.objects.create(email="a@example.com", status=Subscriber.Status.ACTIVE)
    b = Subscriber.objects.create(email="b@example.com", status=Subscriber.Status.ACTIVE)
    _, text_a, html_a = render_email(issue=issue, subscriber=a)
    with CaptureQueriesContext(connection) as queries:
        _, text_b, html_b = render_email(issue=issue, subscriber=b)
    assert len(queries.captured_queries) == 0
    assert a.token in html_a and b.token not in html_a
    assert b.token in html_b and a.token not in html_b and b.token in text_b


def test_personal_section_for_account_holders(world, issue):
    """A subscriber with an account sees their open positions' value and change over the week, exactly."""
    subscriber = Subscriber.objects.create(email="t@example.com", user=world.trader, status=Subscriber.Status.ACTIVE)
    alpha_trades = list(Trade.objects.filter(market=world.alpha).order_by("created_at").values_list("probabilities_after", flat=True))
    start_price, end_price = alpha_trades[0][0], alpha_trades[1][0]
    bravo_end = Trade.objects.get(market=world.bravo).probabilities_after[1]
    expected = {
        world.alpha.slug: (70 * M, round(70 * M * end_price), round(70 * M * end_price) - round(70 * M * start_price)),
        world.bravo.slug: (30 * M, round(30 * M * bravo_end), round(30 * M * bravo_end) - round(30 * M * 0.5)),
    }
    with CaptureQueriesContext(connection) as queries:
        positions = positions_by_user(issue=issue, user_ids=[world.trader.pk])[world.trader.pk]
    assert len(queries.captured_queries) == 1
    assert {p["slug"]: (p["shares_micro"], p["value_micro"], p["change_micro"]) for p in positions} == expected
    assert [p["slug"] for p in positions] == [world.alpha.slug, world.bravo.slug]  # the bigger change first
    assert [p["outcome"] for p in positions] == ["YES", "NO"]

    _, text, html = render_email(issue=issue, subscriber=subscriber)
    total_value = sum(v for _, v, _ in expected.values())
    total_change = sum(c for _, _, c in expected.values())
    assert "YOUR POSITIONS THIS WEEK" in text and "Your positions this week" in html
    for part in (text, html):
        for _, value, change in expected.values():
            assert credits(value) in part and signed_credits(change) in part
        assert credits(total_value) in part and signed_credits(total_change) in part
    assert f"Total: {credits(total_value)} ({signed_credits(total_change)} this week)" in text
    assert re.search(r'<table class="personal"[^>]* style="', html)  # the fragment's CSS is inlined too
    # Prices stay those of the build: a later trade moves the market but not the figures of a held position.
    alpha_line = next(line for line in text.splitlines() if "70.00 YES shares" in line)
    assert alpha_line.endswith(f"worth {credits(expected[world.alpha.slug][1])} ({signed_credits(expected[world.alpha.slug][2])} this week)")
    trade(world.trader, world.alpha, "no", 50, ago=dt.timedelta(seconds=0))
    assert alpha_line in render_email(issue=issue, subscriber=subscriber)[1]


def test_account_without_positions(world, issue):
    """An account holder with no open position gets a pointer to the markets instead of a table."""
    user = create_user(username="newcomer")
    subscriber = Subscriber.objects.create(email="n@example.com", user=user, status=Subscriber.Status.ACTIVE)
    _, text, html = render_email(issue=issue, subscriber=subscriber)
    assert "You hold no open positions." in text and "You hold no open positions." in html
    assert 'class="personal"' not in html


def test_preview_shows_a_sample(world, issue):
    """The preview renders the issue with a sample personal section and no real subscriber's token."""
    subject, text, html = render_preview(issue)
    assert subject == issue.subject
    assert "Your positions this week (sample)" in html
    assert "YOUR POSITIONS THIS WEEK (SAMPLE)" in text
    assert f"{settings.SITE_URL}/highlights/unsubscribe/preview/" in text
