"""What an SMTP server's refusals do to a send (aiosmtpd on 127.0.0.1, see conftest.py).

Only an unknown address (5.1.x at RCPT) bounces a subscriber. A relay that
refuses everyone, a refused sender, message or login, and a lost connection
stop the run, say why and touch nobody; their deliveries wait for the next run.
"""

from __future__ import annotations

import copy
from collections import Counter
from datetime import datetime, timedelta
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from bellwether.accounts.services import create_user
from bellwether.highlights import sending
from bellwether.highlights.models import Delivery, Issue, Subscriber
from tests.highlights.conftest import built_issue, delivery_statuses, subscribers

pytestmark = pytest.mark.django_db

RELAY_REASON = (
    "20 recipients in a row were refused (the last: {reply}): the SMTP server probably refuses every recipient, "
    "so nobody was marked bounced. Check the relay's settings (or raise HIGHLIGHTS_MAX_CONSECUTIVE_REFUSALS)."
)


def _counts(summary: sending.SendSummary) -> dict[str, int]:
    return {
        name: getattr(summary, name) for name in ("sent", "retried", "failed", "bounced", "released", "uncertain", "skipped")
    }


def _nothing_touched(issue: Issue, readers: list[Subscriber]) -> None:
    """Every subscriber is still active and every delivery pending, with no attempt counted."""
    assert Counter(Subscriber.objects.values_list("status", flat=True)) == Counter({Subscriber.Status.ACTIVE: len(readers)})
    assert Counter(issue.deliveries.values_list("status", "attempts")) == Counter({(Delivery.Status.PENDING, 0): len(readers)})


# --- a relay that refuses everyone ------------------------------------------------------------------


@pytest.mark.parametrize(
    "reply",
    [
        "554 5.7.1 Relay access denied",
        "554 relay denied",
        # A relay that thinks it is the final destination calls every address unknown.
        "550 5.1.1 User unknown in local recipient table",
        "451 4.3.0 Try again later",
    ],
)
def test_a_relay_refusing_every_recipient_bounces_nobody_and_stops_after_20(smtp, reply):
    """30 subscribers, every RCPT refused: the run stops after 20 refusals, bounces nobody, and everyone is mailed once the relay is fixed."""
    readers = subscribers(30)
    issue = built_issue()
    smtp.refuse_every_rcpt = reply
    summary = sending.send_issue(issue=issue)

    reason = RELAY_REASON.format(reply=reply)
    assert summary.stop_reason == reason
    assert _counts(summary) == {"sent": 0, "retried": 0, "failed": 0, "bounced": 0, "released": 20, "uncertain": 0, "skipped": 0}
    assert summary.errors == [f"reader{i}@example.com: {reply}" for i in range(20)] + [reason]
    assert sum(smtp.rcpt_seen.values()) == 20
    _nothing_touched(issue, readers)
    assert Delivery.objects.get(subscriber=readers[0]).last_error == f"Released, to be sent again: the run stopped: {reason}"
    assert Issue.objects.get(pk=issue.pk).status == Issue.Status.SENDING

    smtp.refuse_every_rcpt = ""
    again = sending.send_issue(issue=issue)
    assert (again.sent, again.stop_reason, again.remaining) == (30, "", 0)
    assert smtp.per_recipient() == Counter({reader.email: 1 for reader in readers})
    assert Counter(issue.deliveries.values_list("status", "attempts")) == Counter({(Delivery.Status.SENT, 1): 30})


def test_the_limit_is_a_setting_and_an_accepted_message_resets_the_count(smtp, settings):
    """With a limit of 3, two refusals, an accepted message and two more do not stop the run; three in a row do."""
    settings.HIGHLIGHTS_MAX_CONSECUTIVE_REFUSALS = 3
    readers = subscribers(9)
    for index in (0, 1, 3, 4, 6, 7, 8):
        smtp.refuse[readers[index].email] = "554 5.7.1 Recipient refused by policy"
        smtp.refuse_times[readers[index].email] = 1
    issue = built_issue()
    summary = sending.send_issue(issue=issue, batch_size=4)

    assert summary.stop_reason.startswith("3 recipients in a row were refused (the last: 554 5.7.1 Recipient refused by policy)")
    assert _counts(summary) == {"sent": 2, "retried": 0, "failed": 4, "bounced": 0, "released": 3, "uncertain": 0, "skipped": 0}
    by_reader = dict(issue.deliveries.values_list("subscriber__email", "status"))
    assert by_reader == {
        "reader0@example.com": "failed", "reader1@example.com": "failed", "reader2@example.com": "sent",
        "reader3@example.com": "failed", "reader4@example.com": "failed", "reader5@example.com": "sent",
        "reader6@example.com": "pending", "reader7@example.com": "pending", "reader8@example.com": "pending",
    }
    assert not Subscriber.objects.exclude(status=Subscriber.Status.ACTIVE).exists()


