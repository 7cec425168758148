"""Reads shared by pages, feeds and the API.

List queries fetch everything a teaser shows (section, region, desk,
authors, tags) in a fixed number of queries, whatever the list length.
"""

from __future__ import annotations

from collections.abc import Iterable

from django.db.models import F, Prefetch, QuerySet
from wagtail.models import Page

from bellwether.paging import newest_first_after

from .models import ArticlePage, ArticlePageTag, HomePage, Person, SectionPage

HEADLINE_COUNT = 6
PER_SECTION_COUNT = 4
RELATED_COUNT = 4


def live_articles() -> QuerySet[ArticlePage]:
    """Return published articles, newest first, with their byline rows joined."""
    return (
        ArticlePage.objects.live()
        .public()
        .select_related("region", "desk")
        .prefetch_related(
            Prefetch("authors", queryset=Person.objects.order_by("name")),
            "tags",
        )
        .order_by("-published_at", "-id")
    )


def articles_page(*, limit: int, after: tuple | None = None) -> list[ArticlePage]:
    """Return up to ``limit`` published articles, newest first, after the (published_at, id) ``after`` of an earlier page.

    Articles without a publication time come last, on both databases.
    """
    articles = live_articles().order_by(F("published_at").desc(nulls_last=True), "-id")
    if after is not None:
        articles = articles.filter(newest_first_after("published_at", *after, nullable=True))
    return list(articles[:limit])


def attach_sections(articles: Iterable[ArticlePage]) -> list[ArticlePage]:
    """Set ``article.section`` (the parent section page) on each article.

    One query for the whole list: the parent's tree path is the child's
    path minus its last step.
    """
    articles = list(articles)
    parent_paths = {a.path[: -ArticlePage.steplen] for a in articles}
    parents = {p.path: p for p in Page.objects.filter(path__in=parent_paths).only("id", "title", "url_path", "path", "depth")}
    for article in articles:
        article.section = parents.get(article.path[: -ArticlePage.steplen])
    return articles


def section_articles(*, section: SectionPage) -> QuerySet[ArticlePage]:
    """Return the live articles in ``section`` and every section below it."""
    return live_articles().descendant_of(section)


def breadcrumb(page: Page) -> list[Page]:
    """Return the section pages above ``page``, outermost first, without the home page."""
    return list(page.get_ancestors().filter(depth__gt=2).type(SectionPage).only("id", "title", "url_path", "depth", "path"))


def lead_story() -> ArticlePage | None:
    """Return the newest featured article, or the newest article if none is featured."""
    return live_articles().filter(featured=True).first() or live_articles().first()


def home_page_context(*, home: HomePage) -> dict:
    """Return what the front page shows: lead, headlines and latest per section.

    Costs a fixed number of queries plus one id-only query per top-level
    section, however many articles there are.
    """
    lead = lead_story()
    exclude = [lead.pk] if lead else []
    headline_ids = list(
        live_articles().exclude(pk__in=exclude).values_list("pk", flat=True)[:HEADLINE_COUNT]
    )
    shown = exclude + headline_ids
    sections = list(
        home.get_children().live().type(SectionPage).order_by("path").only("id", "title", "url_path", "path", "depth")
    )
    ids_by_section = {
        section.pk: list(
            ArticlePage.objects.live().public().descendant_of(section).exclude(pk__in=shown)
            .order_by("-published_at", "-id").values_list("pk", flat=True)[:PER_SECTION_COUNT]
        )
        for section in sections
    }
    wanted = set(headline_ids).union(*ids_by_section.values())
    by_id = {a.pk: a for a in attach_sections(live_articles().filter(pk__in=wanted))} if wanted else {}
    if lead:
        attach_sections([lead])
    per_section = [
        (section, [by_id[pk] for pk in ids_by_section[section.pk] if pk in by_id])
        for section in sections
        if ids_by_section[section.pk]
    ]
    return {
        "lead": lead,
        "headlines": [by_id[pk] for pk in headline_ids if pk in by_id],
        "section_blocks": per_section,
    }


def article_page_context(*, article: ArticlePage) -> dict:
    """Return the breadcrumb, byline rows and related stories for an article page."""
    related = []
    topic_tags = list(article.tags.all())
    if topic_tags:
        # Ids through the tag table first: a DISTINCT over whole article rows
        # (bodies included) took half the page's time on 10,000 articles.
        sharing = ArticlePageTag.objects.filter(tag__in=topic_tags).values("content_object_id")
        related = list(live_articles().filter(pk__in=sharing).exclude(pk=article.pk)[:RELATED_COUNT])
    return {
        "breadcrumb": breadcrumb(article),
        "related": related,
        "topic_tags": topic_tags,
    }


def search_articles(*, query: str):
    """Return live articles matching ``query``, best first, byline rows attached."""
    ids = [
        page.pk
        for page in ArticlePage.objects.live().public().search(query, operator="and")[:200]
    ]
    order = {pk: i for i, pk in enumerate(ids)}
    found = list(live_articles().filter(pk__in=ids))
    found.sort(key=lambda a: order[a.pk])
    return found


def directory_entries(*, model) -> list:
    """Return every row of ``model`` (Region, Desk, Person) that has live articles, with a count."""
    from django.db.models import Count, Q

    return list(
        model.objects.annotate(
            story_count=Count("articles", filter=Q(articles__live=True), distinct=True)
        )
        .filter(story_count__gt=0)
        .order_by("name")
    )


def database_ok() -> bool:
    """Return True when the database answers a trivial query."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
        return cursor.fetchone() == (1,)


def content_generation() -> int:
    """Return the counter that changes whenever published content changes."""
    from .models import ContentGeneration

    return ContentGeneration.objects.filter(pk=1).values_list("value", flat=True).first() or 0
