"""Send an issue: one delivery row per subscriber, SMTP batches over reused connections, crash-safe states.

Delivery states and who moves them:

* ``pending`` — created by :func:`prepare_deliveries`, waiting its turn; a
  delivery whose hand-over was cut short by a server problem comes back here
  (*released*, the attempt not counted).
* ``sending`` — claimed and about to be handed to SMTP; committed *before* the
  message leaves, so a process that dies from here on leaves a visible trace.
  The message is built before the claim, so a template error never leaves one.
* ``sent`` — SMTP accepted the message; its Message-ID is recorded.
* ``retry`` — refused for now at RCPT (4xx); tried again after
  ``next_attempt_at`` (exponential backoff), up to :data:`MAX_ATTEMPTS` times.
  A permanent refusal also waits here until the run has seen the relay accept
  another message (see below).
* ``failed`` — refused permanently at RCPT, or still refused after
  :data:`MAX_ATTEMPTS` attempts. Only an address error (enhanced status 5.1.x,
  e.g. ``550 5.1.1 user unknown``) also marks the subscriber bounced.
* ``uncertain`` — found ``sending`` when a send starts: the process died between
  handing the message over and recording the answer, so nobody knows whether it
  went. It is never resent automatically; an editor reviews it.
* ``skipped`` — the subscriber was no longer active when their turn came.

What the SMTP server says decides what happens (:func:`classify`):

* refused at RCPT with 5xx and 5.1.x: the address does not exist — a bounce;
* refused at RCPT with another 5xx (``554 5.7.1 relay denied``, or a 550 with no
  enhanced code, which RFC 5321 also uses for policy refusals): this issue
  fails for that reader, who stays subscribed — except that a plain 550 on
  :data:`PLAIN_550_BOUNCE_AFTER` issues in a row is a bounce too (servers such
  as Exim say "550 No such user" with no enhanced code);
* refused at RCPT with 4xx: retried later;
* the sender refused, the message refused at DATA, the login refused, any
  other server error: the same for every reader, so the run stops and the
  delivery in hand is released; nobody is touched;
* a dropped connection (or 421): the delivery is released and the connection
  reopened once; a second failure before a message gets through stops the run.

A relay that refuses everyone at RCPT looks like a list of dead addresses, so
refusals are only settled (failed, bounced) once a later message is accepted,
or when the run ends. After HIGHLIGHTS_MAX_CONSECUTIVE_REFUSALS recipients in a
row are refused the run stops and releases them all: nobody is bounced.

A delivery is claimed by one UPDATE whose WHERE tests the row's own status
(``pending``, or ``retry`` that is due) and the subscriber's (active). On
PostgreSQL a claim that waited for another one's row lock re-checks that
status on the row as the winner left it, so only one claim of a row succeeds
and two workers sending the same issue never mail anyone twice.
"""

from __future__ import annotations

import logging
import re
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
from django.db.models import Exists, F, OuterRef, Q
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
    """What one call of :func:`send_issue` did (counts of this run only).

    ``stop_reason`` says why the run stopped early on a server, connection or
    message problem ("" when it ran to the end or stopped at ``stop_after``);
    it is also the last line of ``errors``.
    """

    sent: int = 0
    retried: int = 0
    failed: int = 0
    bounced: int = 0
    released: int = 0
    uncertain: int = 0
    skipped: int = 0
    stopped: bool = False
    stop_reason: str = ""
    remaining: int = 0
    errors: list[str] = field(default_factory=list)

    @property
    def handled(self) -> int:
        return self.sent + self.retried + self.failed + self.bounced + self.skipped

    def as_line(self) -> str:
        return (
            f"sent {self.sent}, retried {self.retried}, failed {self.failed}, bounced {self.bounced}, "
            f"released {self.released}, uncertain {self.uncertain}, skipped {self.skipped}"
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


class Kind:
    """What an SMTP failure means for the delivery, the subscriber and the run."""

    BOUNCE = "bounce"  # refused at RCPT, 5xx with 5.1.x: the address does not exist
    REFUSED = "refused"  # refused at RCPT, another 5xx: this issue fails for this reader only
    TEMPORARY = "temporary"  # refused at RCPT, 4xx: try this reader again later
    CONNECTION = "connection"  # the connection dropped, or the server is closing it (421)
    SERVER = "server"  # sender, DATA, login or another server refusal: the same for every reader


@dataclass(frozen=True)
class Failure:
    kind: str
    description: str


#: An enhanced status code (RFC 3463) at the start of a reply's text, e.g. "5.1.1".
_ENHANCED = re.compile(r"^\s*([245])\.(\d{1,3})\.(\d{1,3})(?!\d)")
#: X.1.7 and X.1.8 are about the sender's address, not the recipient's.
_SENDER_ADDRESS_DETAILS = {"7", "8"}


def _text(raw) -> str:
    return (raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)).strip()


