"""Pages of the weekly highlights: sign-up box, subscribe, confirm, unsubscribe, the archive and each issue.

Article and home pages are cached for anonymous readers, so they carry no
CSRF token: they load the sign-up box lazily from ``signup_box``, which is
never cached and renders the form with a token. Every form also works as a
plain POST answered with a whole page.
"""

from __future__ import annotations

import datetime as dt
from numbers import Number

from django.conf import settings
from django.core.paginator import Paginator
from django.http import Http404, HttpResponse
from django.shortcuts import render
from django.urls import reverse
from django.utils.dateparse import parse_datetime
from django.views.decorators.cache import never_cache
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_http_methods, require_POST, require_safe

from bellwether import ratelimit

from . import subscriptions
from .models import Issue, Subscriber
from .subscriptions import Outcome

PUBLIC_STATUSES = (Issue.Status.BUILT, Issue.Status.SENDING, Issue.Status.SENT)
ISSUES_PER_PAGE = 20

MESSAGES = {
    Outcome.CONFIRMATION_SENT: "Check your inbox: we sent a link to {email}. Click it to confirm your subscription.",
    Outcome.ALREADY_SUBSCRIBED: "{email} is already subscribed to the weekly highlights.",
    Outcome.ACTIVATED: "Done: the weekly highlights will go to {email}.",
}


def _is_htmx(request) -> bool:
    return request.headers.get("HX-Request") == "true"


def _source(request, data) -> str:
    source = data.get("source", "")
    return source if source in subscriptions.SOURCES else "web"


def _box_context(request, *, source: str, **extra) -> dict:
    """Return what the sign-up box shows: a form, or the signed-in reader's own subscription."""
    context = {"source": source, "email": "", "subscription": None, "account_email": ""}
    if request.user.is_authenticated:
        subscription = subscriptions.subscription_for_user(user=request.user)
        context["subscription"] = subscription
        context["account_email"] = subscription.email if subscription else subscriptions.primary_email(user=request.user)
        context["email"] = context["account_email"]
    context.update(extra)
    return context


@never_cache
@require_safe
def signup_box(request):
    """Render the sign-up box (with its CSRF token) for a page that loads it lazily."""
    return render(request, "highlights/_signup_box.html", _box_context(request, source=_source(request, request.GET)))


def _refuse(request, *, source: str, email: str, message: str, status: int, retry_after_s: int | None = None):
    """Show the box again with ``message``: htmx gets it swapped in (200), a plain POST a page with ``status``."""
    context = _box_context(request, source=source, email=email.strip()[:300], error=message)
    if _is_htmx(request):
        response = render(request, "highlights/_signup_box.html", context)
    else:
        response = render(request, "highlights/subscribe.html", context, status=status)
    if retry_after_s is not None:
        response["Retry-After"] = str(retry_after_s)
    return response


@never_cache
@require_POST
def subscribe(request):
    """Sign an address up; answer htmx with the box's new state, a plain POST with a page.

    Sign-ups from one IP address are limited (HIGHLIGHTS_SIGNUPS_PER_IP_PER_HOUR)
    and so are confirmation mails to one address; a refusal mails nothing.
    """
    source = _source(request, request.POST)
    email = request.POST.get("email", "")
    limit = settings.HIGHLIGHTS_SIGNUPS_PER_IP_PER_HOUR
    decision = ratelimit.hit(f"highlights:signup:ip:{ratelimit.client_ip(request)}", limit=limit, window_s=3600)
    if not decision.allowed:
        message = (
            f"Too many sign-ups from your network: at most {limit} an hour. "
            f"Try again in {ratelimit.format_wait(decision.retry_after_s)}."
        )
        return _refuse(request, source=source, email=email, message=message, status=429, retry_after_s=decision.retry_after_s)
    try:
        result = subscriptions.subscribe(email=email, source=source, user=request.user if request.user.is_authenticated else None)
    except subscriptions.InvalidEmail as error:
        return _refuse(request, source=source, email=email, message=str(error), status=400)
    except subscriptions.TooSoon as error:
        return _refuse(request, source=source, email=email, message=str(error), status=429, retry_after_s=error.retry_after_s)
    context = _box_context(
        request, source=source, result=result, notice=MESSAGES[result.outcome].format(email=result.subscriber.email)
    )
    template = "highlights/_signup_box.html" if _is_htmx(request) else "highlights/subscribe.html"
    return render(request, template, context)


