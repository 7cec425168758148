"""Markets in the Wagtail admin: list, create, edit, link to articles, resolve.

Who may do what follows the roles in ``bellwether.accounts.services``:
editors (and superusers) create, edit and link markets; resolvers resolve
and cancel them. Wagtail's ``access_admin`` permission guards the whole
admin first. Every write goes through ``bellwether.markets.services``.

A role check that fails answers 403 with an explanation, rather than
Wagtail's usual redirect to the dashboard, so a refused resolver action is
visible as such.
"""

from __future__ import annotations

import django_filters
from django.contrib.auth import get_user_model
from django.db.models import Count, Prefetch, Q
from django.http import HttpResponseNotAllowed
from django.shortcuts import get_object_or_404, redirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.functional import cached_property
from django.views import View
from wagtail.admin import messages
from wagtail.admin.filters import WagtailFilterSet
from wagtail.admin.ui.tables import Column, StatusTagColumn, TitleColumn
from wagtail.admin.utils import get_valid_next_url_from_request
from wagtail.admin.views.generic import IndexView
from wagtail.admin.viewsets.model import ModelViewSet
from wagtail.admin.widgets.button import Button
from wagtail.permission_policies.base import BasePermissionPolicy

from bellwether.accounts.services import ROLE_GROUPS
from bellwether.ledger.services import format_micro
from bellwether.news.models import ArticlePage

from . import lmsr, services
from .exceptions import MarketError, StalePreview
from .forms import LinkArticleForm, LinkMarketForm, MarketCreateForm, MarketEditForm, ResolveForm
from .models import Market, MarketArticle, Outcome, Position
from .templatetags.market_format import credits, percent

NAMESPACE = "markets_admin"
TEMPLATES = "markets/admin/"
_ROLES_CACHE = "_bellwether_role_groups"


def url(name: str, *args) -> str:
    """Return the admin URL of one of the market views."""
    return reverse(f"{NAMESPACE}:{name}", args=args)


# --- roles and permissions ------------------------------------------------


def user_has_role(user, role: str) -> bool:
    """Return True when ``user`` holds ``role``; the user's groups are read once per request."""
    if not user.is_authenticated or not user.is_active:
        return False
    if user.is_superuser:
        return True
    names = getattr(user, _ROLES_CACHE, None)
    if names is None:
        names = set(user.groups.filter(name__in=ROLE_GROUPS.values()).values_list("name", flat=True))
        setattr(user, _ROLES_CACHE, names)
    return ROLE_GROUPS[role] in names


class MarketPermissionPolicy(BasePermissionPolicy):
    """Market permissions from roles: editors add and change, resolvers resolve, both view; nobody deletes.

    A market holds money, so it is never deleted: it is cancelled instead.
    """

    _ACTIONS = {"add": ("editor",), "change": ("editor",), "view": ("editor", "resolver"), "resolve": ("resolver",)}

    def user_has_permission(self, user, action):
        return any(user_has_role(user, role) for role in self._ACTIONS.get(action, ()))

    def users_with_any_permission(self, actions):
        groups = {ROLE_GROUPS[role] for action in actions for role in self._ACTIONS.get(action, ())}
        return get_user_model().objects.filter(is_active=True).filter(
            Q(is_superuser=True) | Q(groups__name__in=groups)
        ).distinct()


def forbidden(request, message: str):
    """Answer 403 inside the admin's frame, saying what is missing."""
    return TemplateResponse(request, TEMPLATES + "forbidden.html", {"message": message, "header_title": "Not allowed"}, status=403)


class RoleRequiredMixin:
    """Refuse the view with a 403 unless the user holds ``role``."""

    role = "editor"
    refusal = "Only editors can change markets."

    def dispatch(self, request, *args, **kwargs):
        if not user_has_role(request.user, self.role):
            return forbidden(request, self.refusal)
        return super().dispatch(request, *args, **kwargs)


# --- the listing --------------------------------------------------------------