def is_address_error(code: int, text: str) -> bool:
    """Return whether an RCPT reply says the recipient's address does not exist (5xx with 5.1.x).

    A 5xx without an enhanced code is not enough: RFC 5321 answers 550 both
    for "no such mailbox" and for policy refusals such as "relaying denied".

    >>> is_address_error(550, "5.1.1 <ann@example.com>: Recipient address rejected: User unknown")
    True
    >>> is_address_error(554, "5.7.1 Relay access denied"), is_address_error(550, "No such user")
    (False, False)
    """
    match = _ENHANCED.match(text)
    return (
        code >= 500
        and match is not None
        and match.group(1) == "5"
        and match.group(2) == "1"
        and match.group(3) not in _SENDER_ADDRESS_DETAILS
    )


def classify(error: BaseException) -> Failure:
    """Return what an SMTP failure while handing one message over means (see the module docstring)."""
    if isinstance(error, smtplib.SMTPRecipientsRefused):
        code, raw = next(iter(error.recipients.values()), (0, b""))
        text = _text(raw)
        description = f"{code} {text}".strip()
        if code == 421:
            return Failure(Kind.CONNECTION, description)
        if 400 <= code < 500:
            return Failure(Kind.TEMPORARY, description)
        if code >= 500:
            return Failure(Kind.BOUNCE if is_address_error(code, text) else Kind.REFUSED, description)
        return Failure(Kind.SERVER, f"recipient refused with {description}")
    if isinstance(error, smtplib.SMTPResponseException):
        description = f"{error.smtp_code} {_text(error.smtp_error)}".strip()
        if error.smtp_code == 421:
            # The server is closing the connection (smtplib already closed it).
            return Failure(Kind.CONNECTION, description)
        if isinstance(error, smtplib.SMTPSenderRefused):
            sender = _text(error.sender)
            return Failure(Kind.SERVER, f"sender {parseaddr(sender)[1] or sender} refused: {description}")
        if isinstance(error, smtplib.SMTPDataError):
            return Failure(Kind.SERVER, f"message refused at DATA: {description}")
        if isinstance(error, smtplib.SMTPAuthenticationError):
            return Failure(Kind.SERVER, f"login refused: {description}")
        return Failure(Kind.SERVER, description)
    if isinstance(error, smtplib.SMTPServerDisconnected):
        return Failure(Kind.CONNECTION, f"connection lost: {error}")
    if isinstance(error, smtplib.SMTPException):
        return Failure(Kind.SERVER, f"{type(error).__name__}: {error}")
    return Failure(Kind.CONNECTION, f"{type(error).__name__}: {error}")


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
    return Delivery.objects.filter(issue=issue).filter(_due_q(now))


def _due_q(now: datetime) -> Q:
    """Return the condition, on the delivery row itself, for "may be claimed now"."""
    return (
        Q(status=Delivery.Status.PENDING)
        | Q(status=Delivery.Status.RETRY, next_attempt_at__lte=now)
        | Q(status=Delivery.Status.RETRY, next_attempt_at__isnull=True)
    )


def _pick_batch(issue: Issue, batch_size: int, after_id: int) -> list[Delivery]:
    """Return the next due deliveries (with their subscribers), lowest id first.

    Two workers may pick the same rows; :func:`_claim` decides who sends each.
    """
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


def _subscriber_active() -> Exists:
    return Exists(Subscriber.objects.filter(pk=OuterRef("subscriber_id"), status=Subscriber.Status.ACTIVE))


def _claim(delivery: Delivery, message_id: str) -> str:
    """Mark ``delivery`` ``sending`` (committed) if still due and its subscriber active.

    Return "claimed", "skipped" (subscriber no longer active; recorded) or
    "taken" (another worker claimed it first).

    One single-table UPDATE: the status test is on the row being updated, so
    on PostgreSQL a claim blocked by a concurrent one re-reads the winner's
    ``sending`` and updates nothing. (Filtering through the subscriber join
    made Django wrap the test in ``id IN (SELECT ...)``, whose rows are not
    re-checked: both claims won.)
    """
    claimed = (
        Delivery.objects.filter(_due_q(timezone.now()), _subscriber_active(), pk=delivery.pk)
        .update(status=Delivery.Status.SENDING, message_id=message_id, attempts=F("attempts") + 1)
    )
    if claimed:
        delivery.attempts += 1
        return "claimed"
    return "skipped" if _skip(delivery) else "taken"


