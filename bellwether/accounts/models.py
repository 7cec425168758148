"""API tokens and email preferences; users themselves are Django's, roles are groups."""

from __future__ import annotations

import secrets

from django.conf import settings
from django.db import models


class ApiToken(models.Model):
    """A bearer token for the API. Only its SHA-256 is stored; the token is shown once."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="bellwether_tokens")
    name = models.CharField(max_length=100, default="default")
    prefix = models.CharField(max_length=12, help_text="The token's first characters, to tell tokens apart.")
    key_hash = models.CharField(max_length=64, unique=True)
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)"


def new_unsubscribe_token() -> str:
    """Return a fresh random token for one-click unsubscribe links (256 bits, URL-safe)."""
    return secrets.token_urlsafe(32)


class EmailPreferences(models.Model):
    """Which account emails a reader wants; the token lets a link in them unsubscribe without a login.

    The weekly highlights are not here: their one source of truth is the
    reader's bellwether.highlights Subscriber row, with or without an account.
    """

    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="email_preferences")
    market_resolutions = models.BooleanField(default=True, help_text="A note when a market you hold shares in resolves.")
    unsubscribe_token = models.CharField(max_length=64, unique=True, default=new_unsubscribe_token, editable=False)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = "email preferences"
        verbose_name_plural = "email preferences"

    def __str__(self) -> str:
        return f"email preferences of user {self.user_id}"
