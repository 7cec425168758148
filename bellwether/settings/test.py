"""Settings for the test suite: fast hashing, quiet email, real databases."""

import os

from .base import *  # noqa: F403

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
# Tests check fresh content straight after writing it.
PAGE_CACHE_TTL_S = 0
PANEL_CACHE_TTL_S = 0
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
