"""Every account test starts with an empty cache."""

from __future__ import annotations

import pytest
from django.core.cache import cache


@pytest.fixture(autouse=True)
def clear_cache():
    """Empty the cache around every test, so login and sign-up rate limits never leak between tests."""
    cache.clear()
    yield
    cache.clear()
