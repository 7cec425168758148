from django.apps import AppConfig
from django.core.exceptions import ImproperlyConfigured
from django.db.models.signals import post_migrate


def create_counters_table(sender, using, verbosity=1, **kwargs) -> None:
    """Create the database cache's table (the shared counters) if it is missing, after every migrate."""
    from django.core.management import call_command

    call_command("createcachetable", database=using, verbosity=max(0, verbosity - 1))


class AccountsConfig(AppConfig):
    name = "bellwether.accounts"
    label = "accounts"
    verbose_name = "Accounts"

    def ready(self) -> None:
        # Connects the sign-up receiver, which opens the new reader's ledger account.
        from . import signals  # noqa: F401

        post_migrate.connect(create_counters_table, sender=self, dispatch_uid="bellwether.accounts.create_counters_table")
        _count_allauth_limits_in_shared_cache()


def _count_allauth_limits_in_shared_cache() -> None:
    """Point allauth's rate limits (failed-login lockouts, sign-ups, resets) at the shared counters cache.

    allauth counts in Django's "default" cache, which is per process here:
    with two workers each would allow its own five guesses. It offers no
    setting for the cache, so its module-level ``cache`` is replaced; a
    missing attribute (a changed allauth) stops the start rather than
    silently counting per process again.
    """
    from allauth.core.internal import ratelimit

    from bellwether.ratelimit import counters

    if not hasattr(ratelimit, "cache"):
        raise ImproperlyConfigured("allauth.core.internal.ratelimit has no 'cache': check how this allauth version counts")
    ratelimit.cache = counters
