"""Sending an issue through a real SMTP server (aiosmtpd on 127.0.0.1): headers, parts, crash safety, retries, bounces."""

from __future__ import annotations

import email
import socket
from collections import Counter
from datetime import datetime, timedelta
from datetime import timezone as dt_timezone
from email.policy import default as default_policy
from email.utils import parsedate_to_datetime
from urllib.parse import urlsplit

import pytest
from aiosmtpd.controller import Controller
from django.test import Client
from django.urls import resolve
from django.utils import timezone

from bellwether.highlights import sending
from bellwether.highlights.models import Delivery, Issue, Subscriber

pytestmark = pytest.mark.django_db

SITE = "https://news.example.org"
FROM = "Bellwether <newsroom@news.example.org>"


# --- a real SMTP server ----------------------------------------------------------------------------


class Recorder:
    """An aiosmtpd handler that keeps every accepted message and can refuse chosen recipients."""

    def __init__(self):
        self.messages: list[email.message.EmailMessage] = []
        self.refuse: dict[str, str] = {}  # address -> SMTP reply for RCPT TO
        self.refuse_times: Counter = Counter()  # address -> how many more times to refuse

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if address in self.refuse and self.refuse_times[address] > 0:
            self.refuse_times[address] -= 1
            return self.refuse[address]
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        self.messages.append(email.message_from_bytes(envelope.content, policy=default_policy))
        return "250 Message accepted for delivery"

    def per_recipient(self) -> Counter:
        return Counter(str(message["To"]) for message in self.messages)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def smtp(settings):
    recorder = Recorder()
    controller = Controller(recorder, hostname="127.0.0.1", port=_free_port())
    controller.start()
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST = "127.0.0.1"
    settings.EMAIL_PORT = controller.port
    settings.EMAIL_HOST_USER = ""
    settings.EMAIL_HOST_PASSWORD = ""
    settings.EMAIL_USE_TLS = False
    settings.EMAIL_USE_SSL = False
    settings.EMAIL_TIMEOUT = 10
    settings.SITE_URL = SITE
    settings.DEFAULT_FROM_EMAIL = FROM
    yield recorder
    controller.stop()


def _subscribers(count: int, status=Subscriber.Status.ACTIVE) -> list[Subscriber]:
    return [Subscriber.objects.create(email=f"reader{i}@example.com", status=status) for i in range(count)]


def _issue(number: int = 1) -> Issue:
    now = timezone.now()
    return Issue.objects.create(
        number=number, week_start=now - timedelta(days=7), week_end=now, status=Issue.Status.BUILT, subject=f"Weekly highlights #{number}"
    )


def _statuses(issue: Issue) -> Counter:
    return Counter(issue.deliveries.values_list("status", flat=True))


# --- tests -----------------------------------------------------------------------------------------


def test_prepare_deliveries_creates_one_row_per_active_subscriber_and_is_idempotent():
    """Only active subscribers get a delivery, and preparing twice adds nothing."""
    _subscribers(3)
    Subscriber.objects.create(email="pending@example.com", status=Subscriber.Status.PENDING)
    Subscriber.objects.create(email="gone@example.com", status=Subscriber.Status.UNSUBSCRIBED)
    issue = _issue()
    assert sending.prepare_deliveries(issue=issue) == 3
    assert sending.prepare_deliveries(issue=issue) == 3
    assert Delivery.objects.filter(issue=issue, status=Delivery.Status.PENDING).count() == 3


