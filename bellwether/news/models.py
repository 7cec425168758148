"""The newsroom's content model.

Section pages form Wagtail's page tree, so an article's breadcrumb
("Politics > Diplomacy > Bilateral Relations") is its path. Regions, desks
and people are snippets with their own listing pages; hashtags are tags.
"""

from __future__ import annotations

from django.conf import settings
from django.core.paginator import Paginator
from django.db import models
from django.urls import reverse
from django.utils import timezone
from django.utils.html import strip_tags
from django.utils.text import Truncator, slugify
from modelcluster.contrib.taggit import ClusterTaggableManager
from modelcluster.fields import ParentalKey, ParentalManyToManyField
from taggit.models import TaggedItemBase
from wagtail import blocks
from wagtail.admin.panels import FieldPanel, MultiFieldPanel
from wagtail.contrib.routable_page.models import RoutablePageMixin, path
from wagtail.fields import StreamField
from wagtail.models import Page
from wagtail.search import index
from wagtail.snippets.models import register_snippet


class _NamedSlugged(models.Model):
    """A named thing with a unique slug, listed on a page of its own."""

    name = models.CharField(max_length=120, unique=True)
    slug = models.SlugField(max_length=120, unique=True, allow_unicode=True)
    description = models.TextField(blank=True)

    panels = [FieldPanel("name"), FieldPanel("slug"), FieldPanel("description")]

    class Meta:
        abstract = True
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    def save(self, *args, **kwargs):
        if not self.slug:
            self.slug = slugify(self.name, allow_unicode=True)[:120]
        super().save(*args, **kwargs)


@register_snippet
class Region(_NamedSlugged):
    """A part of the world a story is about ("Asia-Pacific")."""

    def get_absolute_url(self) -> str:
        return reverse("news:region", args=[self.slug])


@register_snippet
class Desk(_NamedSlugged):
    """A team that can carry a byline ("National Security Desk")."""

    def get_absolute_url(self) -> str:
        return reverse("news:desk", args=[self.slug])


