"""Every write to the newsroom's content goes through here."""

from __future__ import annotations

import html
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import nh3
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import F
from django.utils import timezone
from django.utils.text import slugify
from wagtail.models import Page, Site

from .exceptions import IngestError
from .ingest.types import MAX_ARTICLE_TEXT_BYTES, Block, ParsedArticle, ParseError, too_large
from .models import ArticlePage, ContentGeneration, Desk, FeedSource, HomePage, Person, Region, SectionPage

# Tags and attributes a paragraph may keep; everything else is stripped.
ALLOWED_TAGS = {"b", "i", "a", "br", "ul", "ol", "li"}
ALLOWED_ATTRIBUTES = {"a": {"href"}}
_TAG_RENAMES = (("<strong>", "<b>"), ("</strong>", "</b>"), ("<em>", "<i>"), ("</em>", "</i>"))


def bump_content_generation() -> None:
    """Advance the counter that invalidates every process's page cache."""
    updated = ContentGeneration.objects.filter(pk=1).update(value=F("value") + 1)
    if not updated:
        ContentGeneration.objects.get_or_create(pk=1, defaults={"value": 1})


def stamp_publication_date(*, article: ArticlePage) -> None:
    """Give ``article`` a dateline at its first publication if it has none."""
    if article.published_at is None:
        when = article.first_published_at or timezone.now()
        ArticlePage.objects.filter(pk=article.pk, published_at__isnull=True).update(published_at=when)
        article.published_at = when


def ensure_home_page(*, title: str = "Bellwether") -> HomePage:
    """Return the site's home page, creating it (and pointing the Site at it) once.

    Wagtail's empty "Welcome" placeholder page is removed on the way.
    """
    home = HomePage.objects.first()
    if home is not None:
        return home
    with transaction.atomic():
        root = Page.get_first_root_node() or _create_root()
        for child in root.get_children():
            if child.specific_class is Page and child.is_leaf():
                child.delete()  # also deletes a Site rooted there
        home = root.add_child(
            instance=HomePage(title=title, slug=_free_slug(root, "home"), intro="News, and what happens next.")
        )
        home.save_revision().publish()
        site = Site.objects.filter(is_default_site=True).first()
        if site is None:
            Site.objects.create(hostname="localhost", port=80, root_page=home, is_default_site=True, site_name=title)
        else:
            site.root_page = home
            site.save(update_fields=["root_page"])
    return home


def _create_root() -> Page:
    """Create the tree's root (Wagtail's migrations do this; a flushed database lacks it)."""
    from django.conf import settings
    from wagtail.coreutils import get_supported_content_language_variant
    from wagtail.models import Locale

    Locale.objects.get_or_create(language_code=get_supported_content_language_variant(settings.LANGUAGE_CODE))
    return Page.add_root(instance=Page(title="Root", slug="root"))


def ensure_section_path(*, path: tuple[str, ...], home: HomePage) -> SectionPage:
    """Return the section at the end of ``path``, creating missing sections.

    Names match case-insensitively, so "diplomacy" finds "Diplomacy".
    """
    if not path:
        raise IngestError("an article needs a section")
    parent: Page = home
    section = None
    for name in path:
        name = " ".join(name.split())
        section = (
            SectionPage.objects.child_of(parent).filter(title__iexact=name).first()
        )
        if section is None:
            section = parent.add_child(instance=SectionPage(title=name, slug=_free_slug(parent, name)))
            section.save_revision().publish()
        parent = section
    return section


def _free_slug(parent: Page, text: str) -> str:
    base = slugify(text)
    if len(base) > 70:
        base = base[:71].rsplit("-", 1)[0]  # whole words only
    base = base or "item"
    taken = set(parent.get_children().filter(slug__startswith=base).values_list("slug", flat=True))
    if base not in taken:
        return base
    n = 2
    while f"{base}-{n}" in taken:
        n += 1
    return f"{base}-{n}"


def _named(model, name: str):
    name = " ".join(name.split())
    if not name:
        return None
    found = model.objects.filter(name__iexact=name).first()
    if found:
        return found
    slug = slugify(name)[:110] or uuid.uuid4().hex[:8]
    if model.objects.filter(slug=slug).exists():
        slug = f"{slug}-{uuid.uuid4().hex[:6]}"
    return model.objects.create(name=name, slug=slug)


def clean_html(fragment: str) -> str:
    """Return ``fragment`` reduced to the inline markup a paragraph may hold."""
    for old, new in _TAG_RENAMES:
        fragment = fragment.replace(old, new)
    return nh3.clean(fragment, tags=ALLOWED_TAGS, attributes=ALLOWED_ATTRIBUTES, link_rel="noopener nofollow").strip()


def body_stream(blocks: list[Block]) -> list[dict]:
    """Return StreamField data for parsed body blocks."""
    stream = []
    for block in blocks:
        if block.kind == "heading":
            stream.append({"type": "heading", "value": block.text.strip()})
        elif block.kind == "quote":
            stream.append({"type": "quote", "value": {"text": block.text.strip(), "attribution": ""}})
        else:
            inner = clean_html(block.html) if block.html else html.escape(block.text.strip(), quote=False)
            if inner:
                stream.append({"type": "paragraph", "value": f"<p>{inner}</p>"})
    return stream


