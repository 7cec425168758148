"""The markets index and the market panels that news pages load beside their stories.

Every view here shows live prices, so no response is cacheable by browsers or
the page cache. The panels are HTML fragments that news pages fetch after
loading (htmx, ``hx-trigger="load"``): the story itself stays in the public
page cache while its odds stay fresh. Panels are the same for every reader
and are fetched on every story view, so each process keeps a rendered panel
under the newest trade's id in the page cache (``news.middleware.page_cache``):
the first trade after it makes a new one.
"""

from __future__ import annotations

from urllib.parse import urlencode

from django.conf import settings
from django.http import HttpResponse
from django.shortcuts import render
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils.cache import patch_vary_headers
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

from bellwether.news.middleware import page_cache

from .. import selectors

FILTERS = ("section", "region", "tag")


def _index_params(query) -> dict[str, str]:
    """Return the index's tab, sort and filters from a query string; unknown values fall back to defaults."""
    tab = query.get("tab", "")
    tab = tab if tab in selectors.INDEX_TABS else "open"
    sort = query.get("sort", "")
    params = {"tab": tab, "sort": sort if sort in selectors.INDEX_SORTS else ""}
    for name in FILTERS:
        params[name] = query.get(name, "").strip()[:120]
    return params


def _index_url(**params) -> str:
    """Return the index URL for ``params``, leaving out empty values and the default tab."""
    if params.get("tab") == "open":
        params["tab"] = ""
    query = urlencode([(k, v) for k, v in params.items() if v])
    return reverse("markets:index") + (f"?{query}" if query else "")


def _index_links(params: dict[str, str], sort: str) -> dict:
    """Return the tab, sort and clear-filter links, each keeping the rest of the current view."""
    filters = {name: params[name] for name in FILTERS}
    tabs = [
        {"key": key, "label": label, "url": _index_url(tab=key, **filters), "active": key == params["tab"]}
        for key, label in selectors.INDEX_TABS.items()
    ]
    sorts = []
    for key, label in selectors.INDEX_SORTS.items():
        if key == "close" and params["tab"] == "resolved":
            label = "Resolution date"
        sorts.append({"key": key, "label": label, "url": _index_url(tab=params["tab"], sort=key, **filters), "active": key == sort})
    return {
        "tabs": tabs,
        "sorts": sorts,
        "clear_url": _index_url(tab=params["tab"], sort=params["sort"]),
    }


def _filter_fields(params: dict[str, str], choices: dict[str, list]) -> list[dict]:
    """Return the three filter menus with their options; a value not on offer stays selectable, so the form shows it."""
    options = {
        # Root and home pages sit at depths 1 and 2: a top-level section is at depth 3.
        "section": [(s.slug, "\u2013 " * (s.depth - 3) + s.title) for s in choices["sections"]],
        "region": [(r.slug, r.name) for r in choices["regions"]],
        "tag": [(t.slug, f"#{t.name}") for t in choices["tags"]],
    }
    fields = []
    for name, label, everything in (("section", "Section", "All sections"), ("region", "Region", "All regions"), ("tag", "Topic", "All topics")):
        value = params[name]
        offered = options[name]
        if value and value not in {slug for slug, _ in offered}:
            offered = [*offered, (value, value)]
        fields.append({"name": name, "id": f"filter-{name}", "label": label, "everything": everything, "options": offered, "value": value})
    return fields


def _is_fragment_request(request) -> bool:
    """Return True for an htmx request that wants the list alone (a history restore wants the whole page)."""
    return request.headers.get("HX-Request") == "true" and request.headers.get("HX-History-Restore-Request") != "true"


@require_GET
@never_cache
def market_index(request):
    """Show the markets index; an htmx request gets only the list (with the controls out of band)."""
    params = _index_params(request.GET)
    index = selectors.market_index(
        tab=params["tab"], sort=params["sort"] or None, section=params["section"], region=params["region"],
        tag=params["tag"], page_number=request.GET.get("page", 1),
    )
    sort = params["sort"] or selectors.TAB_DEFAULT_SORT[params["tab"]]
    page = index.page
    context = {
        "last_trade_id": selectors.latest_trade_id(),  # read first: the live stream resumes from it
        "params": params,
        "sort": sort,
        "index": index,
        "rows": index.rows,
        "page_obj": page,
        "filtered": any(params[name] for name in FILTERS),
        "filter_fields": _filter_fields(params, selectors.index_filter_choices()),
        "tab_label": selectors.INDEX_TABS[params["tab"]],
        "prev_url": _index_url(**params, page=page.previous_page_number()) if page.has_previous() else "",
        "next_url": _index_url(**params, page=page.next_page_number()) if page.has_next() else "",
        **_index_links(params, sort),
    }
    if _is_fragment_request(request):
        context["oob"] = True
        response = render(request, "markets/index.html#market-list", context)
        # The filter form sends its empty menus too; the address bar gets the tidy URL instead.
        response["HX-Push-Url"] = _index_url(**params, page=page.number if page.number > 1 else "")
    else:
        response = render(request, "markets/index.html", context)
    # One URL answers with a page or a fragment, so caches must tell them apart.
    patch_vary_headers(response, ["HX-Request"])
    return response


def _fragment(name: str, build) -> HttpResponse:
    """Return a panel fragment, rendered by ``build(latest trade id)`` unless this process rendered it since the last trade.

    An empty panel is just its comment, so the container's :empty rule hides it.
    The panel carries the newest trade's id it reflects, so the live stream
    (static/js/live.js) resumes from there and misses nothing.
    """
    latest = selectors.latest_trade_id()
    ttl = settings.PANEL_CACHE_TTL_S
    if ttl <= 0:
        return HttpResponse(build(latest).strip())
    key = f"panel:{name}:{latest}"
    html = page_cache.get(key)
    if html is None:
        html = build(latest).strip()
        page_cache.set(key, html, ttl)
    return HttpResponse(html)


@require_GET
@never_cache
def home_strip(request):
    """Return the front page's live-markets strip: most active and biggest movers."""
    return _fragment("home", lambda latest: render_to_string("markets/panels/home_strip.html", {**selectors.home_strip_rows(), "last_trade_id": latest}))


@require_GET
@never_cache
def article_panel(request, article_id: int):
    """Return the markets on one published story, with their move since it was published."""

    def build(latest: int) -> str:
        rows = selectors.article_market_rows(article_id=article_id)
        return render_to_string("markets/panels/article.html", {"rows": rows, "last_trade_id": latest})

    return _fragment(f"article:{article_id}", build)


@require_GET
@never_cache
def section_panel(request, section_id: int):
    """Return the busiest trading markets linked to stories in one section and its subsections."""

    def build(latest: int) -> str:
        section, rows, total = selectors.section_market_rows(section_id=section_id)
        index_url = _index_url(section=section.slug) if section else ""
        context = {"section": section, "rows": rows, "total": total, "index_url": index_url, "last_trade_id": latest}
        return render_to_string("markets/panels/section.html", context)

    return _fragment(f"section:{section_id}", build)
