"""Send an issue: one delivery row per subscriber, SMTP batches over reused connections, crash-safe states.

Delivery states and who moves them:

* ``pending`` — created by :func:`prepare_deliveries`, waiting its turn.
* ``sending`` — claimed and about to be handed to SMTP; committed *before* the
  message leaves, so a process that dies from here on leaves a visible trace.
* ``sent`` — SMTP accepted the message; its Message-ID is recorded.
* ``retry`` — a temporary failure (4xx, dropped connection); tried again after
  ``next_attempt_at`` (exponential backoff), up to :data:`MAX_ATTEMPTS` times.
* ``failed`` — refused permanently (5xx for the recipient: the subscriber is
  marked bounced) or still failing after :data:`MAX_ATTEMPTS` attempts.
* ``uncertain`` — found ``sending`` when a send starts: the process died between
  handing the message over and recording the answer, so nobody knows whether it
  went. It is never resent automatically; an editor reviews it.
* ``skipped`` — the subscriber was no longer active when their turn came.

A delivery is claimed by one conditional UPDATE (``pending``/``retry`` to
``sending``, only while the subscriber is still active). Only one process can
win that update, so two workers sending the same issue never mail anyone twice;
on PostgreSQL the batch is also picked with ``SKIP LOCKED`` so a worker passes
over rows another one is claiming at that instant instead of waiting for them.
"""

from __future__ import annotations

import logging
import smtplib
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from datetime import timezone as dt_timezone
from email.utils import format_datetime, make_msgid, parseaddr
from typing import Callable
from urllib.parse import urlsplit

from django.conf import settings
from django.core.mail import EmailMultiAlternatives, get_connection
from django.db import connection as db_connection
from django.db import transaction
from django.db.models import F, Q
from django.urls import reverse
from django.utils import timezone

from .models import Delivery, Issue, Subscriber

logger = logging.getLogger(__name__)

#: Attempts before a temporarily failing delivery is given up as ``failed``.
MAX_ATTEMPTS = 5
#: First retry delay; each later one doubles (1, 2, 4, 8 minutes).
RETRY_BASE_S = 60

Progress = Callable[[str], None]


class SendingError(Exception):
    """The issue cannot be sent in its current state."""


@dataclass
class SendSummary:
    """What one call of :func:`send_issue` did (counts of this run only)."""

    sent: int = 0
    retried: int = 0
    failed: int = 0
    uncertain: int = 0
    skipped: int = 0
    stopped: bool = False
    remaining: int = 0
    errors: list[str] = field(default_factory=list)

    @property
    def handled(self) -> int:
        return self.sent + self.retried + self.failed + self.skipped

    def as_line(self) -> str:
        return (
            f"sent {self.sent}, retried {self.retried}, failed {self.failed}, "
            f"uncertain {self.uncertain}, skipped {self.skipped}"
        )


def prepare_deliveries(*, issue: Issue) -> int:
    """Create one pending delivery per active subscriber; return how many the issue has.

    The unique (issue, subscriber) constraint makes a second call harmless: it
    only adds subscribers who became active since.
    """
    subscriber_ids = Subscriber.objects.filter(status=Subscriber.Status.ACTIVE).values_list("pk", flat=True)
    chunk: list[Delivery] = []
    for subscriber_id in subscriber_ids.iterator(chunk_size=2000):
        chunk.append(Delivery(issue=issue, subscriber_id=subscriber_id))
        if len(chunk) >= 2000:
            Delivery.objects.bulk_create(chunk, ignore_conflicts=True)
            chunk = []
    if chunk:
        Delivery.objects.bulk_create(chunk, ignore_conflicts=True)
    return Delivery.objects.filter(issue=issue).count()


def retry_delay(attempts: int) -> timedelta:
    """Return how long to wait before attempt ``attempts + 1`` (``attempts`` made so far, at least 1)."""
    return timedelta(seconds=RETRY_BASE_S * 2 ** max(attempts - 1, 0))


def unsubscribe_url(subscriber: Subscriber) -> str:
    """Return the absolute one-click unsubscribe URL for ``subscriber``."""
    return settings.SITE_URL + reverse("highlights:unsubscribe", args=[subscriber.token])