@never_cache
@require_http_methods(["GET", "HEAD", "POST"])
def confirm(request, signed: str):
    """GET shows a button (link scanners fetch links, they do not press buttons); POST confirms."""
    context = {"signed": signed}
    try:
        if request.method == "POST":
            result = subscriptions.confirm(signed=signed)
            context.update(result=result, subscriber=result.subscriber, done=True)
        else:
            subscriber = subscriptions.check_confirmation_link(signed=signed)
            context.update(subscriber=subscriber, done=subscriber.status == Subscriber.Status.ACTIVE)
    except subscriptions.ExpiredLink as error:
        return render(request, "highlights/confirm.html", {**context, "error": str(error), "expired": True}, status=410)
    except subscriptions.InvalidLink as error:
        return render(request, "highlights/confirm.html", {**context, "error": str(error)}, status=400)
    return render(request, "highlights/confirm.html", context)


@csrf_exempt  # the random token in the URL authorises the POST; RFC 8058 clients send no cookie or CSRF token
@never_cache
@require_http_methods(["GET", "HEAD", "POST"])
def unsubscribe(request, token: str):
    """GET shows a one-click button; POST (the button, or a mail client's RFC 8058 one-click) unsubscribes."""
    if request.method == "POST":
        result = subscriptions.unsubscribe(token=token)
        if result is None:
            raise Http404("No subscription has this unsubscribe link.")
        if request.POST.get("List-Unsubscribe") == "One-Click":
            return HttpResponse("Unsubscribed.\n", content_type="text/plain; charset=utf-8")
        if _is_htmx(request):
            return render(request, "highlights/_signup_box.html", _box_context(request, source="account", notice="You will get no more weekly highlights."))
        return render(request, "highlights/unsubscribe.html", {"subscriber": result.subscriber, "done": True, "outcome": result.outcome.value})
    subscriber = subscriptions.get_subscriber_by_token(token=token)
    if subscriber is None:
        raise Http404("No subscription has this unsubscribe link.")
    done = subscriber.status in (Subscriber.Status.UNSUBSCRIBED, Subscriber.Status.BOUNCED)
    return render(request, "highlights/unsubscribe.html", {"subscriber": subscriber, "done": done, "token": token})


@never_cache
@require_safe
def archive(request):
    """List the built and sent issues, newest first, with the sign-up form."""
    issues = Issue.objects.filter(status__in=PUBLIC_STATUSES).only("number", "subject", "week_start", "week_end", "built_at", "sent_at", "status")
    page = Paginator(issues.order_by("-number"), ISSUES_PER_PAGE).get_page(request.GET.get("page"))
    context = {"page_obj": page, "issues": page.object_list, **_box_context(request, source="archive")}
    return render(request, "highlights/archive.html", context)


@require_safe
def issue_page(request, number: int):
    """Show one issue as it was frozen; drafts only to staff."""
    issue = Issue.objects.filter(number=number).first()
    if issue is None or (issue.status == Issue.Status.DRAFT and not request.user.is_staff):
        raise Http404("No such issue.")
    response = render(request, "highlights/issue.html", {"issue": issue, "content": present_content(issue)})
    if issue.status == Issue.Status.DRAFT:
        response["Cache-Control"] = "private, no-store"
    return response


# --- Presenting the frozen content ------------------------------------------------------
#
# The content is JSON written by building.py. The page reads it defensively:
# a missing section is an empty list, a missing field an empty string, and
# probabilities may come as fractions (0.34), percentages or decimal strings.


def _as_list(value) -> list:
    return [item for item in value if isinstance(item, dict)] if isinstance(value, list) else []


def _fraction(value):
    """Return ``value`` as a fraction in [0, 1] when it reads as a probability, else None."""
    if isinstance(value, bool) or value is None:
        return None
    try:
        number = float(value) if isinstance(value, (Number, str)) else None
    except ValueError:
        return None
    if number is None:
        return None
    if 1 < number <= 100:
        number /= 100
    return number if 0 <= number <= 1 else None