# --- refusals of single recipients ------------------------------------------------------------------


def test_only_unknown_addresses_bounce(smtp):
    """Among accepted readers, 550 5.1.1 and 550 5.1.2 bounce; a first 550 without an enhanced code, 554 5.7.1 and 552 5.2.2 only fail this issue."""
    readers = subscribers(9)
    replies = {
        1: "550 5.1.1 <reader1@example.com>: Recipient address rejected: User unknown",
        2: "550 5.1.2 Domain does not exist",
        4: "550 Mailbox unavailable",
        5: "554 5.7.1 Recipient refused by policy",
        7: "552 5.2.2 Mailbox full",
    }
    for index, reply in replies.items():
        smtp.refuse[readers[index].email] = reply
        smtp.refuse_times[readers[index].email] = 1
    issue = built_issue()
    summary = sending.send_issue(issue=issue, batch_size=4)

    assert summary.stop_reason == ""
    assert _counts(summary) == {"sent": 4, "retried": 0, "failed": 3, "bounced": 2, "released": 0, "uncertain": 0, "skipped": 0}
    assert summary.errors == [f"reader{index}@example.com: {reply}" for index, reply in replies.items()]
    bounced = Subscriber.objects.filter(status=Subscriber.Status.BOUNCED).order_by("email").values_list("email", flat=True)
    assert list(bounced) == ["reader1@example.com", "reader2@example.com"]
    assert Subscriber.objects.get(email="reader1@example.com").bounce_reason == replies[1]
    deliveries = {d.subscriber.email: d for d in issue.deliveries.select_related("subscriber")}
    for index, reply in replies.items():
        delivery = deliveries[f"reader{index}@example.com"]
        assert (delivery.status, delivery.last_error, delivery.attempts, delivery.message_id) == (Delivery.Status.FAILED, reply, 1, "")
    assert smtp.per_recipient() == Counter({f"reader{i}@example.com": 1 for i in (0, 3, 6, 8)})
    assert Issue.objects.get(pk=issue.pk).status == Issue.Status.SENT

    # The next issue goes to everyone but the two bounced addresses.
    second = sending.send_issue(issue=built_issue(2))
    assert second.sent == 7


def test_a_plain_550_bounces_only_on_the_third_issue_in_a_row(smtp):
    """550 with no enhanced code: issues 1 and 2 fail for that reader, who stays subscribed; the third in a row bounces them."""
    subscribers(2)
    dead = "reader1@example.com"
    smtp.refuse[dead] = "550 No Such User Here"
    smtp.refuse_times[dead] = 3
    for number in (1, 2):
        summary = sending.send_issue(issue=built_issue(number))
        assert (summary.sent, summary.failed, summary.bounced) == (1, 1, 0)
        assert Subscriber.objects.get(email=dead).status == Subscriber.Status.ACTIVE
    third = sending.send_issue(issue=built_issue(3))
    assert (third.sent, third.failed, third.bounced) == (1, 0, 1)
    subscriber = Subscriber.objects.get(email=dead)
    assert (subscriber.status, subscriber.bounce_reason) == (Subscriber.Status.BOUNCED, "550 No Such User Here")


def test_a_plain_550_after_an_accepted_issue_starts_counting_again(smtp):
    """Refused, accepted, refused, refused: not three plain 550s in a row, so the reader stays subscribed."""
    subscribers(2)
    reader = "reader1@example.com"
    smtp.refuse[reader] = "550 Mailbox unavailable"
    for number, refused in ((1, True), (2, False), (3, True), (4, True)):
        smtp.refuse_times[reader] = 1 if refused else 0
        summary = sending.send_issue(issue=built_issue(number))
        assert (summary.sent, summary.failed, summary.bounced) == ((1, 1, 0) if refused else (2, 0, 0))
    assert Subscriber.objects.get(email=reader).status == Subscriber.Status.ACTIVE