def test_messages_arrive_with_both_parts_and_list_headers(smtp):
    """Each subscriber gets one message with text and HTML parts, Message-ID, Date, From and RFC 8058 unsubscribe headers."""
    readers = _subscribers(3)
    issue = _issue()
    before = datetime.now(dt_timezone.utc).replace(microsecond=0)
    summary = sending.send_issue(issue=issue, batch_size=2)
    assert (summary.sent, summary.retried, summary.failed, summary.uncertain, summary.skipped) == (3, 0, 0, 0, 0)
    assert smtp.per_recipient() == Counter({r.email: 1 for r in readers})

    message = next(m for m in smtp.messages if m["To"] == readers[0].email)
    assert str(message["From"]) == FROM
    assert str(message["Subject"]) == "Weekly highlights #1"
    assert message.get_content_type() == "multipart/alternative"
    assert [part.get_content_type() for part in message.iter_parts()] == ["text/plain", "text/html"]
    own_link = f"{SITE}/highlights/unsubscribe/{readers[0].token}/"
    text = message.get_body(("plain",)).get_content()
    html = message.get_body(("html",)).get_content()
    assert own_link in text
    assert f'href="{own_link}"' in html
    assert "<script" not in html.lower() and "<svg" not in html.lower()
    sent_at = parsedate_to_datetime(str(message["Date"]))
    assert sent_at.utcoffset() == timedelta(0)
    assert before <= sent_at <= datetime.now(dt_timezone.utc) + timedelta(seconds=1)

    message_id = str(message["Message-ID"])
    assert message_id.startswith("<") and message_id.endswith("@news.example.org>")
    delivery = Delivery.objects.get(issue=issue, subscriber=readers[0])
    assert delivery.status == Delivery.Status.SENT
    assert delivery.message_id == message_id
    assert delivery.attempts == 1

    token = readers[0].token
    assert str(message["List-Unsubscribe"]).strip() == (
        f"<{SITE}/highlights/unsubscribe/{token}/>, <mailto:newsroom@news.example.org?subject=unsubscribe%20{token}>"
    )
    assert str(message["List-Unsubscribe-Post"]) == "List-Unsubscribe=One-Click"
    issue.refresh_from_db()
    assert issue.status == Issue.Status.SENT
    assert issue.sent_at is not None and issue.send_started_at is not None


def test_unsubscribe_link_in_the_header_resolves_to_the_unsubscribe_view(smtp):
    """The https URL in List-Unsubscribe is on the site and routes to highlights:unsubscribe with the subscriber's token."""
    reader = _subscribers(1)[0]
    sending.send_issue(issue=_issue())
    header = str(smtp.messages[0]["List-Unsubscribe"]).strip()
    url = header.split(",")[0].strip().strip("<>")
    parts = urlsplit(url)
    assert f"{parts.scheme}://{parts.netloc}" == SITE
    match = resolve(parts.path)
    assert match.view_name == "highlights:unsubscribe"
    assert match.kwargs == {"token": reader.token}


def test_every_site_link_in_the_html_part_resolves(smtp):
    """Each href on the site in the received HTML resolves to a URL pattern (no dead links in the email)."""
    import re

    _subscribers(1)
    sending.send_issue(issue=_issue())
    html = smtp.messages[0].get_body(("html",)).get_content()
    links = {link for link in re.findall(r'href="([^"]+)"', html) if link.startswith(SITE)}
    assert f"{SITE}/highlights/unsubscribe/{Subscriber.objects.get().token}/" in links
    for link in links:
        resolve(urlsplit(link).path)


def test_one_click_post_from_the_header_unsubscribes(smtp):
    """The RFC 8058 POST (List-Unsubscribe=One-Click, no login, no CSRF token) to the header's URL unsubscribes the reader."""
    reader = _subscribers(1)[0]
    sending.send_issue(issue=_issue())
    url = str(smtp.messages[0]["List-Unsubscribe"]).strip().split(",")[0].strip().strip("<>")
    response = Client(enforce_csrf_checks=True).post(
        urlsplit(url).path, data="List-Unsubscribe=One-Click", content_type="application/x-www-form-urlencoded"
    )
    assert response.status_code in (200, 204, 302)
    reader.refresh_from_db()
    assert reader.status == Subscriber.Status.UNSUBSCRIBED


def test_a_send_stopped_halfway_and_resumed_mails_everyone_exactly_once(smtp):
    """Stopping after 4 of 10 messages, then resuming, delivers each subscriber exactly one message."""
    readers = _subscribers(10)
    issue = _issue()
    first = sending.send_issue(issue=issue, batch_size=3, stop_after=4)
    assert first.sent == 4 and first.stopped is True
    assert len(smtp.messages) == 4
    issue.refresh_from_db()
    assert issue.status == Issue.Status.SENDING
    assert _statuses(issue) == Counter({"sent": 4, "pending": 6})

    second = sending.send_issue(issue=issue, batch_size=3)
    assert (second.sent, second.uncertain, second.remaining) == (6, 0, 0)
    assert smtp.per_recipient() == Counter({r.email: 1 for r in readers})
    issue.refresh_from_db()
    assert issue.status == Issue.Status.SENT

    third = sending.send_issue(issue=issue)
    assert third.handled == 0
    assert len(smtp.messages) == 10


