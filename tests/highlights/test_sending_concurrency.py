"""Two senders on one issue at once, each thread with its own database connection: nobody is claimed or mailed twice.

These run against the real database (``transaction=True``): on PostgreSQL
the claim meets a concurrent claim of the same row under READ COMMITTED,
which is where a status test outside the row (in a subquery) lets both win.
"""

from __future__ import annotations

import threading
import time
from collections import Counter

import pytest
from django.conf import settings
from django.core.management.sql import emit_post_migrate_signal
from django.db import DEFAULT_DB_ALIAS, connection, transaction

from bellwether.highlights import sending
from bellwether.highlights.models import Delivery, Issue, Subscriber
from tests.highlights.conftest import built_issue

# Only the apps the claim test writes to are flushed after it (a full flush
# of every Wagtail table on PostgreSQL takes seconds); sending renders pages
# of other apps, so that test keeps them all.
AVAILABLE_APPS = [
    "bellwether.highlights",
    "bellwether.accounts",
    "django.contrib.auth",
    "django.contrib.contenttypes",
]

IS_POSTGRES = settings.DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql"


@pytest.fixture(scope="module", autouse=True)
def _recreate_content_types_and_permissions(django_db_setup, django_db_blocker):
    """After the module, recreate what a flush limited to AVAILABLE_APPS left out, as a full flush would."""
    yield
    with django_db_blocker.unblock():
        emit_post_migrate_signal(verbosity=0, interactive=False, db=DEFAULT_DB_ALIAS)
        connection.close()


def _wait_until_blocked(pid: int, *, timeout_s: float = 20.0) -> None:
    """Return once PostgreSQL backend ``pid`` waits for a lock another backend holds (a bounded poll)."""
    deadline = time.monotonic() + timeout_s
    with connection.cursor() as cursor:
        while time.monotonic() < deadline:
            cursor.execute("SELECT cardinality(pg_blocking_pids(%s))", [pid])
            if cursor.fetchone()[0]:
                return
    raise AssertionError(f"backend {pid} never waited for the row lock")


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True, available_apps=AVAILABLE_APPS)
def test_a_claim_waiting_for_a_concurrent_claim_of_the_same_row_loses_on_postgresql():
    """The second of two claims of one delivery, blocked on the first one's row lock, finds it taken once the first commits.

    The first sender claims inside an open transaction and commits only once
    the second sender's UPDATE is seen waiting for the row (pg_blocking_pids),
    so the second statement started while the row was still pending: the
    interleaving that let both win when the status test sat in a subquery.
    """
    Subscriber.objects.create(email="reader@example.com", status=Subscriber.Status.ACTIVE)
    issue = built_issue()
    sending.prepare_deliveries(issue=issue)
    delivery_id = Delivery.objects.get().pk
    first_holds_the_row = threading.Event()
    second_waits = threading.Event()
    second_pid: list[int] = []
    second_connected = threading.Event()
    outcomes: dict[str, str] = {}
    failures: list[BaseException] = []

    def first() -> None:
        try:
            with transaction.atomic():
                delivery = Delivery.objects.select_related("subscriber").get(pk=delivery_id)
                outcomes["first"] = sending._claim(delivery, "<first@news.example.org>")
                first_holds_the_row.set()
                assert second_waits.wait(timeout=30), "the second claim never started waiting"
        except BaseException as error:  # noqa: BLE001 - reported by the test
            failures.append(error)
            first_holds_the_row.set()
        finally:
            connection.close()

    def second() -> None:
        try:
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_backend_pid()")
                second_pid.append(cursor.fetchone()[0])
            second_connected.set()
            delivery = Delivery.objects.select_related("subscriber").get(pk=delivery_id)
            assert first_holds_the_row.wait(timeout=30)
            outcomes["second"] = sending._claim(delivery, "<second@news.example.org>")
        except BaseException as error:  # noqa: BLE001 - reported by the test
            failures.append(error)
            second_connected.set()
        finally:
            connection.close()

    connection.close()
    threads = [threading.Thread(target=first, daemon=True), threading.Thread(target=second, daemon=True)]
    threads[1].start()
    threads[0].start()
    try:
        assert first_holds_the_row.wait(timeout=30) and second_connected.wait(timeout=30)
        assert failures == []
        _wait_until_blocked(second_pid[0])
    finally:
        second_waits.set()
        for thread in threads:
            thread.join(30)
    assert not any(thread.is_alive() for thread in threads), "a sender thread hung"
    assert failures == []
    assert outcomes == {"first": "claimed", "second": "taken"}
    delivery = Delivery.objects.get()
    assert (delivery.status, delivery.message_id, delivery.attempts) == (Delivery.Status.SENDING, "<first@news.example.org>", 1)


@pytest.mark.django_db(transaction=True)
def test_two_senders_started_together_mail_each_subscriber_once(smtp):
    """Two threads sending the same issue of 60 subscribers at once: 60 messages, one each, every delivery sent with one attempt."""
    readers = [Subscriber.objects.create(email=f"reader{i}@example.com", status=Subscriber.Status.ACTIVE) for i in range(60)]
    issue = built_issue()
    sending.start_sending(issue)
    barrier = threading.Barrier(2)
    summaries: list[sending.SendSummary] = []
    failures: list[BaseException] = []

    def sender() -> None:
        try:
            barrier.wait(timeout=30)
            summaries.append(sending.send_issue(issue=Issue.objects.get(pk=issue.pk), batch_size=7))
        except BaseException as error:  # noqa: BLE001 - reported by the test
            failures.append(error)
        finally:
            connection.close()

    connection.close()
    threads = [threading.Thread(target=sender, daemon=True) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert not any(thread.is_alive() for thread in threads), "a sender thread hung"
    assert failures == []
    assert sum(summary.sent for summary in summaries) == 60
    assert smtp.per_recipient() == Counter({reader.email: 1 for reader in readers})
    assert Counter(Delivery.objects.values_list("status", "attempts")) == Counter({(Delivery.Status.SENT, 1): 60})
    assert Issue.objects.get(pk=issue.pk).status == Issue.Status.SENT