# --- server problems that stop the run -------------------------------------------------------------


def test_a_message_refused_at_data_stops_the_run_and_touches_nobody(smtp):
    """554 at DATA: the run stops at the first message, which is released; no subscriber is bounced and no delivery fails."""
    readers = subscribers(5)
    smtp.data_reply = "554 5.6.0 Message content rejected"
    issue = built_issue()
    summary = sending.send_issue(issue=issue)

    reason = "The SMTP server failed while sending to reader0@example.com (message refused at DATA: 554 5.6.0 Message content rejected)."
    assert summary.stop_reason == reason
    assert summary.errors == [reason]
    assert _counts(summary) == {"sent": 0, "retried": 0, "failed": 0, "bounced": 0, "released": 1, "uncertain": 0, "skipped": 0}
    assert smtp.rcpt_seen == Counter({"reader0@example.com": 1})
    _nothing_touched(issue, readers)
    # The next run does not find it uncertain: it was released, not left in flight.
    smtp.data_reply = ""
    again = sending.send_issue(issue=issue)
    assert (again.sent, again.uncertain) == (5, 0)


def test_a_refused_sender_stops_the_run_and_touches_nobody(smtp):
    """553 at MAIL FROM is about the newsroom's address, not a reader's: the run stops, the delivery is released."""
    readers = subscribers(3)
    smtp.mail_reply = "553 5.7.1 Sender address rejected: not owned by user"
    issue = built_issue()
    summary = sending.send_issue(issue=issue)

    assert summary.stop_reason == (
        "The SMTP server failed while sending to reader0@example.com "
        "(sender newsroom@news.example.org refused: 553 5.7.1 Sender address rejected: not owned by user)."
    )
    assert (summary.released, summary.sent) == (1, 0)
    _nothing_touched(issue, readers)


def test_a_refused_login_stops_before_anything_is_claimed(smtp, settings):
    """535 at AUTH: nothing is claimed or sent; with the right password the same send goes out."""
    readers = subscribers(3)
    smtp.password = "right horse battery"
    settings.EMAIL_HOST_USER = "newsroom"
    settings.EMAIL_HOST_PASSWORD = "wrong"
    issue = built_issue()
    summary = sending.send_issue(issue=issue)

    assert summary.stop_reason == (
        "The SMTP server refused the login (535 5.7.8 Authentication credentials invalid): "
        "check EMAIL_HOST_USER and EMAIL_HOST_PASSWORD."
    )
    assert _counts(summary) == {"sent": 0, "retried": 0, "failed": 0, "bounced": 0, "released": 0, "uncertain": 0, "skipped": 0}
    assert set(smtp.logins) == {("newsroom", False)}  # smtplib tries each mechanism offered (PLAIN, LOGIN)
    assert smtp.rcpt_seen == Counter()
    _nothing_touched(issue, readers)

    settings.EMAIL_HOST_PASSWORD = "right horse battery"
    assert sending.send_issue(issue=issue).sent == 3
    assert smtp.logins[-1] == ("newsroom", True)


def test_a_connection_dropped_once_is_reopened_and_nobody_gets_two_messages(smtp):
    """The server closes the connection at one RCPT: the delivery is released, the connection reopened, and each reader gets one message."""
    readers = subscribers(5)
    smtp.drop_times["reader2@example.com"] = 1
    issue = built_issue()
    summary = sending.send_issue(issue=issue)

    assert (summary.sent, summary.released, summary.stop_reason) == (5, 0, "")
    assert summary.errors == ["SMTP connection lost (connection lost: Connection unexpectedly closed); reconnected."]
    assert smtp.per_recipient() == Counter({reader.email: 1 for reader in readers})
    assert smtp.rcpt_seen["reader2@example.com"] == 2
    # The released try is not counted.
    assert Counter(issue.deliveries.values_list("status", "attempts")) == Counter({(Delivery.Status.SENT, 1): 5})


