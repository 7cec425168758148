"""The weekly highlights in the Wagtail admin: build, edit, preview and send issues; list subscribers.

Editors (the Editors group, and superusers) do here what ``bellwether
highlights build | preview | send`` does from the shell; anyone else with
admin access gets a 403 that says why. Every write goes through
``building`` or ``sending``.

Sending from the admin runs in the request: ``tasks.py`` offers a task for
the weekly scheduled issue only (keyed by its ``schedule_key``), not for an
issue built by hand. So one POST hands at most :data:`ADMIN_SEND_LIMIT`
messages to SMTP and reports what is left; "Continue sending" (or
``bellwether highlights send --number N``) sends the rest, and nobody gets
a message twice.
"""

from __future__ import annotations

from django.core.paginator import Paginator
from django.db.models import Count, Max, Q
from django.http import HttpResponse, HttpResponseNotAllowed
from django.shortcuts import get_object_or_404, redirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.decorators import method_decorator
from django.views import View
from django.views.decorators.clickjacking import xframe_options_sameorigin
from wagtail.admin import messages

from bellwether.accounts.services import has_role
from bellwether.markets.models import Market
from bellwether.news.models import ArticlePage

from . import building, rendering, sending
from .models import Delivery, Issue, Subscriber

NAMESPACE = "highlights_admin"
TEMPLATES = "highlights/admin/"
#: Messages one admin POST hands to SMTP before answering (the rest waits for "Continue sending").
ADMIN_SEND_LIMIT = 200
ISSUES_PER_PAGE = 30
SUBSCRIBERS_PER_PAGE = 50
#: The sections of ``Issue.content`` an editor can pin and drop items in, with their labels.
SECTIONS = (
    ("headlines", "Headlines"),
    ("insights", "Insights"),
    ("movers", "Markets that moved"),
    ("closing_soon", "Closing soon"),
    ("resolved", "Resolved"),
)
EDITABLE = (Issue.Status.DRAFT, Issue.Status.BUILT)


def url(name: str, *args) -> str:
    """Return the admin URL of one of the highlights views."""
    return reverse(f"{NAMESPACE}:{name}", args=args)


class EditorPage(View):
    """An admin page for editors only: others get a 403 with the reason, inside the admin's frame."""

    template = ""
    title = ""

    def dispatch(self, request, *args, **kwargs):
        if not has_role(request.user, "editor"):
            return TemplateResponse(
                request, TEMPLATES + "forbidden.html",
                {"message": "Only editors can manage the weekly highlights.", "header_title": "Not allowed"},
                status=403,
            )
        return super().dispatch(request, *args, **kwargs)

    def crumbs(self, *items) -> list[dict]:
        return [
            {"url": reverse("wagtailadmin_home"), "label": "Home"},
            {"url": url("index"), "label": "Weekly highlights"},
            *items,
        ]

    def render(self, context: dict, status: int = 200):
        context.setdefault("header_title", self.title)
        context.setdefault("page_title", self.title)
        context.setdefault("header_icon", "mail")
        context.setdefault("breadcrumbs_items", self.crumbs({"url": "", "label": self.title}))
        return TemplateResponse(self.request, TEMPLATES + self.template, context, status=status)


class IssuePage(EditorPage):
    """A page about one issue, found by its number."""

    def setup(self, request, *args, **kwargs):
        super().setup(request, *args, **kwargs)
        self.issue = get_object_or_404(Issue, number=kwargs["number"])

    def crumbs(self, *items) -> list[dict]:
        return super().crumbs({"url": url("edit", self.issue.number), "label": f"Issue #{self.issue.number}"}, *items)


# --- issues -------------------------------------------------------------------


class IssueIndexView(EditorPage):
    """Every issue with its state and deliveries, and the button that builds this week's issue."""

    template = "index.html"
    title = "Weekly highlights"

    def get(self, request):
        issues = Issue.objects.annotate(
            delivery_total=Count("deliveries"),
            delivery_sent=Count("deliveries", filter=Q(deliveries__status=Delivery.Status.SENT)),
        ).order_by("-number")
        page = Paginator(issues, ISSUES_PER_PAGE).get_page(request.GET.get("p"))
        return self.render({
            "page": page,
            "issues": page.object_list,
            "unsent": Issue.objects.filter(status__in=EDITABLE).order_by("-number").first(),
            "next_number": (Issue.objects.aggregate(top=Max("number"))["top"] or 0) + 1,
            "active_count": Subscriber.objects.filter(status=Subscriber.Status.ACTIVE).count(),
            "breadcrumbs_items": [
                {"url": reverse("wagtailadmin_home"), "label": "Home"},
                {"url": "", "label": self.title},
            ],
        })


class IssueBuildView(EditorPage):
    """Build this week's issue (POST): rebuild the newest unsent issue if there is one, else start a new one.

    Rebuilding rather than adding keeps a second click, or the scheduler's
    reserved issue, from leaving two unsent issues for one week.
    """

    def get(self, request):
        return HttpResponseNotAllowed(["POST"])

    def post(self, request):
        unsent = Issue.objects.filter(status__in=EDITABLE).order_by("-number").first()
        try:
            issue = building.build_issue(issue=unsent)
        except building.IssueAlreadySent as error:
            messages.error(request, f"Nothing was built: {error}.")
            return redirect(url("index"))
        verb = "Rebuilt" if unsent is not None else "Built"
        messages.success(request, f"{verb} issue #{issue.number} with this week's items as of now.")
        return redirect(url("edit", issue.number))


