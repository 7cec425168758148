"""Keep article links' odds true to the moment the article went out."""

from __future__ import annotations

from django.dispatch import receiver
from wagtail.signals import page_published

from bellwether.news.models import ArticlePage

from . import services


@receiver(page_published)
def _stamp_odds_on_first_publication(sender, instance, **kwargs) -> None:
    # A market can be linked to a draft; its "odds at publication" are only
    # known when the article first goes live.
    if isinstance(instance, ArticlePage) and instance.first_published_at == instance.last_published_at:
        services.restamp_article_odds(article=instance)
