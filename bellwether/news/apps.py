from django.apps import AppConfig


class NewsConfig(AppConfig):
    name = "bellwether.news"
    label = "news"
    verbose_name = "News"

    def ready(self) -> None:
        from django.db.models.signals import post_migrate
        from django.urls import register_converter

        from bellwether.converters import IdConverter

        from . import signals

        # Registered before any URLconf loads; every app's URLs use <id:...> for database ids.
        register_converter(IdConverter, "id")
        post_migrate.connect(signals.set_up_home_page, sender=self)
