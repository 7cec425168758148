"""Open a new reader's ledger account as part of allauth's sign-up request."""

from __future__ import annotations

from allauth.account.signals import user_signed_up
from django.contrib import messages
from django.dispatch import receiver

from bellwether.ledger.services import open_user_account

from .formatting import format_whole_credits


@receiver(user_signed_up, dispatch_uid="bellwether.accounts.open_ledger_account")
def open_ledger_account_on_signup(sender, request, user, **kwargs) -> None:
    """Give a new reader their starting balance at once and tell them how much it is."""
    account = open_user_account(user=user)
    if request is not None:
        messages.success(
            request,
            f"Welcome to Bellwether, {user.get_username()}! You start with "
            f"{format_whole_credits(account.balance_micro)} credits to forecast with.",
            fail_silently=True,
        )