def _percent(value) -> str:
    fraction = _fraction(value)
    if fraction is None:
        return str(value) if value not in (None, "") else ""
    return f"{fraction * 100:.0f}%"


def _points(value) -> str:
    """Return a change in probability as signed percentage points, such as "+12 pts"."""
    if isinstance(value, bool) or value in (None, ""):
        return ""
    try:
        number = float(value)
    except (TypeError, ValueError):
        return str(value)
    if -1 <= number <= 1:
        number *= 100
    return f"{number:+.0f} pts" if round(number) else "±0 pts"


def _when(value):
    if isinstance(value, str):
        return parse_datetime(value) or value
    return value if isinstance(value, (dt.date, dt.datetime)) else None


def present_content(issue: Issue) -> dict:
    """Return the issue's frozen sections ready for the template, tolerant of missing fields."""
    content = issue.content if isinstance(issue.content, dict) else {}
    headlines = [{**item, "published_at": _when(item.get("published_at"))} for item in _as_list(content.get("headlines"))]
    insights = []
    for item in _as_list(content.get("insights")):
        expert = item.get("expert") if isinstance(item.get("expert"), dict) else {}
        forecasts = [
            {**forecast, "probability_text": _percent(forecast.get("probability")), "stated_at": _when(forecast.get("stated_at"))}
            for forecast in _as_list(item.get("forecasts"))
        ]
        insights.append({**item, "expert": expert, "forecasts": forecasts})
    movers = []
    for item in _as_list(content.get("movers")):
        chart_url = ""
        slug = item.get("slug") or ""
        if item.get("chart") and slug:
            chart_url = reverse("highlights:chart", args=[issue.number, slug])
        movers.append({
            **item,
            "start_text": _percent(item.get("start")),
            "end_text": _percent(item.get("end")),
            "change_text": _points(item.get("change")),
            "rising": _safe_float(item.get("change")) > 0,
            "falling": _safe_float(item.get("change")) < 0,
            "chart_url": chart_url,
        })
    closing = [
        {**item, "probability_text": _percent(item.get("probability")), "close_at": _when(item.get("close_at"))}
        for item in _as_list(content.get("closing_soon"))
    ]
    resolved = [
        {**item, "price_before_text": _percent(item.get("price_before")), "resolved_at": _when(item.get("resolved_at"))}
        for item in _as_list(content.get("resolved"))
    ]
    stats = content.get("stats") if isinstance(content.get("stats"), dict) else {}
    stat_rows = [_stat_row(name, value) for name, value in stats.items() if isinstance(value, (str, Number)) and not isinstance(value, bool)]
    return {
        "intro": content.get("intro") or issue.intro,
        "headlines": headlines,
        "insights": insights,
        "movers": movers,
        "closing_soon": closing,
        "resolved": resolved,
        "stats": stat_rows,
        "is_empty": not (headlines or insights or movers or closing or resolved),
    }


def _stat_row(name, value) -> tuple[str, str]:
    """Return a stat's label and text; amounts in micro-credits show as whole credits."""
    name = str(name)
    if name.endswith("_micro") and isinstance(value, Number):
        return name.removesuffix("_micro").replace("_", " ").capitalize() + " (credits)", f"{round(value / 1_000_000):,}"
    return name.replace("_", " ").capitalize(), f"{value:,}" if isinstance(value, int) else str(value)


def _safe_float(value) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return 0.0


def chart_png(request, number: int, market: str):
    """Serve a mover's chart PNG stored when the issue was built; cache it long once the issue is sent."""
    from django.core.files.storage import default_storage
    from django.http import FileResponse

    from .charts import chart_path
    from .models import Issue

    name = chart_path(number=number, slug=market)
    if not default_storage.exists(name):
        raise Http404("no such chart")
    response = FileResponse(default_storage.open(name, "rb"), content_type="image/png")
    sent = Issue.objects.filter(number=number, status=Issue.Status.SENT).exists()
    # A sent issue is final; an unsent one may be rebuilt with a new chart.
    response["Cache-Control"] = "public, max-age=31536000, immutable" if sent else "public, max-age=3600"
    return response
