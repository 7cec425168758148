"""Settings shared by every deployment; values come from ``env``."""

from __future__ import annotations

from django.core.exceptions import ImproperlyConfigured

from .env import BASE_DIR, VAR_DIR, database_config, env_bool, env_float, env_int, env_list, env_optional, env_str

PROJECT_DIR = BASE_DIR / "bellwether"

DEBUG = env_bool("DEBUG", False)
# The fallback key is only good for a laptop; production.py refuses it.
SECRET_KEY = env_str("SECRET_KEY", "insecure-development-key-change-me")
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", ["127.0.0.1", "localhost", "[::1]"])
SITE_URL = env_str("SITE_URL", "http://127.0.0.1:8000").rstrip("/")

INSTALLED_APPS = [
    "bellwether.news",
    "bellwether.ledger",
    "bellwether.markets",
    "bellwether.accounts",
    "bellwether.live",
    "bellwether.highlights",
    "django_tasks",
    "django_tasks_db",
    "allauth",
    "allauth.account",
    "wagtail.contrib.redirects",
    "wagtail.contrib.sitemaps",
    "wagtail.contrib.routable_page",
    "wagtail.embeds",
    "wagtail.sites",
    "wagtail.users",
    "wagtail.snippets",
    "wagtail.documents",
    "wagtail.images",
    "wagtail.search",
    "wagtail.admin",
    "wagtail",
    "modelcluster",
    "taggit",
    "django_filters",
    "template_partials",
    "ninja",  # serves the API docs page from local static files, not a CDN
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django.contrib.sitemaps",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "bellwether.security.ContentSecurityPolicyMiddleware",
    # NUL bytes and oversized API bodies are refused before anything reads them (bellwether/request_guard.py).
    "bellwether.request_guard.RequestGuardMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "bellwether.news.middleware.PublicPageCacheMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "allauth.account.middleware.AccountMiddleware",
    "bellwether.ratelimit.ApiRateLimitMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "wagtail.contrib.redirects.middleware.RedirectMiddleware",
]

ROOT_URLCONF = "bellwether.urls"
WSGI_APPLICATION = "bellwether.wsgi.application"
ASGI_APPLICATION = "bellwether.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [PROJECT_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.debug",
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "bellwether.news.context_processors.site_navigation",
                "bellwether.accounts.context_processors.account_summary",
                "bellwether.live.context_processors.live_streams",
            ],
        },
    },
]

