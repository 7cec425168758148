"""Put the weekly highlights into the Wagtail admin: a menu for editors and its views under /admin/highlights/."""

from __future__ import annotations

from django.urls import include, path, reverse_lazy
from wagtail import hooks
from wagtail.admin.menu import Menu, MenuItem, SubmenuMenuItem

from bellwether.accounts.services import has_role

from . import admin_views


class EditorMenuItem(MenuItem):
    """A menu item shown to editors only (the views refuse everyone else with a 403)."""

    def is_shown(self, request):
        return has_role(request.user, "editor")


@hooks.register("register_admin_urls")
def register_highlights_admin_urls():
    return [
        path("highlights/", include((admin_views.get_urlpatterns(), admin_views.NAMESPACE), namespace=admin_views.NAMESPACE)),
    ]


@hooks.register("register_admin_menu_item")
def register_highlights_menu():
    menu = Menu(items=[
        EditorMenuItem("Issues", reverse_lazy(f"{admin_views.NAMESPACE}:index"), name="highlights-issues", icon_name="mail", order=100),
        EditorMenuItem("Subscribers", reverse_lazy(f"{admin_views.NAMESPACE}:subscribers"), name="highlights-subscribers", icon_name="group", order=200),
    ])
    return SubmenuMenuItem("Weekly highlights", menu, name="weekly-highlights", icon_name="mail", order=260)