def unsubscribe_mailto(subscriber: Subscriber) -> str:
    """Return the mailto: unsubscribe address (the From address, with the token in the subject)."""
    address = getattr(settings, "HIGHLIGHTS_UNSUBSCRIBE_EMAIL", "") or parseaddr(settings.DEFAULT_FROM_EMAIL)[1]
    return f"mailto:{address}?subject=unsubscribe%20{subscriber.token}"


def message_domain() -> str:
    """Return the domain for Message-IDs: the site's host name, so replies and logs point at the site."""
    return urlsplit(settings.SITE_URL).hostname or "localhost"


def build_message(
    *, issue: Issue, subscriber: Subscriber, message_id: str, connection=None, positions: list[dict] | None = None
) -> EmailMultiAlternatives:
    """Render ``issue`` for ``subscriber`` as a text + HTML email with the list headers.

    ``positions`` (the subscriber's section, read for a whole batch at once)
    saves the rendering a query per subscriber with an account.
    """
    from . import rendering

    if positions is not None:
        subject, text, html = rendering.render_email(issue=issue, subscriber=subscriber, positions=positions)
    else:
        subject, text, html = rendering.render_email(issue=issue, subscriber=subscriber)
    headers = {
        "Message-ID": message_id,
        "Date": format_datetime(datetime.now(dt_timezone.utc)),
        "List-Unsubscribe": f"<{unsubscribe_url(subscriber)}>, <{unsubscribe_mailto(subscriber)}>",
        "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
        "List-Id": f"Bellwether weekly highlights <highlights.{message_domain()}>",
        "Auto-Submitted": "auto-generated",
        "Precedence": "bulk",
    }
    message = EmailMultiAlternatives(
        subject=subject,
        body=text,
        from_email=settings.DEFAULT_FROM_EMAIL,
        to=[subscriber.email],
        headers=headers,
        connection=connection,
    )
    message.attach_alternative(html, "text/html")
    return message


def _classify(error: BaseException) -> tuple[bool, str]:
    """Return (permanent, description) for an SMTP failure of one message."""
    if isinstance(error, smtplib.SMTPRecipientsRefused):
        code, text = next(iter(error.recipients.values()), (0, b""))
        text = text.decode("utf-8", "replace") if isinstance(text, bytes) else str(text)
        return code >= 500, f"{code} {text}".strip()
    if isinstance(error, smtplib.SMTPSenderRefused):
        # The server refused our From address: not this recipient's fault.
        text = error.smtp_error.decode("utf-8", "replace") if isinstance(error.smtp_error, bytes) else str(error.smtp_error)
        return False, f"{error.smtp_code} sender refused: {text}"
    if isinstance(error, smtplib.SMTPResponseException):
        text = error.smtp_error.decode("utf-8", "replace") if isinstance(error.smtp_error, bytes) else str(error.smtp_error)
        return error.smtp_code >= 500, f"{error.smtp_code} {text}".strip()
    return False, f"{type(error).__name__}: {error}"


def _connection_broken(error: BaseException) -> bool:
    """Return whether the SMTP connection must be reopened after ``error``."""
    if isinstance(error, (smtplib.SMTPRecipientsRefused, smtplib.SMTPSenderRefused, smtplib.SMTPDataError)):
        # smtplib sends RSET after these; the session is still usable.
        return False
    return True


def recover_interrupted(*, issue: Issue) -> int:
    """Mark deliveries left ``sending`` by an earlier run ``uncertain``; return how many.

    Their message may or may not have reached the SMTP server, so they are not
    resent automatically.
    """
    return Delivery.objects.filter(issue=issue, status=Delivery.Status.SENDING).update(
        status=Delivery.Status.UNCERTAIN,
        last_error="Interrupted between handing the message to SMTP and recording the answer; check before resending.",
    )