def test_a_421_at_rcpt_reconnects_and_sends(smtp):
    """421 means the server is closing the connection: reconnect and send the same reader, not a retry an hour later."""
    readers = subscribers(2)
    smtp.refuse["reader0@example.com"] = "421 4.7.0 Too many messages on this connection"
    smtp.refuse_times["reader0@example.com"] = 1
    summary = sending.send_issue(issue=built_issue())
    assert (summary.sent, summary.retried, summary.stop_reason) == (2, 0, "")
    assert smtp.per_recipient() == Counter({reader.email: 1 for reader in readers})


def test_a_connection_dropped_twice_in_a_row_stops_the_run(smtp):
    """A server that drops every connection at RCPT: one reconnect, then the run stops; the delivery is pending and nobody is touched."""
    readers = subscribers(4)
    smtp.drop_every_rcpt = True
    issue = built_issue()
    summary = sending.send_issue(issue=issue)

    assert summary.stop_reason.startswith("The SMTP connection failed twice in a row (connection lost: Connection unexpectedly closed")
    assert (summary.sent, summary.released) == (0, 1)
    assert smtp.rcpt_seen == Counter({"reader0@example.com": 2})
    _nothing_touched(issue, readers)


def test_a_refusal_waiting_to_be_judged_is_released_when_the_run_stops(smtp, settings):
    """An unknown address refused just before the connection is lost for good is not bounced: the run could not tell it from a relay fault."""
    readers = subscribers(3)
    smtp.refuse["reader1@example.com"] = "550 5.1.1 User unknown"
    smtp.refuse_times["reader1@example.com"] = 1
    smtp.drop_times["reader2@example.com"] = 2
    issue = built_issue()
    summary = sending.send_issue(issue=issue)

    assert summary.stop_reason.startswith("The SMTP connection failed twice in a row")
    assert (summary.sent, summary.bounced, summary.released) == (1, 0, 2)
    assert dict(issue.deliveries.values_list("subscriber__email", "status")) == {
        "reader0@example.com": "sent", "reader1@example.com": "pending", "reader2@example.com": "pending",
    }
    assert not Subscriber.objects.exclude(status=Subscriber.Status.ACTIVE).exists()
    assert len(readers) == 3


# --- a message that cannot be built ----------------------------------------------------------------


@pytest.fixture
def broken_personal_template(settings):
    """Replace the personal section's text template with one that does not compile (a real TemplateSyntaxError); return a repair function.

    Only subscribers with an account get that section, so their messages fail to
    build while everyone else's still do.
    """
    working = copy.deepcopy(settings.TEMPLATES)
    engine = dict(settings.TEMPLATES[0])
    engine["APP_DIRS"] = False
    engine["OPTIONS"] = {
        **engine["OPTIONS"],
        "loaders": [
            ("django.template.loaders.locmem.Loader", {"highlights/email/_personal.txt": "{% if %}broken{% endif %}"}),
            "django.template.loaders.filesystem.Loader",
            "django.template.loaders.app_directories.Loader",
        ],
    }
    settings.TEMPLATES = [engine]
    return lambda: setattr(settings, "TEMPLATES", working)


def test_a_message_that_cannot_be_built_stops_the_run_and_leaves_nothing_uncertain(smtp, broken_personal_template):
    """A template error for one reader stops the run before that delivery is claimed: no `uncertain`, no attempt counted, the others resume."""
    readers = subscribers(2)
    with_account = Subscriber.objects.create(
        email="member@example.com", status=Subscriber.Status.ACTIVE, user=create_user(username="member", email="member@example.com")
    )
    readers.append(Subscriber.objects.create(email="reader9@example.com", status=Subscriber.Status.ACTIVE))
    issue = built_issue()
    summary = sending.send_issue(issue=issue)

    reason = "Could not build the message for member@example.com: TemplateSyntaxError: Unexpected end of expression in if tag."
    assert summary.stop_reason == reason
    assert _counts(summary) == {"sent": 2, "retried": 0, "failed": 0, "bounced": 0, "released": 0, "uncertain": 0, "skipped": 0}
    stuck = Delivery.objects.get(subscriber=with_account)
    assert (stuck.status, stuck.attempts, stuck.message_id, stuck.last_error) == (Delivery.Status.PENDING, 0, "", reason)
    assert smtp.rcpt_seen == Counter({"reader0@example.com": 1, "reader1@example.com": 1})

    # Fixed: the next run finds nothing uncertain and mails the two left.
    broken_personal_template()
    again = sending.send_issue(issue=issue)
    assert (again.sent, again.uncertain, again.remaining) == (2, 0, 0)
    assert smtp.per_recipient() == Counter({r.email: 1 for r in [*readers, with_account]})


