"""A reader in Debian's Chromium: home, a section, an article, a search result."""

from __future__ import annotations

import pytest
from django.core.management import call_command

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def seeded_site(live_server, seeds_dir):
    from bellwether.news.services import ensure_home_page

    ensure_home_page()
    call_command("ingest", str(seeds_dir), "--no-progress", "--section", "World")
    return live_server.url


def test_reader_journey(page, seeded_site):
    """The lead story, its breadcrumb, byline, tags and search all work in a real browser."""
    page.goto(seeded_site + "/")
    lead = page.locator(".front__lead")
    assert lead.locator("h2").inner_text() == "Japan and South Korea Forge Cautious Path Forward in High-Stakes Summit"
    assert page.locator(".sections-nav a", has_text="Politics").is_visible()

    # A section from the masthead, then down the breadcrumb trail.
    page.locator(".sections-nav a", has_text="Politics").click()
    page.wait_for_url("**/politics/")
    assert page.locator("h1").inner_text() == "Politics"
    assert page.locator("article.teaser").count() == 1

    # The article: breadcrumb, tags, no promotional footer.
    page.locator("article.teaser h3 a").click()
    page.wait_for_url("**/politics/diplomacy/bilateral-relations/*/")
    crumbs = page.locator(".breadcrumb li").all_inner_texts()
    assert crumbs == ["Politics", "Diplomacy", "Bilateral Relations"]
    tags = page.locator(".story__tags a").all_inner_texts()
    assert tags == ["#Japan", "#South Korea", "#Sanae Takaichi", "#Lee Jae-myung", "#diplomacy", "#APEC summit", "#bilateral relations"]
    body = page.locator(".story__body").inner_text()
    assert "Stay Informed" not in body
    assert body.count("\n") >= 5  # the run-together paragraphs were split

    # A tag page lists the story.
    page.locator(".story__tags a", has_text="#Japan").click()
    page.wait_for_url("**/tags/japan/")
    assert page.locator("h1").inner_text() == "#Japan"

    # Search from the masthead finds the other seed by a body word and opens it.
    page.fill("#q", "Nara temples")
    page.press("#q", "Enter")
    page.wait_for_url("**/search/?q=*")
    assert page.locator(".result-count").inner_text().startswith("1 result")
    page.locator("article.teaser h3 a").first.click()
    assert page.locator("h1.story__title").inner_text().startswith("Japan-South Korea Summit")
    meta = page.locator(".story__head .meta").inner_text()
    assert "National Security Desk" in meta and "13 January 2026" in meta
    assert page.locator(".story__head .kicker").inner_text().lower() == "asia-pacific"


def test_phone_layout_has_no_sideways_scroll(page, seeded_site):
    """On a 375px-wide phone the front page and an article fit the screen."""
    page.set_viewport_size({"width": 375, "height": 800})
    for path in ("/", "/politics/", "/search/?q=summit"):
        page.goto(seeded_site + path)
        overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
        assert overflow <= 0, f"{path} scrolls sideways by {overflow}px"