def test_a_crash_after_smtp_accepted_leaves_an_uncertain_delivery_that_is_not_resent(smtp, monkeypatch):
    """A process killed between SMTP's acceptance and the record leaves `sending`; the next run marks it uncertain and sends only the others."""
    readers = _subscribers(6)
    issue = _issue()
    real_record = sending._record_sent
    calls = {"n": 0}

    def dying_record(delivery):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt("killed")
        real_record(delivery)

    monkeypatch.setattr(sending, "_record_sent", dying_record)
    with pytest.raises(KeyboardInterrupt):
        sending.send_issue(issue=issue, batch_size=4)
    monkeypatch.setattr(sending, "_record_sent", real_record)
    assert _statuses(issue) == Counter({"sent": 2, "sending": 1, "pending": 3})
    in_doubt = Delivery.objects.get(issue=issue, status=Delivery.Status.SENDING)

    resumed = sending.send_issue(issue=issue, batch_size=4)
    assert (resumed.sent, resumed.uncertain) == (3, 1)
    in_doubt.refresh_from_db()
    assert in_doubt.status == Delivery.Status.UNCERTAIN
    assert in_doubt.message_id != ""
    # The server got it once (before the crash) and never again.
    assert smtp.per_recipient() == Counter({r.email: 1 for r in readers})
    assert sending.send_issue(issue=issue).handled == 0
    assert len(smtp.messages) == 6
    issue.refresh_from_db()
    assert issue.status == Issue.Status.SENT


def test_a_delivery_left_sending_becomes_uncertain_and_is_not_resent(smtp):
    """A delivery found `sending` at start is marked uncertain and the SMTP server never sees it."""
    readers = _subscribers(2)
    issue = _issue()
    sending.prepare_deliveries(issue=issue)
    Issue.objects.filter(pk=issue.pk).update(status=Issue.Status.SENDING)
    Delivery.objects.filter(subscriber=readers[0]).update(status=Delivery.Status.SENDING, message_id="<x@news.example.org>", attempts=1)
    summary = sending.send_issue(issue=issue)
    assert (summary.sent, summary.uncertain) == (1, 1)
    assert smtp.per_recipient() == Counter({readers[1].email: 1})
    assert Delivery.objects.get(subscriber=readers[0]).status == Delivery.Status.UNCERTAIN


def test_a_temporary_refusal_is_retried_with_backoff_and_later_succeeds(smtp):
    """A 451 on RCPT puts the delivery in retry one minute later (then two); once due and accepted it is sent, once."""
    readers = _subscribers(3)
    flaky = readers[1].email
    smtp.refuse[flaky] = "451 4.7.1 Try again later"
    smtp.refuse_times[flaky] = 2
    issue = _issue()

    started = timezone.now()
    first = sending.send_issue(issue=issue)
    assert (first.sent, first.retried, first.remaining) == (2, 1, 1)
    delivery = Delivery.objects.get(subscriber=readers[1])
    assert delivery.status == Delivery.Status.RETRY
    assert delivery.attempts == 1
    assert "451" in delivery.last_error
    assert started + timedelta(seconds=60) <= delivery.next_attempt_at <= timezone.now() + timedelta(seconds=60)
    issue.refresh_from_db()
    assert issue.status == Issue.Status.SENDING

    # Not due yet: nothing happens.
    assert sending.send_issue(issue=issue).handled == 0

    Delivery.objects.filter(pk=delivery.pk).update(next_attempt_at=timezone.now() - timedelta(seconds=1))
    started = timezone.now()
    second = sending.send_issue(issue=issue)
    assert second.retried == 1
    delivery.refresh_from_db()
    assert delivery.attempts == 2
    assert started + timedelta(seconds=120) <= delivery.next_attempt_at <= timezone.now() + timedelta(seconds=120)

    Delivery.objects.filter(pk=delivery.pk).update(next_attempt_at=timezone.now() - timedelta(seconds=1))
    third = sending.send_issue(issue=issue)
    assert (third.sent, third.remaining) == (1, 0)
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts) == (Delivery.Status.SENT, 3)
    assert smtp.per_recipient() == Counter({r.email: 1 for r in readers})
    issue.refresh_from_db()
    assert issue.status == Issue.Status.SENT


def test_temporary_failures_give_up_after_max_attempts(smtp, monkeypatch):
    """After MAX_ATTEMPTS temporary refusals the delivery is failed, and the subscriber stays active."""
    monkeypatch.setattr(sending, "MAX_ATTEMPTS", 2)
    reader = _subscribers(1)[0]
    smtp.refuse[reader.email] = "452 4.2.2 Mailbox full"
    smtp.refuse_times[reader.email] = 10
    issue = _issue()
    assert sending.send_issue(issue=issue).retried == 1
    Delivery.objects.update(next_attempt_at=timezone.now() - timedelta(seconds=1))
    assert sending.send_issue(issue=issue).failed == 1
    delivery = Delivery.objects.get()
    assert delivery.status == Delivery.Status.FAILED
    assert delivery.last_error.startswith("Gave up after 2 attempts: 452")
    reader.refresh_from_db()
    assert reader.status == Subscriber.Status.ACTIVE
    issue.refresh_from_db()
    assert issue.status == Issue.Status.SENT