STATUS_CHOICES = [
    ("draft", "Draft"),
    ("open", "Open"),
    ("closed", "Closed (awaiting resolution)"),
    ("resolved", "Resolved"),
    ("cancelled", "Cancelled"),
]


class MarketFilterSet(WagtailFilterSet):
    status = django_filters.ChoiceFilter(label="Status", choices=STATUS_CHOICES, method="filter_status", empty_label="Any")

    class Meta:
        model = Market
        fields: list[str] = []

    def filter_status(self, queryset, name, value):
        now = timezone.now()
        if value == "open":
            return queryset.filter(status=Market.Status.OPEN, close_at__gt=now)
        if value == "closed":
            return queryset.filter(status=Market.Status.OPEN, close_at__lte=now)
        return queryset.filter(status=value)


def leading_odds(market: Market) -> str:
    """Return "Yes 63%" for a binary market, the leading outcome and its price otherwise."""
    outcomes = list(market.outcomes.all())
    if not outcomes:
        return ""
    prices = lmsr.prices_after_micro([o.shares_micro for o in outcomes], market.liquidity_b_micro)
    if market.kind == Market.Kind.BINARY:
        index = next((i for i, o in enumerate(outcomes) if o.slug == "yes"), 0)
    else:
        index = max(range(len(outcomes)), key=lambda i: prices[i])
    return f"{outcomes[index].name} {percent(prices[index])}"


def _close_time(market: Market) -> str:
    return timezone.localtime(market.close_at).strftime("%d %b %Y %H:%M")


class MarketIndexView(IndexView):
    """Every market with its state, odds, volume and articles; filter, search, sort."""

    page_title = "Markets"
    any_permission_required = ["view"]
    default_ordering = "-created_at"
    search_fields = ["question"]

    @cached_property
    def no_results_message(self):
        if self.is_searching or self.is_filtering:
            return "No markets match these filters."
        return "No markets yet. Editors create them with “Add market” or from an article's “Markets” button."

    def get_base_queryset(self):
        return Market.objects.annotate(article_count=Count("article_links", distinct=True)).prefetch_related(
            Prefetch("outcomes", queryset=Outcome.objects.order_by("position"))
        )

    def _row_url(self, market: Market) -> str | None:
        user = self.request.user
        if user_has_role(user, "editor"):
            return url("edit", market.pk)
        if user_has_role(user, "resolver"):
            return url("resolve", market.pk)
        return None

    @cached_property
    def columns(self):
        title = self._get_title_column_class(TitleColumn)("question", label="Question", sort_key="question", get_url=self._row_url)
        return [
            title,
            StatusTagColumn("display_status", label="Status", sort_key="status", primary=lambda m: m.display_status == "open"),
            Column("odds", label="Odds now", accessor=leading_odds),
            Column("volume", label="Volume (credits)", accessor=lambda m: credits(m.volume_micro), sort_key="volume_micro"),
            Column("trade_count", label="Trades", sort_key="trade_count"),
            Column("close_at", label="Closes", accessor=_close_time, sort_key="close_at"),
            Column("article_count", label="Articles", sort_key="article_count"),
        ]

    def get_valid_orderings(self):
        return super().get_valid_orderings() + ["created_at", "-created_at"]

    @cached_property
    def add_item_label(self):
        return "Add market"

    def get_list_more_buttons(self, instance):
        buttons = []
        user = self.request.user
        if user_has_role(user, "editor"):
            buttons.append(Button("Edit", url=url("edit", instance.pk), icon_name="edit", priority=10))
        if user_has_role(user, "resolver") and instance.status in (Market.Status.OPEN, Market.Status.RESOLVED, Market.Status.CANCELLED):
            label = "Resolution" if instance.status != Market.Status.OPEN else "Resolve or cancel"
            buttons.append(Button(label, url=url("resolve", instance.pk), icon_name="tasks", priority=20))
        if instance.status != Market.Status.DRAFT:
            buttons.append(Button("View on site", url=instance.get_absolute_url(), icon_name="link-external", priority=30))
        return buttons