def start_sending(issue: Issue) -> Issue:
    """Move a built issue to ``sending`` and create its deliveries, in one transaction."""
    with transaction.atomic():
        issue = Issue.objects.select_for_update().get(pk=issue.pk)
        if issue.status == Issue.Status.DRAFT:
            raise SendingError(f"Issue #{issue.number} is a draft: build it before sending.")
        if issue.status == Issue.Status.BUILT:
            prepare_deliveries(issue=issue)
            issue.status = Issue.Status.SENDING
            issue.send_started_at = timezone.now()
            issue.save(update_fields=["status", "send_started_at"])
    return issue


def due_count(*, issue: Issue) -> int:
    """Return how many deliveries of ``issue`` a send started now would handle."""
    return _due(issue, timezone.now()).count()


def _due(issue: Issue, now: datetime):
    return Delivery.objects.filter(issue=issue).filter(
        Q(status=Delivery.Status.PENDING)
        | Q(status=Delivery.Status.RETRY, next_attempt_at__lte=now)
        | Q(status=Delivery.Status.RETRY, next_attempt_at__isnull=True)
    )


def _pick_batch(issue: Issue, batch_size: int, after_id: int) -> list[Delivery]:
    """Return the next due deliveries (with their subscribers), lowest id first."""
    now = timezone.now()
    with transaction.atomic():
        candidates = _due(issue, now).filter(pk__gt=after_id).order_by("pk")
        if db_connection.features.has_select_for_update_skip_locked:
            candidates = candidates.select_for_update(skip_locked=True)
        ids = list(candidates.values_list("pk", flat=True)[:batch_size])
    return list(Delivery.objects.filter(pk__in=ids).select_related("subscriber").order_by("pk"))


def _batch_positions(issue: Issue, batch: list[Delivery]) -> dict[int, list[dict]]:
    """Return the open positions of the batch's subscribers with accounts, read in one query."""
    from . import rendering

    user_ids = [d.subscriber.user_id for d in batch if d.subscriber.user_id]
    if not user_ids or not hasattr(rendering, "positions_by_user"):
        return {}
    return rendering.positions_by_user(issue=issue, user_ids=user_ids)


def _claim(delivery: Delivery, message_id: str) -> str:
    """Mark ``delivery`` ``sending`` (committed) if still due and its subscriber active.

    Return "claimed", "skipped" (subscriber no longer active; recorded) or
    "taken" (another worker claimed it first).
    """
    due = Q(status=Delivery.Status.PENDING) | Q(status=Delivery.Status.RETRY)
    claimed = (
        Delivery.objects.filter(due, pk=delivery.pk, subscriber__status=Subscriber.Status.ACTIVE)
        .update(status=Delivery.Status.SENDING, message_id=message_id, attempts=F("attempts") + 1)
    )
    if claimed:
        delivery.attempts += 1
        return "claimed"
    skipped = Delivery.objects.filter(due, pk=delivery.pk).update(status=Delivery.Status.SKIPPED, last_error="Subscriber not active at send time.")
    return "skipped" if skipped else "taken"


def _record_sent(delivery: Delivery) -> None:
    # Also from ``uncertain``: a worker starting meanwhile may have flagged this
    # in-flight message; the accepted answer settles it.
    Delivery.objects.filter(
        pk=delivery.pk, status__in=[Delivery.Status.SENDING, Delivery.Status.UNCERTAIN]
    ).update(status=Delivery.Status.SENT, sent_at=timezone.now(), last_error="")


def _record_failure(delivery: Delivery, error: BaseException) -> str:
    """Record a failed hand-over; return "failed" or "retried"."""
    from . import subscriptions

    permanent, description = _classify(error)
    if permanent:
        Delivery.objects.filter(pk=delivery.pk).update(status=Delivery.Status.FAILED, last_error=description, message_id="")
        subscriptions.mark_bounced(subscriber=delivery.subscriber, reason=description)
        return "failed"
    if delivery.attempts >= MAX_ATTEMPTS:
        Delivery.objects.filter(pk=delivery.pk).update(
            status=Delivery.Status.FAILED, last_error=f"Gave up after {delivery.attempts} attempts: {description}", message_id=""
        )
        return "failed"
    Delivery.objects.filter(pk=delivery.pk).update(
        status=Delivery.Status.RETRY,
        next_attempt_at=timezone.now() + retry_delay(delivery.attempts),
        last_error=description,
        message_id="",
    )
    return "retried"


