"""Subscribing to the weekly highlights: double opt-in, confirmation, unsubscribe and bounces.

The Subscriber row is the one source of truth for "does this address get the
weekly highlights": the account page reads and changes it too.

- ``subscribe`` creates or reuses the single row for an address (compared
  lower-cased) and mails a signed, expiring confirmation link, after commit.
  One address gets a second link only after HIGHLIGHTS_CONFIRM_RESEND_S, and
  each further one waits twice as long (counted in the shared counters
  cache), so the public form cannot flood an inbox.
- ``confirm`` turns that link into an active subscription; a second click
  changes nothing.
- ``unsubscribe`` needs only the subscriber's random token (no login), so the
  link in every email and the RFC 8058 one-click POST both work.
- ``mark_bounced`` stops mail to an address the SMTP server refused for good.
"""

from __future__ import annotations

import enum
import logging
from dataclasses import dataclass

from django.conf import settings
from django.core import signing
from django.core.exceptions import ValidationError
from django.core.mail import EmailMultiAlternatives
from django.core.validators import EmailValidator
from django.db import IntegrityError, transaction
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils import timezone

from bellwether import ratelimit

from .models import Subscriber

logger = logging.getLogger(__name__)

CONFIRM_SALT = "bellwether.highlights.confirm"
MAX_EMAIL_LENGTH = 254  # RFC 5321's limit on a forward path
SOURCES = ("home", "article", "account", "archive", "issue", "admin", "web")

_validate_email = EmailValidator(message="Enter a valid email address, such as name@example.com.")


class SubscriptionError(Exception):
    """Base of the errors a reader can be shown as they are."""


class InvalidEmail(SubscriptionError):
    """The address is not one mail can be sent to."""


class TooSoon(SubscriptionError):
    """A confirmation link went to this address too recently for another one."""

    def __init__(self, message: str, *, retry_after_s: int) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class InvalidLink(SubscriptionError):
    """A confirmation link that was altered, belongs to nobody or is no longer usable."""


class ExpiredLink(InvalidLink):
    """A confirmation link older than HIGHLIGHTS_CONFIRM_MAX_AGE_S."""


class Outcome(enum.Enum):
    CONFIRMATION_SENT = "confirmation_sent"
    ALREADY_SUBSCRIBED = "already_subscribed"
    ACTIVATED = "activated"
    CONFIRMED = "confirmed"
    ALREADY_CONFIRMED = "already_confirmed"
    UNSUBSCRIBED = "unsubscribed"
    ALREADY_UNSUBSCRIBED = "already_unsubscribed"


@dataclass(frozen=True)
class Result:
    subscriber: Subscriber
    outcome: Outcome


def normalise_email(email: str) -> str:
    """Return ``email`` stripped and lower-cased, or raise InvalidEmail with a message for the reader."""
    address = (email or "").strip().lower()
    if not address:
        raise InvalidEmail("Enter your email address.")
    if len(address) > MAX_EMAIL_LENGTH:
        raise InvalidEmail(f"That address is too long: email addresses have at most {MAX_EMAIL_LENGTH} characters.")
    try:
        _validate_email(address)
    except ValidationError as error:
        raise InvalidEmail(error.messages[0]) from None
    return address


def subscribe(*, email: str, source: str, user=None) -> Result:
    """Sign ``email`` up for the weekly highlights, asking it to confirm by email.

    One row per address: signing up again reuses it. An active subscriber is
    told so and nothing is mailed. When ``user`` is signed in and ``email`` is
    one of their verified addresses, the subscription is active at once (the
    address was already confirmed); everyone else, including an address that
    bounced, gets a confirmation link valid for HIGHLIGHTS_CONFIRM_MAX_AGE_S.
    Raise TooSoon, changing nothing, when the address got a link too
    recently for another (``confirmation_backoff``).
    """
    address = normalise_email(email)
    source = source if source in SOURCES else "web"
    verified = user is not None and getattr(user, "is_authenticated", False) and _is_verified_address(user=user, email=address)
    now = timezone.now()
    with transaction.atomic(durable=True):
        subscriber = _get_or_create_locked(email=address, source=source, user=user if verified else None)
        if user is not None and verified and subscriber.user_id is None:
            subscriber.user = user
        if subscriber.status == Subscriber.Status.ACTIVE:
            subscriber.save(update_fields=["user"])
            return Result(subscriber, Outcome.ALREADY_SUBSCRIBED)
        subscriber.source = source
        if verified and subscriber.status != Subscriber.Status.BOUNCED:
            subscriber.status = Subscriber.Status.ACTIVE
            subscriber.confirmed_at = now
            subscriber.unsubscribed_at = None
            subscriber.save(update_fields=["user", "source", "status", "confirmed_at", "unsubscribed_at"])
            return Result(subscriber, Outcome.ACTIVATED)
        # Under the row lock, so two sign-ups of one address cannot both pass.
        decision = confirmation_backoff(email=address)
        if not decision.allowed:
            raise TooSoon(
                f"We sent a confirmation link to {address} a short while ago. Check your inbox and spam folder; "
                f"another link can be sent in {ratelimit.format_wait(decision.retry_after_s)}.",
                retry_after_s=decision.retry_after_s,
            )
        subscriber.status = Subscriber.Status.PENDING
        subscriber.confirmation_sent_at = now
        subscriber_id = subscriber.pk
        transaction.on_commit(lambda: send_confirmation(subscriber_id=subscriber_id))
        subscriber.save(update_fields=["user", "source", "status", "confirmation_sent_at"])
    return Result(subscriber, Outcome.CONFIRMATION_SENT)


