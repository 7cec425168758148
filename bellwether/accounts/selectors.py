"""Reads for the account page: tokens and email addresses of one user."""

from __future__ import annotations

from allauth.account.models import EmailAddress
from django.db.models import F

from .models import ApiToken


def list_tokens(*, user) -> list[ApiToken]:
    """Return ``user``'s API tokens, working ones first, newest first within each group."""
    return list(
        ApiToken.objects.filter(user=user).order_by(F("revoked_at").desc(nulls_first=True), "-created_at", "-pk")
    )


def get_token(*, user, token_id: int) -> ApiToken | None:
    """Return ``user``'s token ``token_id``, or None when there is none (or it is someone else's)."""
    return next(iter(ApiToken.objects.filter(pk=token_id, user=user)[:1]), None)


def list_email_addresses(*, user) -> list[EmailAddress]:
    """Return ``user``'s email addresses, the primary one first."""
    return list(EmailAddress.objects.filter(user=user).order_by("-primary", "email"))
