"""Keep derived state in step with Wagtail's publishing events.

Wagtail publishes from its admin, its scheduler and our ingestion alike, and
only its signals see all three. The handlers stay small: they call services.
"""

from __future__ import annotations

from django.db.models.signals import post_delete
from django.dispatch import receiver
from wagtail.signals import page_published, page_unpublished, post_page_move

from . import services
from .models import ArticlePage


@receiver(page_published)
def _on_publish(sender, instance, **kwargs) -> None:
    if isinstance(instance, ArticlePage):
        services.stamp_publication_date(article=instance)
    services.bump_content_generation()


@receiver(page_unpublished)
@receiver(post_page_move)
def _on_unpublish_or_move(sender, **kwargs) -> None:
    services.bump_content_generation()


@receiver(post_delete, sender=ArticlePage)
def _on_delete(sender, **kwargs) -> None:
    services.bump_content_generation()


def set_up_home_page(sender, using="default", **kwargs) -> None:
    """After `migrate`, make sure the site's root is a newsroom home page.

    `flush` (used between transactional tests) also sends post_migrate, on an
    empty tree: nothing to do then.
    """
    from wagtail.models import Page

    if ArticlePage._meta.db_table in _tables(using) and Page.objects.using(using).exists():
        services.ensure_home_page()


def _tables(using: str) -> list[str]:
    from django.db import connections

    return connections[using].introspection.table_names()
