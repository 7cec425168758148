from django.contrib import admin
from django.urls import include, path
from wagtail import urls as wagtail_urls
from wagtail.admin import urls as wagtailadmin_urls
from wagtail.contrib.sitemaps.views import sitemap
from wagtail.documents import urls as wagtaildocs_urls

from bellwether.api import api
from bellwether.news import views as news_views

urlpatterns = [
    path("health/", news_views.health, name="health"),
    path("api/v1/", api.urls),
    # Server-Sent Events; served by the ASGI live server (docs/live.md).
    path("live/", include("bellwether.live.urls")),
    path("django-admin/", admin.site.urls),
    path("admin/", include(wagtailadmin_urls)),
    path("documents/", include(wagtaildocs_urls)),
    path("sitemap.xml", sitemap, name="sitemap"),
    path("accounts/", include("bellwether.accounts.urls")),
    path("accounts/", include("allauth.urls")),
    path("", include("bellwether.markets.urls")),
    path("", include("bellwether.highlights.urls")),
    path("", include("bellwether.news.urls")),
    # Wagtail serves every page of the tree; it must come last.
    path("", include(wagtail_urls)),
]
