"""Sending an issue through a real SMTP server (aiosmtpd on 127.0.0.1, see conftest.py): headers, parts, crash safety, retries, bounces."""

from __future__ import annotations

from collections import Counter
from datetime import datetime, timedelta
from datetime import timezone as dt_timezone
from email.utils import parsedate_to_datetime
from urllib.parse import urlsplit

import pytest
from django.test import Client
from django.urls import resolve
from django.utils import timezone

from bellwether.highlights import sending
from bellwether.highlights.models import Delivery, Issue, Subscriber
from tests.highlights.conftest import FROM, SITE, built_issue, delivery_statuses, free_port, subscribers

pytestmark = pytest.mark.django_db


# --- tests -----------------------------------------------------------------------------------------


def test_prepare_deliveries_creates_one_row_per_active_subscriber_and_is_idempotent():
    """Only active subscribers get a delivery, and preparing twice adds nothing."""
    subscribers(3)
    Subscriber.objects.create(email="pending@example.com", status=Subscriber.Status.PENDING)
    Subscriber.objects.create(email="gone@example.com", status=Subscriber.Status.UNSUBSCRIBED)
    issue = built_issue()
    assert sending.prepare_deliveries(issue=issue) == 3
    assert sending.prepare_deliveries(issue=issue) == 3
    assert Delivery.objects.filter(issue=issue, status=Delivery.Status.PENDING).count() == 3


def test_messages_arrive_with_both_parts_and_list_headers(smtp):
    """Each subscriber gets one message with text and HTML parts, Message-ID, Date, From and RFC 8058 unsubscribe headers."""
    readers = subscribers(3)
    issue = built_issue()
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
    reader = subscribers(1)[0]
    sending.send_issue(issue=built_issue())
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

    subscribers(1)
    sending.send_issue(issue=built_issue())
    html = smtp.messages[0].get_body(("html",)).get_content()
    links = {link for link in re.findall(r'href="([^"]+)"', html) if link.startswith(SITE)}
    assert f"{SITE}/highlights/unsubscribe/{Subscriber.objects.get().token}/" in links
    for link in links:
        resolve(urlsplit(link).path)


def test_one_click_post_from_the_header_unsubscribes(smtp):
    """The RFC 8058 POST (List-Unsubscribe=One-Click, no login, no CSRF token) to the header's URL unsubscribes the reader."""
    reader = subscribers(1)[0]
    sending.send_issue(issue=built_issue())
    url = str(smtp.messages[0]["List-Unsubscribe"]).strip().split(",")[0].strip().strip("<>")
    response = Client(enforce_csrf_checks=True).post(
        urlsplit(url).path, data="List-Unsubscribe=One-Click", content_type="application/x-www-form-urlencoded"
    )
    assert response.status_code in (200, 204, 302)
    reader.refresh_from_db()
    assert reader.status == Subscriber.Status.UNSUBSCRIBED


def test_a_send_stopped_halfway_and_resumed_mails_everyone_exactly_once(smtp):
    """Stopping after 4 of 10 messages, then resuming, delivers each subscriber exactly one message."""
    readers = subscribers(10)
    issue = built_issue()
    first = sending.send_issue(issue=issue, batch_size=3, stop_after=4)
    assert first.sent == 4 and first.stopped is True
    assert len(smtp.messages) == 4
    issue.refresh_from_db()
    assert issue.status == Issue.Status.SENDING
    assert delivery_statuses(issue) == Counter({"sent": 4, "pending": 6})

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
    readers = subscribers(6)
    issue = built_issue()
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
    assert delivery_statuses(issue) == Counter({"sent": 2, "sending": 1, "pending": 3})
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
    readers = subscribers(2)
    issue = built_issue()
    sending.prepare_deliveries(issue=issue)
    Issue.objects.filter(pk=issue.pk).update(status=Issue.Status.SENDING)
    Delivery.objects.filter(subscriber=readers[0]).update(status=Delivery.Status.SENDING, message_id="<x@news.example.org>", attempts=1)
    summary = sending.send_issue(issue=issue)
    assert (summary.sent, summary.uncertain) == (1, 1)
    assert smtp.per_recipient() == Counter({readers[1].email: 1})
    assert Delivery.objects.get(subscriber=readers[0]).status == Delivery.Status.UNCERTAIN


