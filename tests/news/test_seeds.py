"""Both seed articles ingested end to end, as the newsroom's acceptance test."""

from __future__ import annotations

import pytest
from django.core.management import call_command

from bellwether.news.models import ArticlePage, Desk, Region

pytestmark = pytest.mark.django_db

TAGS = ["Japan", "South Korea", "Sanae Takaichi", "Lee Jae-myung", "diplomacy", "APEC summit", "bilateral relations"]


@pytest.fixture
def seeded(seeds_dir, home):
    call_command("ingest", str(seeds_dir), "--no-progress", "--section", "World")
    return {a.title[:20]: a for a in ArticlePage.objects.all()}


def test_seed_files_give_the_content_model(seeded):
    """Section tree, region, desk byline with date, tags, featured flag, no footer."""
    assert len(seeded) == 2
    summit = ArticlePage.objects.get(title__startswith="Japan-South Korea Summit")
    forge = ArticlePage.objects.get(title__startswith="Japan and South Korea Forge")

    trail = [p.title for p in forge.get_ancestors().filter(depth__gt=2)]
    assert trail == ["Politics", "Diplomacy", "Bilateral Relations"]
    assert forge.url == "/politics/diplomacy/bilateral-relations/" + forge.slug + "/"
    assert [item.tag.name for item in forge.tagged_items.order_by("id")] == TAGS
    assert forge.featured is True
    assert "featured" not in [t.name.lower() for t in forge.tags.all()]

    assert summit.region == Region.objects.get(name="Asia-Pacific")
    assert summit.desk == Desk.objects.get(name="National Security Desk")
    assert summit.published_at.date().isoformat() == "2026-01-13"
    assert summit.dek.startswith("In a high-stakes summit")
    assert summit.featured is False

    for article in (summit, forge):
        text = " ".join(str(b.value) for b in article.body)
        assert "Stay Informed" not in text
        assert "weekly highlights" not in text


def test_seed_ingest_is_idempotent(seeded, seeds_dir):
    """A second run updates both articles and creates nothing."""
    call_command("ingest", str(seeds_dir), "--no-progress")
    assert ArticlePage.objects.count() == 2


def test_reader_sees_breadcrumb_region_desk_tags_and_lead(seeded, client):
    """The article and home pages show what the seed carries."""
    forge = ArticlePage.objects.get(title__startswith="Japan and South Korea Forge")
    html = client.get(forge.url).content.decode()
    assert '<nav class="breadcrumb"' in html
    for crumb in ("Politics", "Diplomacy", "Bilateral Relations"):
        assert f">{crumb}</a></li>" in html
    assert 'href="/tags/lee-jae-myung/">#Lee Jae-myung</a>' in html
    assert "#featured" not in html

    summit = ArticlePage.objects.get(title__startswith="Japan-South Korea Summit")
    html = client.get(summit.url).content.decode()
    assert 'href="/regions/asia-pacific/">Asia-Pacific</a>' in html
    assert 'href="/desks/national-security-desk/">National Security Desk</a>' in html
    assert "13 January 2026" in html
    assert "<h2>Can Longstanding Animosities Yield to Strategic Necessity?</h2>" in html

    home = client.get("/").content.decode()
    lead = home.split('class="front__lead"')[1].split('class="front__headlines"')[0]
    assert "Japan and South Korea Forge Cautious Path Forward" in lead
