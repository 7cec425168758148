"""RSS 2.0 and Atom 1.0 feeds: site-wide, per section and per tag."""

from __future__ import annotations

from django.conf import settings
from django.contrib.syndication.views import Feed
from django.shortcuts import get_object_or_404
from django.utils.feedgenerator import Atom1Feed
from taggit.models import Tag

from . import selectors
from .models import ArticlePage

FEED_LENGTH = 30


class LatestRssFeed(Feed):
    """The newest articles across the whole site."""

    title = "Bellwether: latest"
    description = "The newest stories from the Bellwether newsroom."

    def link(self, obj=None) -> str:
        return "/"

    def items(self, obj=None):
        return selectors.live_articles()[:FEED_LENGTH]

    def item_title(self, item: ArticlePage) -> str:
        return item.title

    def item_description(self, item: ArticlePage) -> str:
        return item.summary

    def item_link(self, item: ArticlePage) -> str:
        return item.url or "/"

    def item_pubdate(self, item: ArticlePage):
        return item.dateline

    def item_updateddate(self, item: ArticlePage):
        return item.updated_at or item.dateline

    def item_author_name(self, item: ArticlePage) -> str:
        names = [p.name for p in item.authors.all()]
        if item.desk:
            names.append(item.desk.name)
        return ", ".join(names)

    def item_categories(self, item: ArticlePage):
        return [t.name for t in item.tags.all()]

    def item_guid(self, item: ArticlePage) -> str:
        return f"{settings.SITE_URL}/article/{item.pk}"

    item_guid_is_permalink = False


class LatestAtomFeed(LatestRssFeed):
    feed_type = Atom1Feed
    subtitle = LatestRssFeed.description


class SectionRssFeed(LatestRssFeed):
    """The newest articles in one section and its subsections."""

    def get_object(self, request, section):
        return section

    def title(self, obj) -> str:
        return f"Bellwether: {obj.title}"

    def description(self, obj) -> str:
        return f"The newest stories in {obj.title}."

    def link(self, obj=None) -> str:
        return obj.url

    def items(self, obj=None):
        return selectors.section_articles(section=obj)[:FEED_LENGTH]


class SectionAtomFeed(SectionRssFeed):
    feed_type = Atom1Feed

    def subtitle(self, obj) -> str:
        return self.description(obj)


class TagRssFeed(LatestRssFeed):
    """The newest articles carrying one hashtag."""

    def get_object(self, request, slug):
        return get_object_or_404(Tag, slug=slug)

    def title(self, obj) -> str:
        return f"Bellwether: #{obj.name}"

    def description(self, obj) -> str:
        return f"The newest stories tagged #{obj.name}."

    def link(self, obj=None) -> str:
        return f"/tags/{obj.slug}/"

    def items(self, obj=None):
        return selectors.live_articles().filter(tags=obj)[:FEED_LENGTH]


class TagAtomFeed(TagRssFeed):
    feed_type = Atom1Feed

    def subtitle(self, obj) -> str:
        return self.description(obj)