def test_a_permanent_refusal_bounces_the_subscriber_who_gets_no_later_issue(smtp):
    """A 550 fails the delivery and marks the subscriber bounced; the next issue does not mail them."""
    readers = _subscribers(3)
    bad = readers[2]
    smtp.refuse[bad.email] = "550 5.1.1 No such user"
    smtp.refuse_times[bad.email] = 1
    first = sending.send_issue(issue=_issue(1))
    assert (first.sent, first.failed) == (2, 1)
    delivery = Delivery.objects.get(subscriber=bad)
    assert delivery.status == Delivery.Status.FAILED
    assert delivery.last_error.startswith("550")
    bad.refresh_from_db()
    assert bad.status == Subscriber.Status.BOUNCED

    second_issue = _issue(2)
    second = sending.send_issue(issue=second_issue)
    assert second.sent == 2
    assert not Delivery.objects.filter(issue=second_issue, subscriber=bad).exists()
    assert smtp.per_recipient() == Counter({readers[0].email: 2, readers[1].email: 2})


def test_a_subscriber_who_left_before_their_turn_is_skipped(smtp):
    """A delivery whose subscriber unsubscribed after the deliveries were prepared is skipped, not sent."""
    readers = _subscribers(3)
    issue = _issue()
    first = sending.send_issue(issue=issue, stop_after=1)
    assert first.sent == 1
    Subscriber.objects.filter(pk=readers[2].pk).update(status=Subscriber.Status.UNSUBSCRIBED)
    second = sending.send_issue(issue=issue)
    assert (second.sent, second.skipped) == (1, 1)
    assert Delivery.objects.get(subscriber=readers[2]).status == Delivery.Status.SKIPPED
    assert smtp.per_recipient() == Counter({readers[0].email: 1, readers[1].email: 1})


def test_a_draft_issue_is_refused():
    """Sending a draft raises SendingError and creates no deliveries."""
    _subscribers(1)
    issue = _issue()
    Issue.objects.filter(pk=issue.pk).update(status=Issue.Status.DRAFT)
    issue.refresh_from_db()
    with pytest.raises(sending.SendingError):
        sending.send_issue(issue=issue)
    assert Delivery.objects.count() == 0


def test_an_unreachable_smtp_server_leaves_everything_pending(settings):
    """With no SMTP server listening the run stops with an error and every delivery stays pending."""
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST = "127.0.0.1"
    settings.EMAIL_PORT = _free_port()
    settings.EMAIL_TIMEOUT = 2
    _subscribers(2)
    issue = _issue()
    summary = sending.send_issue(issue=issue)
    assert summary.stopped is True and summary.sent == 0
    assert summary.errors[0].startswith("Could not connect to the SMTP server")
    assert _statuses(issue) == Counter({"pending": 2})


def test_one_smtp_connection_per_batch(smtp, monkeypatch):
    """Seven messages in batches of three open exactly three SMTP connections."""
    from django.core.mail.backends.smtp import EmailBackend

    opened = {"n": 0}
    real_open = EmailBackend.open

    def counting_open(self):
        created = real_open(self)
        if created:
            opened["n"] += 1
        return created

    monkeypatch.setattr(EmailBackend, "open", counting_open)
    _subscribers(7)
    assert sending.send_issue(issue=_issue(), batch_size=3).sent == 7
    assert opened["n"] == 3


# --- the weekly schedule and the task --------------------------------------------------------------


@pytest.fixture
def berlin_friday_seven(settings):
    settings.HIGHLIGHTS_WEEKDAY = 4
    settings.HIGHLIGHTS_TIME = "07:00"
    settings.HIGHLIGHTS_TIME_ZONE = "Europe/Berlin"