def upsert_article(*, item: ParsedArticle, default_section: tuple[str, ...] = ("News",)) -> tuple[ArticlePage, bool]:
    """Create or update the published article for ``item``; return it and whether it is new.

    One transaction: a failure leaves no partial article, section or tag.
    """
    if not item.headline.strip():
        raise IngestError("no headline")
    if not item.body:
        raise IngestError("no body text")
    size = item.text_bytes()
    if size > MAX_ARTICLE_TEXT_BYTES:
        raise IngestError(f"{too_large(size)}; split it or trim it")
    with transaction.atomic():
        home = ensure_home_page()
        section = ensure_section_path(path=item.section_path or default_section, home=home)
        article = ArticlePage.objects.filter(source_key=item.source_key).first()
        created = article is None
        if created:
            article = ArticlePage(source_key=item.source_key, slug=_free_slug(section, item.slug or item.headline))
            _apply_fields(article, item)
            section.add_child(instance=article)
        else:
            if article.get_parent().pk != section.pk:
                article.move(section, pos="last-child")
                article = ArticlePage.objects.get(pk=article.pk)
            _apply_fields(article, item)
        # Cluster relations live on the instance until the revision publishes them.
        names = [name for name in item.authors if name.strip()]
        if item.expert.strip() and not any(n.strip().lower() == item.expert.strip().lower() for n in names):
            names.insert(0, item.expert)
        article.authors.set([_named(Person, name) for name in names])
        if item.expert.strip():
            mark_expert(name=item.expert, credentials=item.credentials)
        article.tags.set([t.strip() for t in item.tags if t.strip()])
        article.save_revision().publish()
    return article, created


def _apply_fields(article: ArticlePage, item: ParsedArticle) -> None:
    """Copy the parsed values onto ``article`` (not yet saved)."""
    article.title = item.headline.strip()[:255]
    article.dek = item.dek.strip()
    article.body = body_stream(item.body)
    article.region = _named(Region, item.region)
    article.desk = _named(Desk, item.desk)
    article.featured = item.featured
    article.source_outlet = item.source_outlet[:200]
    article.canonical_url = item.canonical_url[:500]
    article.published_at = item.published_at or article.published_at
    article.updated_at = item.updated_at
    article.kind = item.kind if item.kind in ArticlePage.Kind.values else ArticlePage.Kind.NEWS
    article.stated_forecasts = [dict(f) for f in item.forecasts]


def mark_expert(*, name: str, credentials: str = "") -> Person:
    """Mark the person called ``name`` as an expert (creating them if new) and set their credentials if given."""
    person = _named(Person, name)
    changes = {"is_expert": True}
    if credentials.strip():
        changes["credentials"] = " ".join(credentials.split())[:250]
    Person.objects.filter(pk=person.pk).update(**changes)
    for field_name, value in changes.items():
        setattr(person, field_name, value)
    return person


@dataclass
class IngestReport:
    """What an ingest run did: counts and one line per failure."""

    created: int = 0
    updated: int = 0
    unchanged_feeds: int = 0
    failures: list[str] = field(default_factory=list)


def ingest_sources(
    *,
    sources: list[str],
    default_section: tuple[str, ...] = ("News",),
    region: str = "",
    progress: Callable[[Iterable], Iterable] = lambda items: items,
) -> IngestReport:
    """Read every file, folder or URL in ``sources`` and upsert its articles.

    Each article is its own transaction: a bad item is reported and skipped,
    the others still go in. ``region`` fills in items that name none.
    """
    from .ingest.sources import expand_paths, read_file, read_url

    report = IngestReport()
    known_sections = list(SectionPage.objects.values_list("title", flat=True).distinct())
    known_regions = list(Region.objects.values_list("name", flat=True))
    results: list[tuple[str, ParsedArticle | ParseError]] = []
    for source in sources:
        if source.startswith(("http://", "https://")):
            feed = FeedSource.objects.filter(url=source).first()
            fetched = read_url(source, etag=feed.etag if feed else "", modified=feed.modified if feed else "")
            if fetched.not_modified:
                report.unchanged_feeds += 1
            results.extend(fetched.items)
            if fetched.etag or fetched.modified or fetched.not_modified:
                FeedSource.objects.update_or_create(
                    url=source[:1000],
                    defaults={"etag": fetched.etag[:500], "modified": fetched.modified[:100], "fetched_at": timezone.now()},
                )
        else:
            path = Path(source)
            if not path.exists():
                results.append((source, ParseError("no such file or folder")))
                continue
            for file in expand_paths([path]):
                results.extend(read_file(file, known_sections=known_sections, known_regions=known_regions))
    for label, item in progress(results):
        if isinstance(item, ParseError):
            report.failures.append(f"{label}: {item}")
            continue
        if region and not item.region:
            item.region = region
        try:
            _, created = upsert_article(item=item, default_section=default_section)
        except (IngestError, ValidationError) as exc:
            report.failures.append(f"{label}: {_one_line(exc)}")
            continue
        if created:
            report.created += 1
        else:
            report.updated += 1
    return report


def _one_line(exc: Exception) -> str:
    if isinstance(exc, ValidationError):
        return "; ".join(f"{k}: {' '.join(v)}" for k, v in exc.message_dict.items()) if hasattr(exc, "error_dict") else " ".join(exc.messages)
    return " ".join(str(exc).split())


DEMO_EDITOR = ("editor", "bellwether-demo")


def ensure_demo_editor() -> tuple[str, str]:
    """Create (or reset) the demo editor: Wagtail's Editors and Moderators, and market resolver."""
    from django.contrib.auth import get_user_model
    from django.contrib.auth.models import Group

    username, password = DEMO_EDITOR
    user, _ = get_user_model().objects.get_or_create(username=username, defaults={"email": "editor@example.org"})
    user.set_password(password)
    user.is_staff = True
    user.save()
    user.groups.add(*Group.objects.filter(name__in=["Editors", "Moderators", "Resolvers"]))
    return username, password
