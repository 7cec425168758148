"""Read-only article endpoints."""

from __future__ import annotations

import datetime as dt

from ninja import Router, Schema
from ninja.errors import HttpError

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


@router.get("", response=list[ArticleOut], auth=None, summary="Latest articles")
def list_articles(request, limit: int = 20):
    return [article_out(a) for a in selectors.live_articles()[: min(max(limit, 1), 100)]]


@router.get("/{article_id}", response=ArticleDetailOut, auth=None, summary="One article with its body")
def article_detail(request, article_id: int):
    article = selectors.live_articles().filter(pk=article_id).first()
    if article is None:
        raise HttpError(404, f"no article {article_id}")
    return article_out(article, body=True)
