"""Reads for the account page and the API: tokens, email addresses and ledger lines of one user."""

from __future__ import annotations

from allauth.account.models import EmailAddress
from django.db.models import F

from bellwether.ledger.models import Account, Transfer
from bellwether.ledger.selectors import account_transfers
from bellwether.paging import newest_first_after

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


def transfer_lines(*, account: Account, limit: int, after: tuple | None = None) -> list[Transfer]:
    """Return up to ``limit`` of ``account``'s transfers, newest first, after the (created_at, id) ``after`` of an earlier page."""
    transfers = account_transfers(account=account)
    if after is not None:
        transfers = transfers.filter(newest_first_after("created_at", *after))
    return list(transfers[:limit])