# --- create and edit ----------------------------------------------------------


class AdminPage(View):
    """A plain admin page: renders ``template`` with the header fields Wagtail's base template reads."""

    template = ""
    title = ""

    def render(self, context: dict, status: int = 200):
        context.setdefault("header_title", self.title)
        context.setdefault("page_title", self.title)
        context.setdefault("header_icon", "tasks")
        context.setdefault("breadcrumbs_items", [
            {"url": reverse("wagtailadmin_home"), "label": "Home"},
            {"url": url("index"), "label": "Markets"},
            {"url": "", "label": self.title},
        ])
        return TemplateResponse(self.request, TEMPLATES + self.template, context, status=status)


class MarketCreateView(RoleRequiredMixin, AdminPage):
    """The new-market form; ``?article=<id>`` pre-links an article, ``next`` says where to return."""

    template = "create.html"
    title = "Add market"
    refusal = "Only editors can create markets."

    def get(self, request):
        initial = {}
        article_id = request.GET.get("article", "")
        if article_id.isdigit():
            initial["article_1"] = ArticlePage.objects.filter(pk=int(article_id)).first()
        return self.render({"form": MarketCreateForm(initial=initial), "next": get_valid_next_url_from_request(request)})

    def post(self, request):
        form = MarketCreateForm(request.POST)
        next_url = get_valid_next_url_from_request(request)
        if form.is_valid():
            try:
                market = services.create_market(created_by=request.user, **form.service_kwargs())
            except MarketError as exc:
                form.add_error(None, str(exc))
            else:
                messages.success(request, f"Market “{market.question}” created and its pool funded.", buttons=[
                    messages.button(url("edit", market.pk), "Edit"),
                ])
                return redirect(next_url or url("edit", market.pk))
        messages.validation_error(request, "The market could not be created. Please correct the errors below.", form)
        return self.render({"form": form, "next": next_url}, status=200)


def _linked_articles(market: Market) -> list[MarketArticle]:
    return list(MarketArticle.objects.filter(market=market).select_related("article").order_by("linked_at", "id"))


class MarketEditView(RoleRequiredMixin, AdminPage):
    """Edit a market's texts and close time; open a draft; link and unlink articles."""

    template = "edit.html"
    refusal = "Only editors can edit markets."

    def setup(self, request, *args, **kwargs):
        super().setup(request, *args, **kwargs)
        self.market = get_object_or_404(Market.objects.prefetch_related(
            Prefetch("outcomes", queryset=Outcome.objects.order_by("position"))
        ), pk=kwargs["pk"])
        self.title = f"Edit market: {self.market.question}"

    def context(self, form, link_form=None) -> dict:
        market = self.market
        outcomes = list(market.outcomes.all())
        prices = lmsr.prices_after_micro([o.shares_micro for o in outcomes], market.liquidity_b_micro)
        return {
            "market": market,
            "form": form,
            "link_form": link_form or LinkArticleForm(),
            "outcomes": [(o, p) for o, p in zip(outcomes, prices)],
            "liquidity_b": format_micro(market.liquidity_b_micro),
            "links": _linked_articles(market),
            "settled": market.status in (Market.Status.RESOLVED, Market.Status.CANCELLED),
            "can_resolve": user_has_role(self.request.user, "resolver") and market.status != Market.Status.DRAFT,
            "header_title": self.title,
            "page_title": "Edit market",
        }

    def get(self, request, pk):
        return self.render(self.context(MarketEditForm(market=self.market)))

    def post(self, request, pk):
        form = MarketEditForm(request.POST, market=self.market)
        if form.is_valid():
            try:
                services.update_market(market_slug=self.market.slug, **form.cleaned_data)
            except MarketError as exc:
                form.add_error(None, str(exc))
            else:
                messages.success(request, "Market saved.")
                return redirect(url("edit", self.market.pk))
        messages.validation_error(request, "The market could not be saved. Please correct the errors below.", form)
        return self.render(self.context(form))