DATABASES = {"default": database_config()}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# Three caches, one per kind of data (docs/operations.md):
# - "default": per process, for what libraries (Wagtail) keep for themselves;
# - "pages": per process, rendered public pages and market panels; traffic
#   fills it and evicts old entries, so nothing that must hold lives there;
# - "counters": shared by every process, never culled while live: failed-login
#   lockouts, rate limits, confirmation-mail backoff (bellwether/ratelimit.py).
#   The database (table bellwether_counters, made by `bellwether migrate`),
#   or Redis when CACHE_URL is redis://host:port/db.
CACHE_URL = env_str("CACHE_URL")
if CACHE_URL.startswith(("redis://", "rediss://", "unix://")):
    _COUNTERS_CACHE = {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": CACHE_URL, "KEY_PREFIX": "bellwether"}
elif CACHE_URL:
    raise ImproperlyConfigured("CACHE_URL must be empty (the database) or a redis://, rediss:// or unix:// URL.")
else:
    # MAX_ENTRIES only decides when expired rows are swept: CounterCache never drops a live one.
    _COUNTERS_CACHE = {"BACKEND": "bellwether.ratelimit.CounterCache", "LOCATION": "bellwether_counters", "OPTIONS": {"MAX_ENTRIES": 1000}}
CACHES = {
    "default": {
        "BACKEND": "django.core.cache.backends.locmem.LocMemCache",
        "LOCATION": "bellwether",
        "OPTIONS": {"MAX_ENTRIES": 5000},
    },
    "pages": {
        "BACKEND": "django.core.cache.backends.locmem.LocMemCache",
        "LOCATION": "bellwether-pages",
        "OPTIONS": {"MAX_ENTRIES": 5000},
    },
    "counters": _COUNTERS_CACHE,
}
# Seconds a rendered public page may be served from the per-process cache.
# Publishing bumps a generation counter, so edits show up within
# PAGE_CACHE_CHECK_S seconds regardless of this value.
PAGE_CACHE_TTL_S = env_int("PAGE_CACHE_TTL_S", 300)
PAGE_CACHE_CHECK_S = 1.0
# Seconds a market panel fragment (home strip, article and section panels) is
# reused. Its key holds the newest trade's id, so any trade refreshes it at
# once; the time limit only bounds how long a resolution or new link waits.
PANEL_CACHE_TTL_S = env_int("PANEL_CACHE_TTL_S", 10)

# Argon2id for new and upgraded passwords; the others only verify old hashes.
PASSWORD_HASHERS = [
    "django.contrib.auth.hashers.Argon2PasswordHasher",
    "django.contrib.auth.hashers.PBKDF2PasswordHasher",
    "django.contrib.auth.hashers.ScryptPasswordHasher",
]
AUTHENTICATION_BACKENDS = [
    "django.contrib.auth.backends.ModelBackend",
    "allauth.account.auth_backends.AuthenticationBackend",
]
LOGIN_URL = "account_login"
LOGIN_REDIRECT_URL = "/"

# Sign-up, login and email through django-allauth.
ACCOUNT_LOGIN_METHODS = {"username", "email"}
ACCOUNT_SIGNUP_FIELDS = ["email*", "username*", "password1*"]
ACCOUNT_EMAIL_VERIFICATION = env_str("ACCOUNT_EMAIL_VERIFICATION", "optional")
ACCOUNT_UNIQUE_EMAIL = True
ACCOUNT_LOGIN_ON_EMAIL_CONFIRMATION = True
ACCOUNT_LOGOUT_ON_PASSWORD_CHANGE = False
ACCOUNT_EMAIL_SUBJECT_PREFIX = "[Bellwether] "
ACCOUNT_DEFAULT_HTTP_PROTOCOL = "https" if SITE_URL.startswith("https") else "http"
# Failed logins: at most 5 per username and 20 per IP address in 5 minutes;
# past that, the login form refuses until the window passes. Counts live in
# the shared "counters" cache (AccountsConfig.ready points allauth there).
ACCOUNT_RATE_LIMITS = {
    "login_failed": "20/5m/ip,5/5m/key",
    "signup": "20/h/ip",
    "reset_password": "20/m/ip,5/m/key",
    "confirm_email": "1/3m/key",
}
# Behind a reverse proxy that appends the client to X-Forwarded-For (nginx in
# docs/operations.md), set 1: every per-IP limit then sees the real client.
ALLAUTH_TRUSTED_PROXY_COUNT = env_int("TRUSTED_PROXY_COUNT", 0)

# API rate limits (bellwether/ratelimit.py), per minute, answered with 429 and
# Retry-After; 0 switches one off. Each request counts against its IP address
# and, when it carries one, its bearer token or session; trades also count
# against their user.
API_IP_RATE_LIMIT_PER_MIN = env_int("API_IP_RATE_LIMIT_PER_MIN", 600)
API_RATE_LIMIT_PER_MIN = env_int("API_RATE_LIMIT_PER_MIN", 600)
API_TRADE_RATE_LIMIT_PER_MIN = env_int("API_TRADE_RATE_LIMIT_PER_MIN", 60)

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-gb"
TIME_ZONE = env_str("TIME_ZONE", "UTC")
USE_I18N = True
USE_TZ = True

STATIC_URL = "/static/"
STATIC_ROOT = VAR_DIR / "static"
STATIC_ROOT.mkdir(parents=True, exist_ok=True)
STATICFILES_DIRS = [PROJECT_DIR / "static"]
MEDIA_URL = "/media/"
MEDIA_ROOT = VAR_DIR / "media"
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}
# Serve straight from the app folders so `bellwether serve` needs no
# collectstatic step; production.py turns this off and uses the manifest.
WHITENOISE_USE_FINDERS = True
WHITENOISE_AUTOREFRESH = DEBUG

DATA_UPLOAD_MAX_NUMBER_FIELDS = 10_000

EMAIL_HOST = env_str("EMAIL_HOST")
# Without a mail server configured, mail is printed to the console, so the
# demo's sign-up and password-reset emails can be read there.
EMAIL_BACKEND = env_str(
    "EMAIL_BACKEND",
    "django.core.mail.backends.smtp.EmailBackend" if EMAIL_HOST else "django.core.mail.backends.console.EmailBackend",
)
EMAIL_PORT = env_int("EMAIL_PORT", 25)
EMAIL_HOST_USER = env_str("EMAIL_HOST_USER")
EMAIL_HOST_PASSWORD = env_str("EMAIL_HOST_PASSWORD")
EMAIL_USE_TLS = env_bool("EMAIL_USE_TLS", False)
DEFAULT_FROM_EMAIL = env_str("DEFAULT_FROM_EMAIL", "Bellwether <newsroom@localhost>")

WAGTAIL_SITE_NAME = "Bellwether"
WAGTAILADMIN_BASE_URL = SITE_URL
WAGTAILSEARCH_BACKENDS = {
    # Picks PostgreSQL full-text search on Postgres and FTS5 on SQLite.
    "default": {"BACKEND": "wagtail.search.backends.database"},
}
WAGTAIL_MODERATION_ENABLED = True
# No avatars fetched from an outside service: the admin loads nothing from elsewhere.
WAGTAIL_GRAVATAR_PROVIDER_URL = None
# Nor the dashboard's check for a newer Wagtail, which the admin's connect-src
# refuses anyway (a policy violation on every superuser's dashboard).
WAGTAIL_ENABLE_UPDATE_CHECK = False
WAGTAILDOCS_EXTENSIONS = ["csv", "docx", "odt", "pdf", "pptx", "rtf", "txt", "xlsx", "zip"]
TAGGIT_CASE_INSENSITIVE = True