def _item_label(item: dict) -> str:
    return item.get("title") or item.get("question") or item.get("key", "")


def _other_labels(keys: list[str]) -> dict[str, str]:
    """Return a title for each article or market key that is not in the issue (dropped, or pinned but gone)."""
    ids: dict[str, list[int]] = {"article": [], "market": []}
    for key in keys:
        kind, _, ident = key.partition(":")
        if kind in ids and ident.isdigit():
            ids[kind].append(int(ident))
    article_ids, market_ids = ids["article"], ids["market"]
    labels = {f"article:{pk}": title for pk, title in ArticlePage.objects.filter(pk__in=article_ids).values_list("pk", "title")}
    labels.update({f"market:{pk}": q for pk, q in Market.objects.filter(pk__in=market_ids).values_list("pk", "question")})
    return labels


def item_rows(issue: Issue) -> list[dict]:
    """Return one row per item key of the issue, in the order the issue shows them, then the keys left out.

    A market can sit in two sections (moved and closing soon); it gets one
    row, in the first, since a pin or drop applies to the key wherever it is.
    """
    content = issue.content or {}
    pinned, dropped = list(issue.pinned or []), set(issue.dropped or [])
    rows: list[dict] = []
    seen: set[str] = set()
    for name, label in SECTIONS:
        for item in content.get(name, []):
            key = item.get("key")
            if not key or key in seen:
                continue
            seen.add(key)
            rows.append({
                "key": key, "label": _item_label(item), "section": label, "url": item.get("url", ""),
                "pinned": key in pinned, "dropped": key in dropped,
            })
    others = [key for key in pinned + sorted(dropped) if key not in seen]
    labels = _other_labels(others)
    for key in dict.fromkeys(others):
        rows.append({
            "key": key, "label": labels.get(key, "(no longer exists)"), "section": "Left out" if key in dropped else "Pinned, not found",
            "url": "", "pinned": key in pinned, "dropped": key in dropped,
        })
    return rows


def pins_from_form(*, previous: list[str], checked: list[str]) -> list[str]:
    """Return the pinned keys: those pinned before keep their order, newly pinned ones follow in page order."""
    checked = list(dict.fromkeys(checked))
    return [key for key in previous if key in checked] + [key for key in checked if key not in previous]


class IssueEditView(IssuePage):
    """An issue's intro and items with Pin and Drop toggles; saving re-freezes it. Read-only once sending."""

    template = "edit.html"

    def setup(self, request, *args, **kwargs):
        super().setup(request, *args, **kwargs)
        self.title = f"Issue #{self.issue.number}"

    def context(self, *, intro: str | None = None, rows: list[dict] | None = None, error: str = "") -> dict:
        issue = self.issue
        stats = (issue.content or {}).get("stats") or {}
        deliveries = dict(
            Delivery.objects.filter(issue=issue).values_list("status").annotate(n=Count("id")).order_by()
        )
        return {
            "issue": issue,
            "editable": issue.status in EDITABLE,
            "intro": issue.intro if intro is None else intro,
            "rows": item_rows(issue) if rows is None else rows,
            "error": error,
            "stats": stats,
            "deliveries": [(label, deliveries.get(value, 0)) for value, label in Delivery.Status.choices if deliveries.get(value)],
            "delivery_total": sum(deliveries.values()),
            "breadcrumbs_items": EditorPage.crumbs(self, {"url": "", "label": self.title}),
        }

    def get(self, request, number):
        return self.render(self.context())

    def post(self, request, number):
        issue = self.issue
        if issue.status not in EDITABLE:
            messages.error(request, f"Issue #{issue.number} is {issue.get_status_display().lower()}: it can no longer be changed.")
            return redirect(url("edit", issue.number))
        intro = request.POST.get("intro", "").replace("\r\n", "\n").strip()
        pin_keys = request.POST.getlist("pin")
        drop_keys = list(dict.fromkeys(request.POST.getlist("drop")))
        both = sorted(set(pin_keys) & set(drop_keys))
        if both:
            rows = item_rows(issue)
            for row in rows:
                row["pinned"], row["dropped"] = row["key"] in pin_keys, row["key"] in drop_keys
            error = f"An item cannot be both pinned and dropped: {', '.join(both)}."
            return self.render(self.context(intro=intro, rows=rows, error=error), status=400)
        pinned = pins_from_form(previous=list(issue.pinned or []), checked=pin_keys)
        try:
            self.issue = building.build_issue(issue=issue, intro=intro, pinned=pinned, dropped=drop_keys)
        except building.IssueAlreadySent as error:
            messages.error(request, f"Not saved: {error}.")
            return redirect(url("edit", issue.number))
        messages.success(request, f"Issue #{issue.number} saved and rebuilt with this week's items as of now.")
        return redirect(url("edit", issue.number))