def _skip(delivery: Delivery) -> bool:
    """Mark ``delivery`` skipped if it is still due and its subscriber is no longer active; return whether it was."""
    return bool(
        Delivery.objects.filter(_due_q(timezone.now()), ~_subscriber_active(), pk=delivery.pk).update(
            status=Delivery.Status.SKIPPED, last_error="Subscriber not active at send time."
        )
    )


#: A claimed delivery's states until the server's answer is recorded. Also
#: ``uncertain``: a worker starting meanwhile may have flagged this in-flight
#: message, and the server's answer settles it.
_IN_FLIGHT = (Delivery.Status.SENDING, Delivery.Status.UNCERTAIN)


def _record_sent(delivery: Delivery) -> None:
    Delivery.objects.filter(pk=delivery.pk, status__in=_IN_FLIGHT).update(
        status=Delivery.Status.SENT, sent_at=timezone.now(), last_error=""
    )


def _record_temporary(delivery: Delivery, description: str) -> str:
    """Record a temporary refusal of a claimed delivery; return "retried", or "failed" once out of attempts."""
    if delivery.attempts >= MAX_ATTEMPTS:
        Delivery.objects.filter(pk=delivery.pk, status__in=_IN_FLIGHT).update(
            status=Delivery.Status.FAILED, last_error=f"Gave up after {delivery.attempts} attempts: {description}", message_id=""
        )
        return "failed"
    _wait_for_retry(delivery, description)
    return "retried"


def _wait_for_retry(delivery: Delivery, description: str) -> None:
    Delivery.objects.filter(pk=delivery.pk, status__in=_IN_FLIGHT).update(
        status=Delivery.Status.RETRY,
        next_attempt_at=timezone.now() + retry_delay(delivery.attempts),
        last_error=description,
        message_id="",
    )


def _release(delivery: Delivery, reason: str) -> bool:
    """Put a claimed or held delivery back to ``pending``, its attempt not counted; return whether it was."""
    released = Delivery.objects.filter(pk=delivery.pk, status__in=[*_IN_FLIGHT, Delivery.Status.RETRY]).update(
        status=Delivery.Status.PENDING, attempts=F("attempts") - 1, next_attempt_at=None, message_id="",
        last_error=f"Released, to be sent again: {reason}",
    )
    if released:
        delivery.attempts -= 1
    return bool(released)


def _fail_held(delivery: Delivery, failure: Failure, *, issue: Issue) -> str:
    """Settle a permanent refusal held in ``retry``: fail it, bouncing the subscriber when the address is dead.

    Return "bounced", "failed", or "" when the delivery had left ``retry``.
    """
    from . import subscriptions

    changed = Delivery.objects.filter(pk=delivery.pk, status=Delivery.Status.RETRY).update(
        status=Delivery.Status.FAILED, next_attempt_at=None, last_error=failure.description, message_id=""
    )
    if not changed:
        return ""
    if failure.kind == Kind.BOUNCE or (is_plain_550(failure.description) and _plain_550_before(delivery, issue)):
        subscriptions.mark_bounced(subscriber=delivery.subscriber, reason=failure.description)
        return "bounced"
    return "failed"


#: Issues in a row a subscriber must be refused with a plain 550 (no enhanced
#: code) before the address counts as dead.
PLAIN_550_BOUNCE_AFTER = 3


def is_plain_550(description: str) -> bool:
    """Return whether a recorded refusal is a 550 without an enhanced status code.

    >>> is_plain_550("550 No Such User Here"), is_plain_550("550 5.7.1 Relaying denied")
    (True, False)
    """
    code, _, text = description.partition(" ")
    return code == "550" and _ENHANCED.match(text) is None


def _plain_550_before(delivery: Delivery, issue: Issue) -> bool:
    """Return whether the subscriber's issues before ``issue`` were refused with a plain 550 too (PLAIN_550_BOUNCE_AFTER in all)."""
    earlier = list(
        Delivery.objects.filter(subscriber_id=delivery.subscriber_id, issue__number__lt=issue.number)
        .order_by("-issue__number")
        .values_list("status", "last_error")[: PLAIN_550_BOUNCE_AFTER - 1]
    )
    return len(earlier) == PLAIN_550_BOUNCE_AFTER - 1 and all(
        status == Delivery.Status.FAILED and is_plain_550(error) for status, error in earlier
    )


