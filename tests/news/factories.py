"""Build articles through the same service ingestion uses."""

from __future__ import annotations

import datetime as dt
import itertools

from bellwether.news.ingest.types import Block, ParsedArticle
from bellwether.news.services import upsert_article

_counter = itertools.count(1)


def make_article(**overrides):
    """Publish an article and return it; keyword arguments override ParsedArticle fields."""
    n = next(_counter)
    fields = dict(
        source_key=f"test:{n}",
        headline=f"Story number {n}",
        dek=f"Standfirst of story {n}.",
        body=[Block(kind="paragraph", text=f"Body text of story {n} about harbours."), Block(kind="heading", text="More"), Block(kind="paragraph", text="Second paragraph.")],
        section_path=("World",),
        region="Europe",
        desk="Data Desk",
        authors=("Ada Quill",),
        tags=("harbours",),
        published_at=dt.datetime(2026, 11, 1, tzinfo=dt.timezone.utc) + dt.timedelta(hours=n),
    )
    fields.update(overrides)
    article, _ = upsert_article(item=ParsedArticle(**fields))
    return article
