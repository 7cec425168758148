"""Every account test starts with empty caches."""

from __future__ import annotations

import pytest
from django.core.cache import cache

from bellwether.ratelimit import counters


@pytest.fixture(autouse=True)
def clear_cache():
    """Empty the caches around every test, so login and sign-up rate limits never leak between tests.

    The limits count in the shared counters cache (a database table by
    default, which transactional tests do not roll back).
    """
    cache.clear()
    counters.clear()
    yield
    cache.clear()
    counters.clear()