def _finish_if_done(issue: Issue) -> int:
    """Mark the issue sent when nothing is left to send; return how many deliveries remain."""
    remaining = Delivery.objects.filter(
        issue=issue, status__in=[Delivery.Status.PENDING, Delivery.Status.RETRY, Delivery.Status.SENDING]
    ).count()
    if not remaining:
        Issue.objects.filter(pk=issue.pk).exclude(status=Issue.Status.SENT).update(status=Issue.Status.SENT, sent_at=timezone.now())
    return remaining


def send_issue(
    *,
    issue: Issue,
    batch_size: int | None = None,
    progress: Progress | None = None,
    stop_after: int | None = None,
) -> SendSummary:
    """Send ``issue`` to every due delivery, in batches over one reused SMTP connection each.

    Safe to call again after a crash or a stop: only ``pending`` deliveries and
    ``retry`` ones whose time has come are sent; deliveries found ``sending``
    become ``uncertain``. ``progress`` is called once per delivery handled with
    its outcome ("sent", "retried", "failed", "skipped"). ``stop_after`` stops
    after that many messages were handed to SMTP (for tests and partial runs).
    Retries not yet due are left for a later call; the issue becomes ``sent``
    when none remain.
    """
    batch_size = batch_size or settings.HIGHLIGHTS_BATCH_SIZE
    issue = start_sending(issue)
    summary = SendSummary(uncertain=recover_interrupted(issue=issue))
    if summary.uncertain:
        logger.warning("Issue #%s: %d deliveries interrupted mid-send marked uncertain", issue.number, summary.uncertain)
    handed = 0
    after_id = 0
    domain = message_domain()

    def note(outcome: str) -> None:
        if progress is not None:
            progress(outcome)

    while not summary.stopped:
        batch = _pick_batch(issue, batch_size, after_id)
        if not batch:
            break
        after_id = batch[-1].pk
        positions = _batch_positions(issue, batch)
        smtp = get_connection(fail_silently=False)
        try:
            smtp.open()
        except (smtplib.SMTPException, OSError) as error:
            # Nothing in this batch was claimed yet: it stays pending for the next run.
            summary.errors.append(f"Could not connect to the SMTP server: {error}")
            summary.stopped = True
            break
        try:
            for position, delivery in enumerate(batch):
                if stop_after is not None and handed >= stop_after:
                    summary.stopped = True
                    break
                message_id = make_msgid(domain=domain)
                outcome = _claim(delivery, message_id)
                if outcome == "taken":
                    continue
                if outcome == "skipped":
                    summary.skipped += 1
                    note("skipped")
                    continue
                handed += 1
                try:
                    message = build_message(
                        issue=issue,
                        subscriber=delivery.subscriber,
                        message_id=message_id,
                        connection=smtp,
                        positions=positions.get(delivery.subscriber.user_id, []) if delivery.subscriber.user_id else None,
                    )
                    if smtp.send_messages([message]) != 1:
                        raise smtplib.SMTPException("The mail backend did not accept the message.")
                except (smtplib.SMTPException, OSError) as error:
                    result = _record_failure(delivery, error)
                    setattr(summary, result, getattr(summary, result) + 1)
                    summary.errors.append(f"{delivery.subscriber.email}: {_classify(error)[1]}")
                    note(result)
                    if _connection_broken(error):
                        smtp.close()
                        try:
                            smtp.open()
                        except (smtplib.SMTPException, OSError) as reopen_error:
                            # The server is gone: the rest of this batch waits for a retry.
                            for rest in batch[position + 1 :]:
                                if _claim(rest, "") == "claimed":
                                    result = _record_failure(rest, reopen_error)
                                    setattr(summary, result, getattr(summary, result) + 1)
                                    note(result)
                            summary.errors.append(f"SMTP connection lost: {reopen_error}")
                            summary.stopped = True
                            break
                    continue
                _record_sent(delivery)
                summary.sent += 1
                note("sent")
        finally:
            smtp.close()
    summary.remaining = _finish_if_done(issue)
    return summary
