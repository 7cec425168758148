from django.apps import AppConfig


class MarketsConfig(AppConfig):
    name = "bellwether.markets"
    label = "markets"
    verbose_name = "Markets"

    def ready(self) -> None:
        from . import signals  # noqa: F401
