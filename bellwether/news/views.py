"""Listing pages that are not Wagtail pages: tags, regions, desks, people, search."""

from __future__ import annotations

from django.conf import settings
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404, render
from django.views.decorators.http import require_GET
from taggit.models import Tag

from . import selectors
from .models import ArticlePage, Desk, Person, Region

SEARCH_MAX_QUERY = 200


def _listing(request: HttpRequest, *, title: str, kind: str, queryset, obj=None, feeds=None) -> HttpResponse:
    paginator = Paginator(queryset, settings.ARTICLES_PER_PAGE)
    page_obj = paginator.get_page(request.GET.get("page"))
    articles = selectors.attach_sections(page_obj.object_list)
    return render(
        request,
        "news/listing.html",
        {"title": title, "kind": kind, "object": obj, "page_obj": page_obj, "articles": articles, "feeds": feeds},
    )


@require_GET
def tag_page(request: HttpRequest, slug: str) -> HttpResponse:
    tag = get_object_or_404(Tag, slug=slug)
    return _listing(
        request,
        title=f"#{tag.name}",
        kind="Topic",
        obj=tag,
        queryset=selectors.live_articles().filter(tags=tag),
        feeds={"rss": f"/tags/{tag.slug}/feed/rss/", "atom": f"/tags/{tag.slug}/feed/atom/"},
    )


@require_GET
def region_page(request: HttpRequest, slug: str) -> HttpResponse:
    region = get_object_or_404(Region, slug=slug)
    return _listing(request, title=region.name, kind="Region", obj=region, queryset=selectors.live_articles().filter(region=region))


@require_GET
def desk_page(request: HttpRequest, slug: str) -> HttpResponse:
    desk = get_object_or_404(Desk, slug=slug)
    return _listing(request, title=desk.name, kind="Desk", obj=desk, queryset=selectors.live_articles().filter(desk=desk))


@require_GET
def author_page(request: HttpRequest, slug: str) -> HttpResponse:
    person = get_object_or_404(Person, slug=slug)
    return _listing(
        request, title=person.name, kind=person.role or "Author", obj=person, queryset=selectors.live_articles().filter(authors=person)
    )


@require_GET
def directory(request: HttpRequest, kind: str) -> HttpResponse:
    """List every region, desk or author with a count of their stories."""
    model, title = {"regions": (Region, "Regions"), "desks": (Desk, "Desks"), "authors": (Person, "Authors")}[kind]
    entries = selectors.directory_entries(model=model)
    return render(request, "news/directory.html", {"title": title, "entries": entries})


@require_GET
def search(request: HttpRequest) -> HttpResponse:
    """Search headlines, standfirsts and bodies."""
    # RequestGuardMiddleware refuses a NUL before it gets here; dropping it too keeps
    # the view safe on its own (PostgreSQL's full-text search cannot take one).
    query = request.GET.get("q", "").replace("\x00", "").strip()[:SEARCH_MAX_QUERY]
    page_obj = None
    articles: list[ArticlePage] = []
    if query:
        results = selectors.search_articles(query=query)
        page_obj = Paginator(results, settings.ARTICLES_PER_PAGE).get_page(request.GET.get("page"))
        articles = selectors.attach_sections(page_obj.object_list)
    return render(request, "news/search.html", {"query": query, "page_obj": page_obj, "articles": articles})


@require_GET
def health(request: HttpRequest) -> JsonResponse:
    """Report that the process is up and the database answers."""
    return JsonResponse({"status": "ok", "database": selectors.database_ok()})
