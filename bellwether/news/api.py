"""Read-only article endpoints."""

from __future__ import annotations

import datetime as dt

from ninja import Field, Path, Query, Router, Schema
from ninja.errors import HttpError

from bellwether.api_common import ANY_ROUTE, MAX_PAGE_ID, cursor_param, errors
from bellwether.paging import decode_cursor, encode_cursor

from . import selectors

router = Router(tags=["articles"])


class ArticleOut(Schema):
    id: int
    headline: str
    dek: str
    url: str
    section: list[str]
    region: str | None
    desk: str | None
    authors: list[str]
    tags: list[str]
    featured: bool
    published_at: dt.datetime


class ArticleDetailOut(ArticleOut):
    body: list[dict]


class ArticlePage(Schema):
    items: list[ArticleOut]
    next: str | None = Field(None, description="send as ?cursor= for the next page; null on the last page")


ARTICLES_PAGE_MAX = 100


def article_out(article, *, body: bool = False) -> dict:
    data = {
        "id": article.pk,
        "headline": article.title,
        "dek": article.dek,
        "url": article.url or "",
        "section": [p.title for p in selectors.breadcrumb(article)],
        "region": article.region.name if article.region else None,
        "desk": article.desk.name if article.desk else None,
        "authors": [p.name for p in article.authors.all()],
        "tags": [t.name for t in article.tags.all()],
        "featured": article.featured,
        "published_at": article.dateline,
    }
    if body:
        data["body"] = [{"type": b.block_type, "value": b.block.get_prep_value(b.value)} for b in article.body]
    return data


@router.get("", response={200: ArticlePage, **errors(*ANY_ROUTE)}, auth=None, summary="Latest articles")
def list_articles(request, limit: int = Query(20, ge=1, le=ARTICLES_PAGE_MAX), cursor: str | None = cursor_param()):
    """Published articles, newest first, a page at a time."""
    after = decode_cursor(cursor, "datetime?", "int") if cursor else None
    articles = selectors.articles_page(limit=limit + 1, after=after)
    page = articles[:limit]
    return {
        "items": [article_out(a) for a in page],
        "next": encode_cursor(page[-1].published_at, page[-1].pk) if len(articles) > limit else None,
    }


@router.get("/{article_id}", response={200: ArticleDetailOut, **errors(*ANY_ROUTE, 404)}, auth=None, summary="One article with its body")
def article_detail(request, article_id: int = Path(..., ge=1, le=MAX_PAGE_ID)):
    article = selectors.live_articles().filter(pk=article_id).first()
    if article is None:
        raise HttpError(404, f"no article {article_id}")
    return article_out(article, body=True)