def test_the_scheduler_enqueues_the_week_once_even_when_called_twice(berlin_friday_seven):
    """Before Friday 07:00 Berlin nothing happens; after it one issue 2026-W47 and one task, however often it is called."""
    from zoneinfo import ZoneInfo

    from django_tasks_db.models import DBTaskResult

    from bellwether.highlights.tasks import schedule_due_issue

    berlin = ZoneInfo("Europe/Berlin")
    assert schedule_due_issue(now=datetime(2026, 11, 20, 6, 59, tzinfo=berlin)) is None
    assert Issue.objects.count() == 0

    issue = schedule_due_issue(now=datetime(2026, 11, 20, 7, 1, tzinfo=berlin))
    assert (issue.schedule_key, issue.status, issue.number) == ("2026-W47", Issue.Status.DRAFT, 1)
    assert schedule_due_issue(now=datetime(2026, 11, 20, 7, 2, tzinfo=berlin)) is None
    assert schedule_due_issue(now=datetime(2026, 11, 22, 23, 0, tzinfo=berlin)) is None
    tasks = list(DBTaskResult.objects.values_list("task_path", "args_kwargs"))
    assert tasks == [("bellwether.highlights.tasks.send_weekly_issue", {"args": ["2026-W47"], "kwargs": {}})]

    # Monday 00:30 Berlin is Sunday 23:30 UTC: already the next ISO week in the configured zone, but before its Friday.
    assert schedule_due_issue(now=datetime(2026, 11, 23, 0, 30, tzinfo=berlin)) is None
    nxt = schedule_due_issue(now=datetime(2026, 11, 27, 8, 0, tzinfo=berlin))
    assert (nxt.schedule_key, nxt.number) == ("2026-W48", 2)
    assert DBTaskResult.objects.count() == 2


def test_a_racing_second_reservation_of_the_week_is_harmless(berlin_friday_seven):
    """When another worker created the week's issue between the check and the insert, the unique key refuses it and nothing is enqueued."""
    from zoneinfo import ZoneInfo

    from django_tasks_db.models import DBTaskResult

    from bellwether.highlights import tasks

    now = datetime(2026, 11, 20, 9, 0, tzinfo=ZoneInfo("Europe/Berlin"))
    Issue.objects.create(number=5, schedule_key="2026-W47", week_start=now, week_end=now)
    real_filter = Issue.objects.filter

    class Blind:
        """Make the existence check miss the row, as a worker racing another would."""

        def exists(self):
            return False

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(Issue.objects, "filter", lambda *a, **k: Blind() if "schedule_key" in k else real_filter(*a, **k))
        assert tasks.schedule_due_issue(now=now) is None
    assert Issue.objects.count() == 1
    assert DBTaskResult.objects.count() == 0


def test_the_weekly_task_builds_the_reserved_issue_and_sends_it(smtp, berlin_friday_seven):
    """Running the queued task builds the draft issue for its week and mails every active subscriber."""
    from zoneinfo import ZoneInfo

    from bellwether.highlights.tasks import schedule_due_issue, send_weekly_issue

    readers = _subscribers(2)
    schedule_due_issue(now=datetime(2026, 11, 20, 7, 30, tzinfo=ZoneInfo("Europe/Berlin")))
    result = send_weekly_issue.call("2026-W47")
    assert result == {"issue": 1, "sent": 2, "retried": 0, "failed": 0, "uncertain": 0, "skipped": 0, "remaining": 0}
    assert smtp.per_recipient() == Counter({r.email: 1 for r in readers})
    assert Issue.objects.get(schedule_key="2026-W47").status == Issue.Status.SENT


def test_the_weekly_task_requeues_itself_for_retries(smtp, monkeypatch):
    """With a temporary failure left, the task queues itself again for the retry time."""
    from django_tasks_db.models import DBTaskResult

    from bellwether.highlights.tasks import send_weekly_issue

    reader = _subscribers(1)[0]
    smtp.refuse[reader.email] = "421 4.3.2 Busy"
    smtp.refuse_times[reader.email] = 1
    issue = _issue()
    Issue.objects.filter(pk=issue.pk).update(schedule_key="2026-W47")
    result = send_weekly_issue.call("2026-W47")
    assert (result["retried"], result["remaining"]) == (1, 1)
    queued = DBTaskResult.objects.get()
    assert queued.args_kwargs == {"args": ["2026-W47"], "kwargs": {}}
    assert queued.run_after == Delivery.objects.get().next_attempt_at


# --- the command ---------------------------------------------------------------------------------


def test_the_send_command_prints_a_summary(smtp):
    """`bellwether highlights send` mails the newest built issue and prints the counts."""
    from io import StringIO

    from django.core.management import call_command

    _subscribers(3)
    _issue(1)
    out, err = StringIO(), StringIO()
    call_command("highlights", "send", "--batch-size", "2", "--no-progress", stdout=out, stderr=err)
    assert out.getvalue().splitlines() == [
        "Sending issue #1 (Weekly highlights #1) to 3 subscriber(s) in batches of 2",
        "Issue #1: sent 3, retried 0, failed 0, uncertain 0, skipped 0; 0 left to send; issue is sent",
    ]
    assert len(smtp.messages) == 3