class MarketOpenView(RoleRequiredMixin, View):
    """Open a draft market for trading (POST)."""

    refusal = "Only editors can open markets."

    def post(self, request, pk):
        market = get_object_or_404(Market, pk=pk)
        try:
            services.open_market(market_slug=market.slug)
        except MarketError as exc:
            messages.error(request, f"The market was not opened: {exc}.")
        else:
            messages.success(request, "The market is open for trading.")
        return redirect(url("edit", market.pk))


class MarketLinkArticleView(RoleRequiredMixin, View):
    """Link an article chosen in the page chooser to the market (POST from the edit page)."""

    refusal = "Only editors can link markets to articles."

    def post(self, request, pk):
        market = get_object_or_404(Market, pk=pk)
        form = LinkArticleForm(request.POST)
        if form.is_valid():
            services.link_article(market=market, article=form.cleaned_data["article"])
            messages.success(request, f"Linked “{form.cleaned_data['article'].title}”.")
        else:
            messages.error(request, " ".join(form.errors.get("article", ["The article could not be linked."])))
        return redirect(url("edit", market.pk))


class MarketUnlinkArticleView(RoleRequiredMixin, View):
    """Remove one market-article link (POST); ``next`` returns to whichever side asked."""

    refusal = "Only editors can unlink markets from articles."

    def post(self, request, pk, article_id):
        market = get_object_or_404(Market, pk=pk)
        article = get_object_or_404(ArticlePage, pk=article_id)
        if services.unlink_article(market=market, article=article):
            messages.success(request, f"Unlinked “{article.title}” from “{market.question}”.")
        else:
            messages.warning(request, "That article was not linked to this market.")
        return redirect(get_valid_next_url_from_request(request) or url("edit", market.pk))


class ArticleMarketsView(RoleRequiredMixin, AdminPage):
    """The markets linked to one article, from the article's side: unlink, link another, create one."""

    template = "article_markets.html"
    refusal = "Only editors can link markets to articles."

    def setup(self, request, *args, **kwargs):
        super().setup(request, *args, **kwargs)
        self.article = get_object_or_404(ArticlePage, pk=kwargs["page_id"])
        self.title = f"Markets for: {self.article.title}"

    def context(self, form) -> dict:
        links = list(
            MarketArticle.objects.filter(article=self.article)
            .select_related("market").order_by("linked_at", "id")
        )
        here = url("article", self.article.pk)
        return {
            "article": self.article,
            "links": links,
            "form": form,
            "here": here,
            "create_url": f"{url('add')}?article={self.article.pk}&next={here}",
            "page_title": "Markets",
            "breadcrumbs_items": [
                {"url": reverse("wagtailadmin_home"), "label": "Home"},
                {"url": reverse("wagtailadmin_pages:edit", args=[self.article.pk]), "label": self.article.title},
                {"url": "", "label": "Markets"},
            ],
        }

    def get(self, request, page_id):
        return self.render(self.context(LinkMarketForm(article=self.article)))

    def post(self, request, page_id):
        form = LinkMarketForm(request.POST, article=self.article)
        if form.is_valid():
            market = form.cleaned_data["market"]
            services.link_article(market=market, article=self.article)
            messages.success(request, f"Linked “{market.question}”.")
            return redirect(url("article", self.article.pk))
        return self.render(self.context(form))


# --- resolve and cancel ----------------------------------------------------


def _resolution_record(market: Market) -> dict:
    """Return what a settled market paid, holder by holder, for its record page."""
    paid: dict[int, int] = {}
    for user_id, amount in Position.objects.filter(market=market, payout_micro__gt=0).values_list("user_id", "payout_micro"):
        paid[user_id] = paid.get(user_id, 0) + amount
    names = dict(get_user_model().objects.filter(pk__in=paid).values_list("pk", "username"))
    rows = sorted(((names.get(uid, str(uid)), format_micro(amount)) for uid, amount in paid.items()))
    outcome = None
    if market.resolution and market.resolution.get("outcome"):
        outcome = market.outcomes.filter(slug=market.resolution["outcome"]).first()
    return {"paid_rows": rows, "paid_total": format_micro(sum(paid.values())), "winning_outcome": outcome}


