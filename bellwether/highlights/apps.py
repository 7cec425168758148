from django.apps import AppConfig


class HighlightsConfig(AppConfig):
    name = "bellwether.highlights"
    label = "highlights"
    verbose_name = "Weekly highlights"