@register_snippet
class Person(_NamedSlugged):
    """A reporter or contributor who appears in bylines.

    An expert is a person with ``is_expert`` set: their author page is their
    profile (credentials, photo, every piece), and an expert insight names
    them as its first expert in the byline.
    """

    role = models.CharField(max_length=120, blank=True, help_text="E.g. 'Diplomatic correspondent'.")
    credentials = models.CharField(
        max_length=250, blank=True, help_text="Shown beside an expert's name, e.g. 'Professor of Political Science, ...'."
    )
    photo = models.ForeignKey(
        "wagtailimages.Image", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    is_expert = models.BooleanField(
        default=False, help_text="An outside expert: expert insights name them, and their forecasts show on markets."
    )

    panels = _NamedSlugged.panels + [
        FieldPanel("role"),
        MultiFieldPanel([FieldPanel("is_expert"), FieldPanel("credentials"), FieldPanel("photo")], heading="Expert profile"),
    ]

    class Meta(_NamedSlugged.Meta):
        verbose_name_plural = "people"

    def get_absolute_url(self) -> str:
        return reverse("news:author", args=[self.slug])


class HomePage(Page):
    """The front page: lead story, headlines, latest per section."""

    intro = models.CharField(max_length=250, blank=True)

    content_panels = Page.content_panels + [FieldPanel("intro")]
    subpage_types = ["news.SectionPage"]
    max_count = 1

    def get_context(self, request, *args, **kwargs):
        from .selectors import home_page_context

        context = super().get_context(request, *args, **kwargs)
        context.update(home_page_context(home=self))
        return context


class SectionPage(RoutablePageMixin, Page):
    """A section of the paper; nested sections make the breadcrumb."""

    intro = models.TextField(blank=True)

    content_panels = Page.content_panels + [FieldPanel("intro")]
    parent_page_types = ["news.HomePage", "news.SectionPage"]
    subpage_types = ["news.SectionPage", "news.ArticlePage"]

    @path("")
    def index(self, request):
        from .selectors import attach_sections, section_articles

        paginator = Paginator(section_articles(section=self), settings.ARTICLES_PER_PAGE)
        page_obj = paginator.get_page(request.GET.get("page"))
        return self.render(
            request,
            context_overrides={
                "page_obj": page_obj,
                "articles": attach_sections(page_obj.object_list),
                "subsections": self.get_children().live().type(SectionPage).specific(),
            },
        )

    @path("feed/rss/", name="rss")
    def rss(self, request):
        from .feeds import SectionRssFeed

        return SectionRssFeed()(request, section=self)

    @path("feed/atom/", name="atom")
    def atom(self, request):
        from .feeds import SectionAtomFeed

        return SectionAtomFeed()(request, section=self)


class ArticlePageTag(TaggedItemBase):
    content_object = ParentalKey("news.ArticlePage", related_name="tagged_items", on_delete=models.CASCADE)


SUMMARY_WORDS = 40

BODY_BLOCKS = [
    ("heading", blocks.CharBlock(form_classname="title", icon="title")),
    ("paragraph", blocks.RichTextBlock(features=["bold", "italic", "link", "ol", "ul"])),
    (
        "quote",
        blocks.StructBlock(
            [("text", blocks.TextBlock()), ("attribution", blocks.CharBlock(required=False))],
            icon="openquote",
        ),
    ),
]


class ArticlePage(Page):
    """One story: headline (the page title), standfirst, body and byline.

    An expert insight's expert is the first expert in its byline (see
    ``expert``); the forecasts it states are stored raw in
    ``stated_forecasts`` until ``markets`` turns them into rows.
    """

    class Kind(models.TextChoices):
        NEWS = "news", "News"
        ANALYSIS = "analysis", "Analysis"
        INSIGHT = "insight", "Expert insight"

    kind = models.CharField(max_length=10, choices=Kind.choices, default=Kind.NEWS, db_index=True)
    dek = models.TextField("standfirst", blank=True, help_text="One or two sentences under the headline.")
    body = StreamField(BODY_BLOCKS, blank=True)
    authors = ParentalManyToManyField("news.Person", blank=True, related_name="articles")
    desk = models.ForeignKey("news.Desk", null=True, blank=True, on_delete=models.SET_NULL, related_name="articles")
    region = models.ForeignKey(
        "news.Region", null=True, blank=True, on_delete=models.SET_NULL, related_name="articles"
    )
    tags = ClusterTaggableManager(through=ArticlePageTag, blank=True)
    published_at = models.DateTimeField(
        null=True, blank=True, db_index=True, help_text="Shown as the dateline; set at first publication if empty."
    )
    updated_at = models.DateTimeField(null=True, blank=True, help_text="Set to show an 'Updated' date.")
    featured = models.BooleanField(default=False, db_index=True, help_text="Lead story on the home page.")
    source_outlet = models.CharField(max_length=200, blank=True, help_text="For pieces from other outlets.")
    canonical_url = models.URLField(max_length=500, blank=True)
    # Identity of an ingested item across runs, so a re-ingest updates it.
    source_key = models.CharField(max_length=500, null=True, blank=True, unique=True, editable=False)
    # Forecasts as written in the source ([{"question", "outcome", "probability"}]);
    # markets.services.record_stated_forecasts turns them into ExpertForecast rows.
    stated_forecasts = models.JSONField(default=list, blank=True, editable=False)

    search_fields = Page.search_fields + [
        index.SearchField("dek"),
        index.SearchField("body"),
        index.FilterField("featured"),
        index.FilterField("published_at"),
    ]

    content_panels = Page.content_panels + [
        FieldPanel("kind"),
        FieldPanel("dek"),
        FieldPanel("body"),
        MultiFieldPanel(
            [FieldPanel("authors"), FieldPanel("desk"), FieldPanel("region"), FieldPanel("tags")],
            heading="Byline and filing",
        ),
        MultiFieldPanel(
            [
                FieldPanel("published_at"),
                FieldPanel("updated_at"),
                FieldPanel("featured"),
                FieldPanel("source_outlet"),
                FieldPanel("canonical_url"),
            ],
            heading="Dates, placement and source",
        ),
    ]
    parent_page_types = ["news.SectionPage"]
    subpage_types: list[str] = []

    class Meta:
        indexes = [models.Index(fields=["featured", "-published_at"], name="article_featured_recent")]

    @property
    def summary(self) -> str:
        """Return the standfirst, or the opening of the first paragraph when there is none."""
        if self.dek:
            return self.dek
        for block in self.body:
            if block.block_type == "paragraph":
                return Truncator(strip_tags(block.value.source)).words(SUMMARY_WORDS)
        return ""

    @property
    def is_insight(self) -> bool:
        return self.kind == self.Kind.INSIGHT

    @property
    def expert(self) -> Person | None:
        """Return the expert behind an insight: the first byline person marked as an expert, else the first byline person.

        None for news and analysis. Reads ``authors.all()``, so a prefetched
        byline costs no query.
        """
        if self.kind != self.Kind.INSIGHT:
            return None
        people = list(self.authors.all())
        return next((p for p in people if p.is_expert), people[0] if people else None)

    @property
    def dateline(self):
        """Return the date shown to readers."""
        return self.published_at or self.first_published_at or timezone.now()

    def get_context(self, request, *args, **kwargs):
        from .selectors import article_page_context

        context = super().get_context(request, *args, **kwargs)
        context.update(article_page_context(article=self))
        return context


class ContentGeneration(models.Model):
    """A single counter bumped on every publish, unpublish or move.

    Cached public pages carry the generation they were rendered at, so every
    server process drops stale copies within a second of a change.
    """

    value = models.BigIntegerField(default=0)


class FeedSource(models.Model):
    """A remote feed that `bellwether ingest` has fetched, for conditional GETs."""

    url = models.URLField(max_length=1000, unique=True)
    etag = models.CharField(max_length=500, blank=True)
    modified = models.CharField(max_length=100, blank=True)
    fetched_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return self.url