class MarketResolveView(RoleRequiredMixin, AdminPage):
    """Step 1: choose how to settle; POST shows step 2, the payout preview, writing nothing.

    A settled market shows its resolution record instead.
    """

    template = "resolve.html"
    role = "resolver"
    refusal = "Only resolvers can resolve or cancel markets."

    def setup(self, request, *args, **kwargs):
        super().setup(request, *args, **kwargs)
        self.market = get_object_or_404(Market.objects.select_related("resolved_by"), pk=kwargs["pk"])
        self.outcomes = list(self.market.outcomes.order_by("position"))
        self.title = f"Resolve: {self.market.question}"

    def base_context(self) -> dict:
        market = self.market
        prices = lmsr.prices_after_micro([o.shares_micro for o in self.outcomes], market.liquidity_b_micro)
        return {
            "market": market,
            "outcomes": list(zip(self.outcomes, prices)),
            "liquidity_b": format_micro(market.liquidity_b_micro),
            "settled": market.status in (Market.Status.RESOLVED, Market.Status.CANCELLED),
            "is_draft": market.status == Market.Status.DRAFT,
            "resolve_url": url("resolve", market.pk),
            "confirm_url": url("resolve_confirm", market.pk),
            "page_title": "Resolve market",
        }

    def form(self, data=None, **kwargs) -> ResolveForm:
        return ResolveForm(data, market=self.market, outcomes=self.outcomes, **kwargs)

    def get(self, request, pk):
        context = self.base_context()
        if context["settled"]:
            context.update(_resolution_record(self.market))
        else:
            context["form"] = self.form()
        return self.render(context)

    def post(self, request, pk):
        context = self.base_context()
        if context["settled"] or context["is_draft"]:
            return redirect(url("resolve", self.market.pk))
        form = self.form(request.POST)
        if "back" in request.POST or not form.is_valid():
            context["form"] = form
            return self.render(context)
        return self.preview(form, context)

    def preview(self, form: ResolveForm, context: dict, *, stale: bool = False):
        """Render step 2: the payouts the chosen resolution would make now."""
        try:
            plan = services.preview_resolution(market=self.market, **form.resolution_kwargs())
        except MarketError as exc:
            form.add_error(None, str(exc))
            context["form"] = form
            return self.render(context)
        data = {**form.cleaned_data, "trade_count": plan.trade_count}
        data["sources"] = "\n".join(form.cleaned_data["sources"])
        for o in self.outcomes:
            data[f"p_{o.slug}"] = data.get(f"p_{o.slug}") or ""
        names = {o.slug: o.name for o in self.outcomes}
        context.update({
            "step": "confirm",
            "stale": stale,
            "description": form.describe(),
            "cancel": form.cleaned_data["action"] == "cancel",
            "confirm_form": self.form(data, hidden=True),
            "note": form.cleaned_data["note"],
            "sources": form.cleaned_data["sources"],
            "holders": [
                {
                    "username": h.username,
                    "shares": [(names[slug], format_micro(amount)) for slug, amount in h.shares_micro.items()],
                    "net_spent": format_micro(h.net_spent_micro),
                    "payout": format_micro(h.payout_micro),
                }
                for h in plan.holders
            ],
            "total": format_micro(plan.total_micro),
            "pool": format_micro(plan.pool_micro),
            "returned": format_micro(plan.returned_micro),
            "cover": format_micro(plan.cover_micro),
            "has_cover": plan.cover_micro > 0,
            "per_share": [(names[slug], format_micro(v)) for slug, v in plan.per_share_micro.items()],
        })
        # A stale preview is a conflict: the resolver's confirmation did not happen.
        return self.render(context, status=409 if stale else 200)


