"""Settings for the test suite: fast hashing, quiet email, real databases."""

import os

from .base import *  # noqa: F403

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
# Tests check fresh content straight after writing it.
PAGE_CACHE_TTL_S = 0
PANEL_CACHE_TTL_S = 0
# Rate limits out of the way of the rest of the suite; the tests of the limits
# lower them (tests/project/test_rate_limits.py). The counters cache stays the
# database, as in production.
API_IP_RATE_LIMIT_PER_MIN = API_RATE_LIMIT_PER_MIN = API_TRADE_RATE_LIMIT_PER_MIN = 1_000_000
HIGHLIGHTS_SIGNUPS_PER_IP_PER_HOUR = 1_000_000
WHITENOISE_AUTOREFRESH = True

# One test database per test run (by process id), so two runs on one machine
# never drop each other's database; each run removes its own at the end.
_RUN = os.getpid()
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":  # noqa: F405
    # A file, not memory: WAL, IMMEDIATE transactions and the live server's
    # threads behave as they do in production.
    DATABASES["default"]["TEST"] = {"NAME": str(VAR_DIR / f"test-{_RUN}.sqlite3")}  # noqa: F405
else:
    DATABASES["default"]["TEST"] = {"NAME": f"test_{DATABASES['default']['NAME']}_{_RUN}"}  # noqa: F405
