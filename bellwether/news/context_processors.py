from __future__ import annotations

from django.conf import settings

from .models import SectionPage


def site_navigation(request) -> dict:
    """Add the top-level sections (the masthead's menu) to every template."""
    return {"nav_sections": _top_sections, "SITE_URL": settings.SITE_URL}


def _top_sections() -> list:
    # Called lazily from the template, so pages that do not show it pay nothing.
    return list(
        SectionPage.objects.live().filter(depth=3).order_by("path").only("id", "title", "url_path", "path", "depth")
    )