def test_a_temporary_refusal_is_retried_with_backoff_and_later_succeeds(smtp):
    """A 451 on RCPT puts the delivery in retry one minute later (then two); once due and accepted it is sent, once."""
    readers = subscribers(3)
    flaky = readers[1].email
    smtp.refuse[flaky] = "451 4.7.1 Try again later"
    smtp.refuse_times[flaky] = 2
    issue = built_issue()

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
    reader = subscribers(1)[0]
    smtp.refuse[reader.email] = "452 4.2.2 Mailbox full"
    smtp.refuse_times[reader.email] = 10
    issue = built_issue()
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
    """A 550 5.1.1 at RCPT fails the delivery and marks the subscriber bounced; the next issue does not mail them."""
    readers = subscribers(3)
    bad = readers[2]
    smtp.refuse[bad.email] = "550 5.1.1 No such user"
    smtp.refuse_times[bad.email] = 1
    first = sending.send_issue(issue=built_issue(1))
    assert (first.sent, first.failed, first.bounced) == (2, 0, 1)
    delivery = Delivery.objects.get(subscriber=bad)
    assert delivery.status == Delivery.Status.FAILED
    assert delivery.last_error == "550 5.1.1 No such user"
    bad.refresh_from_db()
    assert (bad.status, bad.bounce_reason) == (Subscriber.Status.BOUNCED, "550 5.1.1 No such user")

    second_issue = built_issue(2)
    second = sending.send_issue(issue=second_issue)
    assert second.sent == 2
    assert not Delivery.objects.filter(issue=second_issue, subscriber=bad).exists()
    assert smtp.per_recipient() == Counter({readers[0].email: 2, readers[1].email: 2})


def test_a_subscriber_who_left_before_their_turn_is_skipped(smtp):
    """A delivery whose subscriber unsubscribed after the deliveries were prepared is skipped, not sent."""
    readers = subscribers(3)
    issue = built_issue()
    first = sending.send_issue(issue=issue, stop_after=1)
    assert first.sent == 1
    Subscriber.objects.filter(pk=readers[2].pk).update(status=Subscriber.Status.UNSUBSCRIBED)
    second = sending.send_issue(issue=issue)
    assert (second.sent, second.skipped) == (1, 1)
    assert Delivery.objects.get(subscriber=readers[2]).status == Delivery.Status.SKIPPED
    assert smtp.per_recipient() == Counter({readers[0].email: 1, readers[1].email: 1})


def test_a_draft_issue_is_refused():
    """Sending a draft raises SendingError and creates no deliveries."""
    subscribers(1)
    issue = built_issue()
    Issue.objects.filter(pk=issue.pk).update(status=Issue.Status.DRAFT)
    issue.refresh_from_db()
    with pytest.raises(sending.SendingError):
        sending.send_issue(issue=issue)
    assert Delivery.objects.count() == 0


def test_an_unreachable_smtp_server_leaves_everything_pending(settings):
    """With no SMTP server listening the run stops with an error and every delivery stays pending."""
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST = "127.0.0.1"
    settings.EMAIL_PORT = free_port()
    settings.EMAIL_TIMEOUT = 2
    subscribers(2)
    issue = built_issue()
    summary = sending.send_issue(issue=issue)
    assert summary.stopped is True and summary.sent == 0
    assert summary.stop_reason.startswith("Could not connect to the SMTP server: ")
    assert summary.errors == [summary.stop_reason]
    assert delivery_statuses(issue) == Counter({"pending": 2})


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
    subscribers(7)
    assert sending.send_issue(issue=built_issue(), batch_size=3).sent == 7
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

    readers = subscribers(2)
    schedule_due_issue(now=datetime(2026, 11, 20, 7, 30, tzinfo=ZoneInfo("Europe/Berlin")))
    result = send_weekly_issue.call("2026-W47")
    assert result == {
        "issue": 1, "sent": 2, "retried": 0, "failed": 0, "bounced": 0, "released": 0, "uncertain": 0, "skipped": 0,
        "remaining": 0, "stopped": "",
    }
    assert smtp.per_recipient() == Counter({r.email: 1 for r in readers})
    assert Issue.objects.get(schedule_key="2026-W47").status == Issue.Status.SENT


def test_the_weekly_task_requeues_itself_for_retries(smtp, monkeypatch):
    """With a temporary failure left, the task queues itself again for the retry time."""
    from django_tasks_db.models import DBTaskResult

    from bellwether.highlights.tasks import send_weekly_issue

    reader = subscribers(1)[0]
    smtp.refuse[reader.email] = "450 4.2.1 Mailbox busy"
    smtp.refuse_times[reader.email] = 1
    issue = built_issue()
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

    subscribers(3)
    built_issue(1)
    out, err = StringIO(), StringIO()
    call_command("highlights", "send", "--batch-size", "2", "--no-progress", stdout=out, stderr=err)
    assert out.getvalue().splitlines() == [
        "Sending issue #1 (Weekly highlights #1) to 3 subscriber(s) in batches of 2",
        "Issue #1: sent 3, retried 0, failed 0, bounced 0, released 0, uncertain 0, skipped 0; 0 left to send; issue is sent",
    ]
    assert len(smtp.messages) == 3