def _backoff_key(email: str) -> str:
    return f"highlights:confirm:{ratelimit.digest(email)}"


def confirmation_backoff(*, email: str) -> ratelimit.Decision:
    """Allow one confirmation mail to ``email`` now, or say how long until the next may go.

    The first mail goes at once; the next after HIGHLIGHTS_CONFIRM_RESEND_S,
    then after twice that each time, up to HIGHLIGHTS_CONFIRM_RESEND_MAX_S.
    """
    return ratelimit.take_backoff(
        _backoff_key(email),
        first_wait_s=settings.HIGHLIGHTS_CONFIRM_RESEND_S,
        max_wait_s=settings.HIGHLIGHTS_CONFIRM_RESEND_MAX_S,
    )


def _get_or_create_locked(*, email: str, source: str, user) -> Subscriber:
    """Return the row for ``email``, locked, creating it when new. Call inside a transaction."""
    existing = Subscriber.objects.select_for_update().filter(email=email).first()
    if existing is not None:
        return existing
    try:
        with transaction.atomic():
            return Subscriber.objects.create(email=email, source=source, user=user)
    except IntegrityError:
        # Another request created the row between the read and the insert.
        return Subscriber.objects.select_for_update().get(email=email)


def _is_verified_address(*, user, email: str) -> bool:
    from allauth.account.models import EmailAddress

    return EmailAddress.objects.filter(user=user, email__iexact=email, verified=True).exists()


def confirmation_link(subscriber: Subscriber) -> str:
    """Return the absolute, signed confirmation URL for ``subscriber`` (expires after HIGHLIGHTS_CONFIRM_MAX_AGE_S)."""
    signed = signing.TimestampSigner(salt=CONFIRM_SALT).sign(subscriber.token)
    return settings.SITE_URL + reverse("highlights:confirm", args=[signed])


