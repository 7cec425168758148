"""Every account test starts with empty caches."""

from __future__ import annotations

import pytest
from django.core.cache import cache

from bellwether.ratelimit import counters


@pytest.fixture(autouse=True)
def clear_cache(request):
    """Empty the caches around every test, so login and sign-up rate limits never leak between tests.

    The limits count in the shared counters cache, a database table by
    default, which transactional tests do not roll back. Tests that reach
    the database only through a fixture of their own (a real server) clear
    it there.
    """
    with_db = request.node.get_closest_marker("django_db") is not None
    cache.clear()
    if with_db:
        counters.clear()
    yield
    cache.clear()
    if with_db:
        counters.clear()
