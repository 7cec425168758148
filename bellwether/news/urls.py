from django.urls import path

from . import feeds, views

app_name = "news"

urlpatterns = [
    path("tags/<slug:slug>/", views.tag_page, name="tag"),
    path("tags/<slug:slug>/feed/rss/", feeds.TagRssFeed(), name="tag-rss"),
    path("tags/<slug:slug>/feed/atom/", feeds.TagAtomFeed(), name="tag-atom"),
    path("regions/", views.directory, {"kind": "regions"}, name="regions"),
    path("regions/<slug:slug>/", views.region_page, name="region"),
    path("desks/", views.directory, {"kind": "desks"}, name="desks"),
    path("desks/<slug:slug>/", views.desk_page, name="desk"),
    path("authors/", views.directory, {"kind": "authors"}, name="authors"),
    path("authors/<slug:slug>/", views.author_page, name="author"),
    path("search/", views.search, name="search"),
    path("feed/rss/", feeds.LatestRssFeed(), name="rss"),
    path("feed/atom/", feeds.LatestAtomFeed(), name="atom"),
]
