"""A per-process cache of public pages for readers who are not logged in.

A rendered page is kept under its URL and the content generation it was
rendered at. Publishing, unpublishing or moving a page bumps the generation
(bellwether.news.signals); each process re-reads it at most once every
PAGE_CACHE_CHECK_S seconds, so a change reaches every process within about a
second while a cached page costs no query at all in between.

Pages (and the market panels) live in the "pages" cache alias, of their own:
any URL a visitor asks for adds an entry, and the evictions that follow must
never touch a failed-login count or a rate limit ("counters" alias).
"""

from __future__ import annotations

import threading
import time

from django.conf import settings
from django.core.cache import caches
from django.core.signals import setting_changed
from django.db import DatabaseError
from django.dispatch import receiver
from django.utils.connection import ConnectionProxy

PAGES = "pages"
page_cache = ConnectionProxy(caches, PAGES)
KEY_PARAMS = ("page",)
MESSAGES_COOKIE = "messages"  # django.contrib.messages' cookie storage
SKIP_PREFIXES = ("/api/", "/admin/", "/django-admin/", "/health/", "/search/", "/documents/", "/static/", "/media/")


class _Generation:
    """The content generation as last read by this process."""

    def __init__(self) -> None:
        self.value: int | None = None
        self.read_at = 0.0
        self.lock = threading.Lock()

    def current(self) -> int | None:
        now = time.monotonic()
        if self.value is not None and now - self.read_at < settings.PAGE_CACHE_CHECK_S:
            return self.value
        with self.lock:
            if self.value is None or now - self.read_at >= settings.PAGE_CACHE_CHECK_S:
                from .selectors import content_generation

                try:
                    self.value = content_generation()
                except DatabaseError:
                    return None
                self.read_at = now
        return self.value


_generation = _Generation()


class PublicPageCacheMiddleware:
    """Serve anonymous GETs of public pages from the cache when they are current."""

    def __init__(self, get_response) -> None:
        self.get_response = get_response

    def __call__(self, request):
        key = self._key(request)
        if key is None:
            return self.get_response(request)
        cached = page_cache.get(key)
        if cached is not None:
            cached["X-Page-Cache"] = "hit"
            return cached
        response = self.get_response(request)
        if self._cacheable(response):
            response["X-Page-Cache"] = "miss"
            page_cache.set(key, response, settings.PAGE_CACHE_TTL_S)
        return response

    def _key(self, request) -> str | None:
        if settings.PAGE_CACHE_TTL_S <= 0 or request.method not in ("GET", "HEAD"):
            return None
        # A session means a logged-in or trading reader; a messages cookie
        # holds a notice (such as "You have signed out.") the page must show.
        cookies = request.COOKIES
        if cookies.get(settings.SESSION_COOKIE_NAME) or cookies.get(MESSAGES_COOKIE) or request.path.startswith(SKIP_PREFIXES):
            return None
        generation = _generation.current()
        if generation is None:
            return None
        # Only parameters a cached view reads go into the key, so "/?junk=1"
        # is served from the entry for "/" instead of forcing a fresh render.
        params = "&".join(f"{name}={request.GET[name]}" for name in KEY_PARAMS if name in request.GET)
        return f"page:{generation}:{request.method}:{request.get_host()}:{request.path}?{params}"

    @staticmethod
    def _cacheable(response) -> bool:
        cache_control = response.get("Cache-Control", "")
        return (
            response.status_code == 200
            and not response.streaming
            and not response.cookies
            and "private" not in cache_control
            and "no-store" not in cache_control
        )


@receiver(setting_changed, dispatch_uid="bellwether.news.middleware.clear_page_cache")
def clear_page_cache(*, setting, **kwargs) -> None:
    """Empty the page cache when its time limits change (tests), so no entry outlives the setting that stored it."""
    if setting in ("PAGE_CACHE_TTL_S", "PANEL_CACHE_TTL_S"):
        page_cache.clear()
