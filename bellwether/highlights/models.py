"""The weekly highlights email: subscribers, frozen issues and one delivery per issue and subscriber."""

from __future__ import annotations

import secrets

from django.conf import settings
from django.db import models
from django.db.models.functions import Lower
from django.urls import reverse


def new_token() -> str:
    """Return a random token for unsubscribe links (not guessable, URL-safe)."""
    return secrets.token_urlsafe(24)


class Subscriber(models.Model):
    """An address that asked for the weekly highlights; an account is optional."""

    class Status(models.TextChoices):
        PENDING = "pending", "Waiting for confirmation"
        ACTIVE = "active", "Subscribed"
        UNSUBSCRIBED = "unsubscribed", "Unsubscribed"
        BOUNCED = "bounced", "Bounced"

    email = models.EmailField(max_length=254, help_text="Stored lower-cased; one row per address.")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="highlights_subscriptions")
    status = models.CharField(max_length=12, choices=Status.choices, default=Status.PENDING, db_index=True)
    token = models.CharField(max_length=64, unique=True, default=new_token, help_text="Identifies the subscriber in unsubscribe links.")
    source = models.CharField(max_length=40, blank=True, help_text="Where the sign-up came from: home, article, account, admin.")
    created_at = models.DateTimeField(auto_now_add=True)
    confirmation_sent_at = models.DateTimeField(null=True, blank=True)
    confirmed_at = models.DateTimeField(null=True, blank=True)
    unsubscribed_at = models.DateTimeField(null=True, blank=True)
    bounced_at = models.DateTimeField(null=True, blank=True)
    bounce_reason = models.TextField(blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(Lower("email"), name="subscriber_unique_email"),
        ]

    def __str__(self) -> str:
        return self.email


class Issue(models.Model):
    """One weekly issue, frozen when built: its content and odds as of ``built_at``."""

    class Status(models.TextChoices):
        DRAFT = "draft", "Draft"
        BUILT = "built", "Built"
        SENDING = "sending", "Sending"
        SENT = "sent", "Sent"

    number = models.PositiveIntegerField(unique=True)
    week_start = models.DateTimeField(help_text="Start of the week the issue covers.")
    week_end = models.DateTimeField(help_text="End of the week the issue covers (when it was built).")
    status = models.CharField(max_length=8, choices=Status.choices, default=Status.DRAFT, db_index=True)
    subject = models.CharField(max_length=200, blank=True)
    intro = models.TextField(blank=True, help_text="The editor's opening note.")
    pinned = models.JSONField(default=list, blank=True, help_text='Item keys an editor put first, e.g. ["article:12"].')
    dropped = models.JSONField(default=list, blank=True, help_text='Item keys an editor left out, e.g. ["market:7"].')
    content = models.JSONField(default=dict, blank=True, help_text="The frozen sections, as built.")
    built_at = models.DateTimeField(null=True, blank=True)
    send_started_at = models.DateTimeField(null=True, blank=True)
    sent_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    schedule_key = models.CharField(
        max_length=40, null=True, blank=True, unique=True,
        help_text="Set for scheduled issues (e.g. 2026-W47), so the weekly job enqueues each week once.",
    )

    class Meta:
        ordering = ["-number"]

    def __str__(self) -> str:
        return f"Weekly highlights #{self.number}"

    def get_absolute_url(self) -> str:
        return reverse("highlights:issue", args=[self.number])


class Delivery(models.Model):
    """One issue to one subscriber: the unique row that keeps a message from going twice."""

    class Status(models.TextChoices):
        PENDING = "pending", "Waiting"
        SENDING = "sending", "Handed to SMTP, not yet recorded"
        SENT = "sent", "Sent"
        RETRY = "retry", "Temporary failure, will retry"
        UNCERTAIN = "uncertain", "Outcome unknown: needs review"
        FAILED = "failed", "Refused permanently"
        SKIPPED = "skipped", "Not sent (unsubscribed or bounced before its turn)"

    issue = models.ForeignKey(Issue, on_delete=models.CASCADE, related_name="deliveries")
    subscriber = models.ForeignKey(Subscriber, on_delete=models.CASCADE, related_name="deliveries")
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    attempts = models.PositiveSmallIntegerField(default=0)
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    message_id = models.CharField(max_length=250, blank=True)
    last_error = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    sent_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["issue", "subscriber"], name="delivery_unique"),
        ]
        indexes = [models.Index(fields=["issue", "status"])]

    def __str__(self) -> str:
        return f"{self.issue} → {self.subscriber}"