def send_confirmation(*, subscriber_id: int) -> bool:
    """Mail the confirmation link to a pending subscriber; return whether a message went out.

    Runs after the sign-up commits. A mail server failure is logged rather
    than raised: the reader already saw "check your inbox" and can sign up
    again to get a new link.
    """
    subscriber = Subscriber.objects.filter(pk=subscriber_id, status=Subscriber.Status.PENDING).first()
    if subscriber is None:
        return False
    context = {
        "subscriber": subscriber,
        "confirm_url": confirmation_link(subscriber),
        "archive_url": settings.SITE_URL + reverse("highlights:archive"),
        "max_age_days": max(1, settings.HIGHLIGHTS_CONFIRM_MAX_AGE_S // 86400),
        "max_age_hours": max(1, settings.HIGHLIGHTS_CONFIRM_MAX_AGE_S // 3600),
    }
    subject = "Confirm your subscription to Bellwether's weekly highlights"
    message = EmailMultiAlternatives(
        subject=subject,
        body=render_to_string("highlights/email/confirm.txt", context),
        from_email=settings.DEFAULT_FROM_EMAIL,
        to=[subscriber.email],
        headers={"Auto-Submitted": "auto-generated"},
    )
    message.attach_alternative(render_to_string("highlights/email/confirm.html", context), "text/html")
    try:
        message.send()
    except Exception:  # noqa: BLE001 - any transport error; the reader can ask again
        logger.exception("could not send the highlights confirmation to subscriber %s", subscriber_id)
        return False
    return True


def check_confirmation_link(*, signed: str) -> Subscriber:
    """Return the subscriber a confirmation link names, or raise ExpiredLink / InvalidLink. Changes nothing."""
    signer = signing.TimestampSigner(salt=CONFIRM_SALT)
    try:
        token = signer.unsign(signed, max_age=settings.HIGHLIGHTS_CONFIRM_MAX_AGE_S)
    except signing.SignatureExpired:
        raise ExpiredLink("This confirmation link has expired. Sign up again and we will send you a new one.") from None
    except signing.BadSignature:
        raise InvalidLink("This confirmation link is not valid: it may have been cut short or changed. Copy the whole link from the email, or sign up again.") from None
    subscriber = Subscriber.objects.filter(token=token).first()
    if subscriber is None:
        raise InvalidLink("This confirmation link belongs to no subscription. Sign up again to get a new one.")
    if subscriber.status in (Subscriber.Status.UNSUBSCRIBED, Subscriber.Status.BOUNCED):
        raise InvalidLink("This subscription was stopped after the link was sent. Sign up again to get a new link.")
    return subscriber


def confirm(*, signed: str) -> Result:
    """Activate the subscription behind a signed link; confirming twice changes nothing the second time."""
    subscriber = check_confirmation_link(signed=signed)
    with transaction.atomic(durable=True):
        subscriber = Subscriber.objects.select_for_update().get(pk=subscriber.pk)
        if subscriber.status == Subscriber.Status.ACTIVE:
            return Result(subscriber, Outcome.ALREADY_CONFIRMED)
        if subscriber.status != Subscriber.Status.PENDING:
            raise InvalidLink("This subscription was stopped after the link was sent. Sign up again to get a new link.")
        subscriber.status = Subscriber.Status.ACTIVE
        subscriber.confirmed_at = timezone.now()
        subscriber.unsubscribed_at = None
        subscriber.save(update_fields=["status", "confirmed_at", "unsubscribed_at"])
    # The owner answered: a later sign-up of this address need not wait.
    ratelimit.reset_backoff(_backoff_key(subscriber.email))
    return Result(subscriber, Outcome.CONFIRMED)


def get_subscriber_by_token(*, token: str) -> Subscriber | None:
    """Return the subscriber an unsubscribe token names, or None."""
    if not token or len(token) > 64:
        return None
    return Subscriber.objects.filter(token=token).first()


def unsubscribe(*, token: str) -> Result | None:
    """Stop the weekly highlights for the subscriber behind ``token``; None for an unknown token.

    Needs no login: the token in the link is the authority. Unsubscribing
    twice changes nothing the second time; a bounced address stays bounced.
    """
    subscriber = get_subscriber_by_token(token=token)
    if subscriber is None:
        return None
    with transaction.atomic(durable=True):
        subscriber = Subscriber.objects.select_for_update().get(pk=subscriber.pk)
        if subscriber.status in (Subscriber.Status.UNSUBSCRIBED, Subscriber.Status.BOUNCED):
            return Result(subscriber, Outcome.ALREADY_UNSUBSCRIBED)
        subscriber.status = Subscriber.Status.UNSUBSCRIBED
        subscriber.unsubscribed_at = timezone.now()
        subscriber.save(update_fields=["status", "unsubscribed_at"])
    return Result(subscriber, Outcome.UNSUBSCRIBED)


def mark_bounced(*, subscriber: Subscriber, reason: str) -> Subscriber:
    """Record that mail to ``subscriber`` is refused for good, so no further issue is sent to it."""
    now = timezone.now()
    Subscriber.objects.filter(pk=subscriber.pk).update(status=Subscriber.Status.BOUNCED, bounced_at=now, bounce_reason=reason[:2000])
    subscriber.status = Subscriber.Status.BOUNCED
    subscriber.bounced_at = now
    subscriber.bounce_reason = reason[:2000]
    return subscriber


def subscription_for_user(*, user) -> Subscriber | None:
    """Return the subscription of a signed-in reader for one of their verified addresses, or None.

    The row linked to them comes first, else the one for their primary
    verified address, else for another verified address. Only verified
    addresses count: anyone may sign up with someone else's address, and
    must not see that address's subscription or its unsubscribe token.
    """
    if user is None or not user.is_authenticated:
        return None
    from allauth.account.models import EmailAddress

    verified = [
        email.lower()
        for email in EmailAddress.objects.filter(user=user, verified=True).order_by("-primary", "pk").values_list("email", flat=True)
    ]
    if not verified:
        return None
    rows = {row.email: row for row in Subscriber.objects.filter(email__in=verified).order_by("-created_at")}
    linked = [row for row in rows.values() if row.user_id == user.pk]
    if linked:
        return linked[0]
    return next((rows[email] for email in verified if email in rows), None)


def primary_email(*, user) -> str:
    """Return the reader's primary (else any verified, else account) email address, or ""."""
    from allauth.account.models import EmailAddress

    addresses = list(EmailAddress.objects.filter(user=user).order_by("-primary", "-verified", "pk")[:1])
    if addresses:
        return addresses[0].email
    return user.email or ""
