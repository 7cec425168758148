"""The public page cache: fast for readers, never stale after a publish."""

from __future__ import annotations

import pytest

from bellwether.news import middleware
from bellwether.news.models import ArticlePage

from .factories import make_article

pytestmark = pytest.mark.django_db


@pytest.fixture
def caching(settings):
    settings.PAGE_CACHE_TTL_S = 300
    settings.PAGE_CACHE_CHECK_S = 0  # re-read the generation on every request
    middleware._generation.value = None
    middleware.page_cache.clear()
    yield
    middleware.page_cache.clear()


def test_second_anonymous_request_is_a_hit(client, home, caching):
    """A page is rendered once and then served from the cache."""
    make_article(headline="Cached story")
    assert client.get("/").headers["X-Page-Cache"] == "miss"
    assert client.get("/").headers["X-Page-Cache"] == "hit"


def test_publishing_invalidates(client, home, caching):
    """A newly published or edited article shows up on the next request."""
    article = make_article(headline="First version")
    client.get(article.url)
    client.get("/")
    revision = ArticlePage.objects.get(pk=article.pk)
    revision.title = "Second version"
    revision.save_revision().publish()
    assert "Second version" in client.get(article.url).content.decode()
    make_article(headline="Brand new story")
    assert "Brand new story" in client.get("/").content.decode()


def test_unpublishing_invalidates(client, home, caching):
    """An unpublished article disappears from cached pages at once."""
    article = make_article(headline="Going away")
    assert client.get(article.url).status_code == 200
    ArticlePage.objects.get(pk=article.pk).unpublish()
    assert client.get(article.url).status_code == 404


def test_logged_in_users_and_admin_bypass(client, home, caching, django_user_model):
    """Editors with a session always see fresh pages; admin and search are never cached."""
    make_article(headline="Story")
    user = django_user_model.objects.create_user("ed", password="pw-123456789")
    client.force_login(user)
    assert "X-Page-Cache" not in client.get("/").headers
    client.logout()
    assert "X-Page-Cache" not in client.get("/search/?q=story").headers


def test_disabled_when_ttl_is_zero(client, home, settings):
    """PAGE_CACHE_TTL_S = 0 turns the cache off."""
    settings.PAGE_CACHE_TTL_S = 0
    assert "X-Page-Cache" not in client.get("/").headers


def test_unknown_query_parameters_share_the_cached_page(client, home, caching):
    """'/?junk=1' is served from the entry for '/': junk parameters cannot force fresh renders."""
    make_article(headline="Story")
    assert client.get("/").headers["X-Page-Cache"] == "miss"
    assert client.get("/?utm_source=x&junk=1").headers["X-Page-Cache"] == "hit"
    assert client.get("/?page=2").headers["X-Page-Cache"] == "miss"


def test_a_pending_notice_bypasses_the_cache_and_is_shown(client, home, caching, django_user_model):
    """After logging out, the next page shows "You have signed out." instead of a cached copy without it."""
    make_article(headline="Story")
    assert client.get("/").headers["X-Page-Cache"] == "miss"
    user = django_user_model.objects.create_user("reader", password="pw-123456789")
    client.force_login(user)
    client.post("/accounts/logout/")
    response = client.get("/")
    assert "X-Page-Cache" not in response.headers
    assert "You have signed out." in response.content.decode()
    assert client.get("/").headers["X-Page-Cache"] == "hit"