class IssuePreviewView(IssuePage):
    """The email as a subscriber with an account sees it, in a frame, with its subject and plain text."""

    template = "preview.html"

    def get(self, request, number):
        issue = self.issue
        self.title = f"Preview of issue #{issue.number}"
        context = {"issue": issue, "built": issue.status != Issue.Status.DRAFT}
        if context["built"]:
            subject, text, _html = rendering.render_preview(issue)
            context.update(subject=subject, text=text)
        return self.render(context)


@method_decorator(xframe_options_sameorigin, name="dispatch")
class IssuePreviewHtmlView(IssuePage):
    """The preview's HTML on its own, for the frame on the preview page (same origin only)."""

    def get(self, request, number):
        if self.issue.status == Issue.Status.DRAFT:
            return HttpResponse("This issue is a draft: build it first.", content_type="text/plain; charset=utf-8", status=404)
        _subject, _text, html = rendering.render_preview(self.issue)
        return HttpResponse(html, content_type="text/html; charset=utf-8")


class IssueSendView(IssuePage):
    """GET: how many subscribers the issue will reach, and a confirm button; POST: send (part of) it.

    POST creates the deliveries (``sending.start_sending``, which calls
    ``prepare_deliveries`` and marks the issue sending) and hands up to
    ADMIN_SEND_LIMIT messages to SMTP in this request.
    """

    template = "send.html"

    def setup(self, request, *args, **kwargs):
        super().setup(request, *args, **kwargs)
        self.title = f"Send issue #{self.issue.number}"

    def get(self, request, number):
        issue = self.issue
        context = {"issue": issue, "limit": ADMIN_SEND_LIMIT}
        if issue.status == Issue.Status.BUILT:
            context["recipients"] = Subscriber.objects.filter(status=Subscriber.Status.ACTIVE).count()
        elif issue.status == Issue.Status.SENDING:
            context["recipients"] = sending.due_count(issue=issue)
            context["waiting"] = Delivery.objects.filter(issue=issue, status=Delivery.Status.RETRY).count()
        return self.render(context)

    def post(self, request, number):
        issue = self.issue
        if issue.status not in (Issue.Status.BUILT, Issue.Status.SENDING):
            messages.error(request, f"Issue #{issue.number} is {issue.get_status_display().lower()}: there is nothing to send.")
            return redirect(url("edit", issue.number))
        try:
            issue = sending.start_sending(issue)
        except sending.SendingError as error:
            messages.error(request, str(error))
            return redirect(url("edit", issue.number))
        summary = sending.send_issue(issue=issue, batch_size=ADMIN_SEND_LIMIT, stop_after=ADMIN_SEND_LIMIT)
        line = f"Issue #{issue.number}: {summary.as_line()}."
        if summary.stop_reason:
            messages.error(request, f"{line} The send stopped: {summary.stop_reason}")
        elif summary.errors:
            messages.warning(request, f"{line} First problem: {summary.errors[0]}")
        elif summary.remaining:
            messages.warning(
                request,
                f"{line} {summary.remaining} still to send: this page sends at most {ADMIN_SEND_LIMIT} at a time, "
                "so press “Continue sending” (temporary failures wait for their retry time).",
            )
        else:
            messages.success(request, f"{line} The issue is sent.")
        return redirect(url("edit", issue.number))


# --- subscribers --------------------------------------------------------------


class SubscriberIndexView(EditorPage):
    """Every subscriber (read-only): filter by status, search by address."""

    template = "subscribers.html"
    title = "Subscribers"

    def get(self, request):
        status = request.GET.get("status", "")
        if status not in Subscriber.Status.values:
            status = ""
        query = request.GET.get("q", "").strip()
        subscribers = Subscriber.objects.order_by("-created_at", "-id")
        if status:
            subscribers = subscribers.filter(status=status)
        if query:
            subscribers = subscribers.filter(email__icontains=query)
        counts = dict(Subscriber.objects.values_list("status").annotate(n=Count("id")).order_by())
        page = Paginator(subscribers, SUBSCRIBERS_PER_PAGE).get_page(request.GET.get("p"))
        return self.render({
            "page": page,
            "subscribers": page.object_list,
            "status": status,
            "query": query,
            "statuses": [(value, label, counts.get(value, 0)) for value, label in Subscriber.Status.choices],
            "total": sum(counts.values()),
        })


def get_urlpatterns():
    """Return the admin URL patterns, mounted under /admin/highlights/."""
    return [
        path("", IssueIndexView.as_view(), name="index"),
        path("build/", IssueBuildView.as_view(), name="build"),
        path("subscribers/", SubscriberIndexView.as_view(), name="subscribers"),
        path("<id:number>/", IssueEditView.as_view(), name="edit"),
        path("<id:number>/preview/", IssuePreviewView.as_view(), name="preview"),
        path("<id:number>/preview.html", IssuePreviewHtmlView.as_view(), name="preview_html"),
        path("<id:number>/send/", IssueSendView.as_view(), name="send"),
    ]