class MarketResolveConfirmView(MarketResolveView):
    """Step 3: resolve for real, unless a trade happened since the preview."""

    def get(self, request, pk):
        return HttpResponseNotAllowed(["POST"])

    def post(self, request, pk):
        market = self.market
        if market.status in (Market.Status.RESOLVED, Market.Status.CANCELLED):
            messages.error(request, f"This market was already {market.get_status_display().lower()}; nothing more was paid.")
            return redirect(url("resolve", market.pk))
        context = self.base_context()
        if context["is_draft"]:
            messages.error(request, "A draft market cannot be resolved: open it first, or leave it unopened.")
            return redirect(url("resolve", market.pk))
        form = self.form(request.POST)
        if not form.is_valid():
            context["form"] = form
            return self.render(context)
        if form.cleaned_data.get("trade_count") != market.trade_count:
            # The preview the resolver confirmed is out of date: show the new one.
            return self.preview(form, context, stale=True)
        try:
            result = services.resolve_market(
                market_slug=market.slug, by=request.user, note=form.cleaned_data["note"],
                sources=form.cleaned_data["sources"], expected_trade_count=form.cleaned_data["trade_count"],
                **form.resolution_kwargs(),
            )
        except StalePreview:
            # A trade slipped in between the check above and the lock.
            return self.preview(form, context, stale=True)
        except MarketError as exc:
            form.add_error(None, str(exc))
            context["form"] = form
            return self.render(context)
        if result.already_done:
            messages.error(request, "This market was already settled; nothing more was paid.")
        else:
            verb = "cancelled" if result.market.status == Market.Status.CANCELLED else "resolved"
            messages.success(
                request,
                f"Market {verb}: paid {format_micro(sum(result.payouts.values()))} credits to "
                f"{len(result.payouts)} holder(s); {format_micro(result.returned_micro)} returned to the treasury.",
            )
        return redirect(url("resolve", market.pk))


# --- the viewset ---------------------------------------------------------------


class MarketViewSet(ModelViewSet):
    """The "Markets" menu item and every market view under /admin/markets/."""

    model = Market
    name = "markets_admin"
    url_prefix = "markets"
    url_namespace = NAMESPACE
    icon = "tasks"
    menu_label = "Markets"
    menu_name = "markets"
    menu_order = 250
    add_to_admin_menu = True
    add_to_reference_index = False
    copy_view_enabled = False
    index_view_class = MarketIndexView
    filterset_class = MarketFilterSet
    search_fields = ["question"]
    list_per_page = 30
    ordering = "-created_at"

    def get_form_class(self, for_update=False):
        return MarketCreateForm  # unused by the custom views; keeps Wagtail's checks quiet

    def register_permissions(self):
        # The policy is role-based (see MarketPermissionPolicy); no model
        # permissions to show in the group editor.
        pass

    def get_urlpatterns(self):
        return [
            path("", self.index_view, name="index"),
            path("results/", self.index_results_view, name="index_results"),
            path("new/", MarketCreateView.as_view(), name="add"),
            path("edit/<id:pk>/", MarketEditView.as_view(), name="edit"),
            path("open/<id:pk>/", MarketOpenView.as_view(), name="open"),
            path("link/<id:pk>/", MarketLinkArticleView.as_view(), name="link"),
            path("unlink/<id:pk>/<id:article_id>/", MarketUnlinkArticleView.as_view(), name="unlink"),
            path("resolve/<id:pk>/", MarketResolveView.as_view(), name="resolve"),
            path("resolve/<id:pk>/confirm/", MarketResolveConfirmView.as_view(), name="resolve_confirm"),
            path("article/<id:page_id>/", ArticleMarketsView.as_view(), name="article"),
        ]


def article_markets_button(page, user, priority: int):
    """Return the "Markets" button for an article page, or None for other pages and non-editors."""
    if page.specific_class is not ArticlePage or not user_has_role(user, "editor"):
        return None
    return Button("Markets", url=url("article", page.pk), icon_name="tasks", priority=priority,
                  attrs={"data-bellwether-markets": "article"})