def _finish_if_done(issue: Issue) -> int:
    """Mark the issue sent when nothing is left to send; return how many deliveries remain."""
    remaining = Delivery.objects.filter(
        issue=issue, status__in=[Delivery.Status.PENDING, Delivery.Status.RETRY, Delivery.Status.SENDING]
    ).count()
    if not remaining:
        Issue.objects.filter(pk=issue.pk).exclude(status=Issue.Status.SENT).update(status=Issue.Status.SENT, sent_at=timezone.now())
    return remaining


class _Stop(Exception):
    """End the run: the server, the connection or the message fails whoever the recipient; the text says why."""


@dataclass
class _Refusal:
    delivery: Delivery
    failure: Failure
    outcome: str  # "held" (permanent, waiting in retry), "retried" or "failed" (temporary, recorded)


class _Run:
    """One call of :func:`send_issue`: its SMTP connection, its summary and the refusals not yet settled."""

    def __init__(self, *, issue: Issue, summary: SendSummary, progress: Progress | None):
        self.issue = issue
        self.summary = summary
        self.progress = progress
        self.domain = message_domain()
        self.limit = max(1, settings.HIGHLIGHTS_MAX_CONSECUTIVE_REFUSALS)
        self.smtp = None
        self.handed = 0
        # RCPT refusals since the last accepted message, in order.
        self.streak: list[_Refusal] = []
        # The connection failed and no message got through since.
        self.dropped = False

    def note(self, outcome: str) -> None:
        if self.progress is not None:
            self.progress(outcome)

    def count(self, outcome: str) -> None:
        setattr(self.summary, outcome, getattr(self.summary, outcome) + 1)
        self.note(outcome)

    def open(self) -> None:
        self.smtp = get_connection(fail_silently=False)
        try:
            self.smtp.open()
        except (smtplib.SMTPException, OSError) as error:
            self.close()
            if isinstance(error, smtplib.SMTPAuthenticationError):
                raise _Stop(
                    f"The SMTP server refused the login ({error.smtp_code} {_text(error.smtp_error)}): "
                    "check EMAIL_HOST_USER and EMAIL_HOST_PASSWORD."
                ) from error
            raise _Stop(f"Could not connect to the SMTP server: {error}") from error

    def close(self) -> None:
        if self.smtp is not None:
            try:
                self.smtp.close()
            except (smtplib.SMTPException, OSError):
                pass  # the connection is gone already
            self.smtp = None

    def deliver(self, delivery: Delivery, positions: dict[int, list[dict]]) -> None:
        """Build, claim and hand over one delivery, then record what the server said.

        Raise :class:`_Stop` when the run cannot go on; the delivery is then
        back in ``pending`` (or was never claimed).
        """
        subscriber = delivery.subscriber
        if subscriber.status != Subscriber.Status.ACTIVE:
            if _skip(delivery):
                self.count("skipped")
            return
        message_id = make_msgid(domain=self.domain)
        try:
            message = build_message(
                issue=self.issue,
                subscriber=subscriber,
                message_id=message_id,
                connection=self.smtp,
                positions=positions.get(subscriber.user_id, []) if subscriber.user_id else None,
            )
        except Exception as error:
            # Before the claim: nothing to undo, the delivery stays due.
            logger.exception("Issue #%s: could not build the message for %s", self.issue.number, subscriber.email)
            reason = f"Could not build the message for {subscriber.email}: {type(error).__name__}: {error}"
            Delivery.objects.filter(pk=delivery.pk).filter(_due_q(timezone.now())).update(last_error=reason)
            raise _Stop(reason) from error
        first_try = True
        while True:
            claim = _claim(delivery, message_id)
            if claim == "skipped":
                self.count("skipped")
            if claim != "claimed":
                return
            if first_try:
                self.handed += 1
                first_try = False
            try:
                if self.smtp.send_messages([message]) != 1:
                    raise smtplib.SMTPException("The mail backend did not accept the message.")
            except (smtplib.SMTPException, OSError) as error:
                failure = classify(error)
                if failure.kind == Kind.CONNECTION:
                    _release(delivery, failure.description)
                    try:
                        self.reconnect(failure)
                    except _Stop:
                        self.count("released")
                        raise
                    continue  # the same message again, over the new connection
                if failure.kind == Kind.SERVER:
                    _release(delivery, failure.description)
                    self.count("released")
                    raise _Stop(f"The SMTP server failed while sending to {subscriber.email} ({failure.description}).") from error
                self.refused(delivery, failure)
                return
            except Exception as error:
                # Not an SMTP answer: the message could not even be encoded, so it never left.
                _release(delivery, f"{type(error).__name__}: {error}")
                self.count("released")
                logger.exception("Issue #%s: could not hand the message for %s over", self.issue.number, subscriber.email)
                raise _Stop(f"Could not hand the message for {subscriber.email} over: {type(error).__name__}: {error}") from error
            _record_sent(delivery)
            self.count("sent")
            self.dropped = False
            self.settle()
            return

    def reconnect(self, failure: Failure) -> None:
        """Reopen the connection once; raise :class:`_Stop` if it failed again before any message got through."""
        self.close()
        if self.dropped:
            raise _Stop(f"The SMTP connection failed twice in a row ({failure.description}).")
        self.dropped = True
        self.summary.errors.append(f"SMTP connection lost ({failure.description}); reconnected.")
        self.open()

    def refused(self, delivery: Delivery, failure: Failure) -> None:
        """Record a refusal at RCPT; raise :class:`_Stop` once too many came in a row."""
        self.summary.errors.append(f"{delivery.subscriber.email}: {failure.description}")
        if failure.kind == Kind.TEMPORARY:
            outcome = _record_temporary(delivery, failure.description)
        else:
            # Held in ``retry`` until the run knows the relay takes other mail.
            _wait_for_retry(delivery, failure.description)
            outcome = "held"
        self.streak.append(_Refusal(delivery, failure, outcome))
        if len(self.streak) >= self.limit:
            raise _Stop(
                f"{len(self.streak)} recipients in a row were refused (the last: {failure.description}): "
                "the SMTP server probably refuses every recipient, so nobody was marked bounced. "
                "Check the relay's settings (or raise HIGHLIGHTS_MAX_CONSECUTIVE_REFUSALS)."
            )

    def settle(self) -> None:
        """Make the refusals of the streak final: the relay took other mail, so they were about those readers."""
        for refusal in self.streak:
            if refusal.outcome == "held":
                outcome = _fail_held(refusal.delivery, refusal.failure, issue=self.issue)
                if outcome:
                    self.count(outcome)
            else:
                self.count(refusal.outcome)
        self.streak = []

    def release_streak(self, reason: str) -> None:
        """Put the unsettled refusals back to ``pending``: the run stopped before they could be judged."""
        for refusal in self.streak:
            if refusal.outcome == "failed":
                self.count("failed")
            elif _release(refusal.delivery, reason):
                self.count("released")
        self.streak = []


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
    its outcome ("sent", "retried", "failed", "bounced", "released",
    "skipped"). ``stop_after`` stops after that many messages were handed to
    SMTP (for tests and partial runs). A server, connection or message problem
    stops the run with ``stop_reason`` set and touches no subscriber. Retries
    not yet due are left for a later call; the issue becomes ``sent`` when none
    remain.
    """
    batch_size = batch_size or settings.HIGHLIGHTS_BATCH_SIZE
    issue = start_sending(issue)
    summary = SendSummary(uncertain=recover_interrupted(issue=issue))
    if summary.uncertain:
        logger.warning("Issue #%s: %d deliveries interrupted mid-send marked uncertain", issue.number, summary.uncertain)
    run = _Run(issue=issue, summary=summary, progress=progress)
    after_id = 0
    try:
        while not summary.stopped:
            batch = _pick_batch(issue, batch_size, after_id)
            if not batch:
                break
            after_id = batch[-1].pk
            positions = _batch_positions(issue, batch)
            run.open()
            try:
                for delivery in batch:
                    if stop_after is not None and run.handed >= stop_after:
                        summary.stopped = True
                        break
                    run.deliver(delivery, positions)
            finally:
                run.close()
    except _Stop as stop:
        summary.stopped = True
        summary.stop_reason = str(stop)
        run.release_streak(f"the run stopped: {stop}")
        summary.errors.append(summary.stop_reason)
        logger.error("Issue #%s: sending stopped: %s", issue.number, summary.stop_reason)
    else:
        run.settle()
    summary.remaining = _finish_if_done(issue)
    return summary
