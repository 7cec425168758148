from django.apps import AppConfig


class NewsConfig(AppConfig):
    name = "bellwether.news"
    label = "news"
    verbose_name = "News"

    def ready(self) -> None:
        from django.db.models.signals import post_migrate

        from . import signals

        post_migrate.connect(signals.set_up_home_page, sender=self)