# --- the command and the worker --------------------------------------------------------------------


def test_the_send_command_says_why_it_stopped_and_fails(smtp):
    """`bellwether highlights send` against a relay refusing everyone prints the counts and the reason, and exits with status 1."""
    subscribers(25)
    built_issue()
    smtp.refuse_every_rcpt = "554 5.7.1 Relay access denied"
    out, err = StringIO(), StringIO()
    with pytest.raises(CommandError) as stopped:
        call_command("highlights", "send", "--no-progress", stdout=out, stderr=err)

    reason = RELAY_REASON.format(reply="554 5.7.1 Relay access denied")
    assert str(stopped.value) == (
        f"The send stopped. {reason.rstrip('.')}. 25 deliveries wait; run `bellwether highlights send` again once this is fixed."
    )
    assert stopped.value.returncode == 1
    assert out.getvalue().splitlines() == [
        "Sending issue #1 (Weekly highlights #1) to 25 subscriber(s) in batches of 200",
        "Issue #1: sent 0, retried 0, failed 0, bounced 0, released 20, uncertain 0, skipped 0; 25 left to send; issue is sending",
    ]
    assert err.getvalue().splitlines() == [
        *(f"  reader{i}@example.com: 554 5.7.1 Relay access denied" for i in range(10)),
        "  ... and 10 more",
    ]
    assert not Subscriber.objects.exclude(status=Subscriber.Status.ACTIVE).exists()


def test_the_weekly_task_tries_a_stopped_send_again_later_and_later(smtp, settings):
    """A stopped run requeues the task in 1 minute, then 2, 4 ... while nothing goes out; a run that sends starts again at 1."""
    from django_tasks_db.models import DBTaskResult

    from bellwether.highlights.tasks import send_weekly_issue

    subscribers(2)
    issue = built_issue()
    Issue.objects.filter(pk=issue.pk).update(schedule_key="2026-W47")
    settings.EMAIL_HOST_USER = "newsroom"
    settings.EMAIL_HOST_PASSWORD = "wrong"
    smtp.password = "right"

    def run(stopped_runs: int) -> tuple[dict, DBTaskResult, datetime]:
        DBTaskResult.objects.all().delete()
        started = timezone.now()
        result = send_weekly_issue.call("2026-W47", stopped_runs=stopped_runs)
        queued = DBTaskResult.objects.get()
        return result, queued, started

    result, queued, started = run(0)
    assert result["stopped"].startswith("The SMTP server refused the login (535 5.7.8")
    assert (result["sent"], result["remaining"]) == (0, 2)
    assert queued.args_kwargs == {"args": ["2026-W47"], "kwargs": {"stopped_runs": 1}}
    assert started + timedelta(minutes=1) <= queued.run_after <= timezone.now() + timedelta(minutes=1)

    result, queued, started = run(3)
    assert queued.args_kwargs == {"args": ["2026-W47"], "kwargs": {"stopped_runs": 4}}
    assert started + timedelta(minutes=8) <= queued.run_after <= timezone.now() + timedelta(minutes=8)

    # The login works again, but the relay refuses everyone after the first message: progress, so 1 minute again.
    settings.EMAIL_HOST_PASSWORD = "right"
    settings.HIGHLIGHTS_MAX_CONSECUTIVE_REFUSALS = 1
    smtp.refuse["reader1@example.com"] = "554 5.7.1 Relay access denied"
    smtp.refuse_times["reader1@example.com"] = 1
    result, queued, started = run(5)
    assert (result["sent"], result["released"], result["remaining"]) == (1, 1, 1)
    assert queued.args_kwargs == {"args": ["2026-W47"], "kwargs": {"stopped_runs": 1}}
    assert started + timedelta(minutes=1) <= queued.run_after <= timezone.now() + timedelta(minutes=1)
    assert delivery_statuses(issue) == Counter({"sent": 1, "pending": 1})