# How many articles a list page shows.
ARTICLES_PER_PAGE = 20

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": env_str("LOG_LEVEL", "WARNING")},
}

# Money: integer micro-credits (10^-6). New users receive this from the treasury.
STARTING_BALANCE_MICRO = env_int("STARTING_BALANCE_CREDITS", 1000) * 1_000_000
# How long a trade's Idempotency-Key is remembered; the worker sweeps older ones.
IDEMPOTENCY_KEY_TTL_S = env_int("IDEMPOTENCY_KEY_TTL_S", 7 * 24 * 3600)

# Live streams (bellwether.live, docs/live.md). Pages find the streams at
# LIVE_BASE: LIVE_URL when set ("" = this same address, behind a proxy that
# routes /live/ to the ASGI server); otherwise, when `bellwether serve` runs
# the live server on LIVE_PORT, that port on the host the page was asked
# for; otherwise "" (one server answers /live/ itself, as in tests).
LIVE_URL = env_optional("LIVE_URL")
LIVE_PORT = env_int("LIVE_PORT", 0)
# SQLite: how often each live process looks for new trades.
LIVE_POLL_S = env_float("LIVE_POLL_S", 0.1)
# Seconds of silence after which a stream sends a ": ping" comment.
LIVE_HEARTBEAT_S = env_float("LIVE_HEARTBEAT_S", 15.0)
# Resumed streams replay from the database a page of LIVE_REPLAY_PAGE trades
# at a time, with at most LIVE_REPLAY_READERS pages read at once per live
# process: what bounds a live worker's memory when many streams resume.
LIVE_REPLAY_PAGE = env_int("LIVE_REPLAY_PAGE", 100)
LIVE_REPLAY_READERS = env_int("LIVE_REPLAY_READERS", 2)

# Simulated traders that `bellwether demo` may start.
DEMO_TRADERS = env_int("DEMO_TRADERS", 3)

# Background work: Django's task API (django-tasks). Wagtail enqueues its own
# small jobs (search index and reference updates) on the default backend;
# they stay immediate, as before, so an edit is searchable at once. The
# weekly highlights run on the "worker" backend: stored in the database and
# run by `bellwether worker`.
TASKS = {
    "default": {"BACKEND": "django_tasks.backends.immediate.ImmediateBackend"},
    "worker": {"BACKEND": "django_tasks_db.DatabaseBackend"},
}

# The weekly highlights email: when the worker builds and sends it, in which
# time zone, and how many messages go over one SMTP connection.
HIGHLIGHTS_WEEKDAY = env_int("HIGHLIGHTS_WEEKDAY", 4)  # Monday = 0: Friday
HIGHLIGHTS_TIME = env_str("HIGHLIGHTS_TIME", "07:00")
HIGHLIGHTS_TIME_ZONE = env_str("HIGHLIGHTS_TIME_ZONE", "UTC")
HIGHLIGHTS_BATCH_SIZE = env_int("HIGHLIGHTS_BATCH_SIZE", 200)
# Recipients refused in a row at RCPT after which a send stops: the relay is
# then likely refusing everyone, so nobody is marked bounced (docs/highlights.md).
HIGHLIGHTS_MAX_CONSECUTIVE_REFUSALS = env_int("HIGHLIGHTS_MAX_CONSECUTIVE_REFUSALS", 20)
# How long a subscription confirmation link stays valid.
HIGHLIGHTS_CONFIRM_MAX_AGE_S = env_int("HIGHLIGHTS_CONFIRM_MAX_AGE_S", 3 * 24 * 3600)
# Confirmation mails to one address: a second one only after
# HIGHLIGHTS_CONFIRM_RESEND_S, then twice as long each time, at most
# HIGHLIGHTS_CONFIRM_RESEND_MAX_S; confirming starts the series again.
HIGHLIGHTS_CONFIRM_RESEND_S = env_int("HIGHLIGHTS_CONFIRM_RESEND_S", 60)
HIGHLIGHTS_CONFIRM_RESEND_MAX_S = env_int("HIGHLIGHTS_CONFIRM_RESEND_MAX_S", 24 * 3600)
# Sign-ups through the public form from one IP address per hour (0: no limit).
HIGHLIGHTS_SIGNUPS_PER_IP_PER_HOUR = env_int("HIGHLIGHTS_SIGNUPS_PER_IP_PER_HOUR", 20)
