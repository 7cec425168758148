"""The account page: balance, email, password, API tokens and email preferences.

Every view is private and never cached. Token and preference forms work as
plain POSTs (redirect, or the whole page) and, under htmx, answer with just
the section they change.
"""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404
from django.shortcuts import redirect, render
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_POST, require_safe

from bellwether.ledger.services import open_user_account

from . import selectors, services
from .exceptions import AccountError
from .forms import EmailPreferencesForm, TokenCreateForm

TEMPLATE = "accounts/home.html"


def _is_htmx(request) -> bool:
    return request.headers.get("HX-Request") == "true"


def _page_context(request, **extra) -> dict:
    """Return everything the account page shows for the signed-in user."""
    user = request.user
    # Opens the ledger account for users made elsewhere (admin, createsuperuser), as a first trade would.
    account = open_user_account(user=user)
    preferences = services.get_email_preferences(user=user)
    context = {
        "balance_micro": account.balance_micro,
        # Saves the masthead chip a second balance query.
        "nav_balance_micro": account.balance_micro,
        "email_addresses": selectors.list_email_addresses(user=user),
        "tokens": selectors.list_tokens(user=user),
        "token_form": TokenCreateForm(),
        "preferences": preferences,
        "preferences_form": EmailPreferencesForm(
            initial={"market_resolutions": preferences.market_resolutions}
        ),
    }
    context.update(extra)
    return context


def _tokens_context(request, **extra) -> dict:
    context = {"tokens": selectors.list_tokens(user=request.user), "token_form": TokenCreateForm()}
    context.update(extra)
    return context


@never_cache
@login_required
@require_safe
def account_home(request):
    """Show the signed-in reader's account page."""
    return render(request, TEMPLATE, _page_context(request))


@never_cache
@login_required
@require_POST
def token_create(request):
    """Create an API token and show its text, this once only."""
    form = TokenCreateForm(request.POST)
    if not form.is_valid():
        if _is_htmx(request):
            return render(request, f"{TEMPLATE}#tokens", _tokens_context(request, token_form=form))
        return render(request, TEMPLATE, _page_context(request, token_form=form))
    token, raw = services.create_token(user=request.user, name=form.cleaned_data["name"])
    extra = {"new_token": token, "new_token_raw": raw}
    if _is_htmx(request):
        return render(request, f"{TEMPLATE}#tokens", _tokens_context(request, **extra))
    return render(request, TEMPLATE, _page_context(request, **extra))


@never_cache
@login_required
@require_POST
def token_revoke(request, token_id: int):
    """Revoke one of the reader's own tokens; anyone else's is a 404."""
    token = selectors.get_token(user=request.user, token_id=token_id)
    if token is None:
        raise Http404("No such token.")
    try:
        services.revoke_token(user=request.user, token_id=token.pk)
    except AccountError:
        notice = f"The token “{token.name}” was already revoked."
    else:
        notice = f"The token “{token.name}” is revoked. Scripts using it can no longer sign in."
    if _is_htmx(request):
        return render(request, f"{TEMPLATE}#tokens", _tokens_context(request, tokens_notice=notice))
    messages.success(request, notice)
    return redirect("accounts:home")


@never_cache
@login_required
@require_POST
def preferences_update(request):
    """Save which emails the reader wants."""
    form = EmailPreferencesForm(request.POST)
    form.is_valid()  # two optional checkboxes: always valid; an absent box means "off"
    preferences = services.update_email_preferences(user=request.user, **form.cleaned_data)
    notice = "Your email preferences are saved."
    if _is_htmx(request):
        return render(
            request,
            f"{TEMPLATE}#preferences",
            {"preferences": preferences, "preferences_form": EmailPreferencesForm(initial=form.cleaned_data), "preferences_notice": notice},
        )
    messages.success(request, notice)
    return redirect("accounts:home")
