"""Background work for the weekly highlights: the send task and the weekly schedule.

The task framework (django-tasks with the database backend) runs tasks but
does not schedule them, so ``bellwether worker`` calls :func:`schedule_due_issue`
every minute. The weekly issue is claimed by creating its Issue row with a
unique ``schedule_key`` (the ISO week, e.g. ``2026-W47``): two workers, or one
called twice, cannot both create it, so the week's task is enqueued once.
"""

from __future__ import annotations

import logging
from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Max
from django.utils import timezone
from django_tasks import task

from .models import Delivery, Issue

logger = logging.getLogger(__name__)


def schedule_key(moment: datetime) -> str:
    """Return the ISO week of ``moment`` in HIGHLIGHTS_TIME_ZONE, e.g. "2026-W47"."""
    local = moment.astimezone(ZoneInfo(settings.HIGHLIGHTS_TIME_ZONE))
    year, week, _ = local.isocalendar()
    return f"{year}-W{week:02d}"


def send_time(moment: datetime) -> datetime:
    """Return this week's send time (HIGHLIGHTS_WEEKDAY at HIGHLIGHTS_TIME in HIGHLIGHTS_TIME_ZONE) for the week of ``moment``."""
    zone = ZoneInfo(settings.HIGHLIGHTS_TIME_ZONE)
    local = moment.astimezone(zone)
    hours, minutes = (int(part) for part in settings.HIGHLIGHTS_TIME.split(":"))
    day = local.date() - timedelta(days=local.weekday()) + timedelta(days=settings.HIGHLIGHTS_WEEKDAY)
    return datetime.combine(day, time(hours, minutes), tzinfo=zone)


#: The task backend stored in the database and run by ``bellwether worker``
#: (the default backend stays immediate for Wagtail's own small jobs).
BACKEND = "worker"


#: First delay before a stopped send is tried again; it doubles while runs keep
#: stopping without sending anything, up to STOPPED_RETRY_MAX_S.
STOPPED_RETRY_BASE_S = 60
STOPPED_RETRY_MAX_S = 3600


def stopped_retry_delay(stopped_runs: int) -> timedelta:
    """Return the wait before a stopped send is tried again, when the ``stopped_runs`` runs before it stopped without sending too.

    >>> [int(stopped_retry_delay(n).total_seconds() // 60) for n in (0, 1, 2, 6, 7, 30)]
    [1, 2, 4, 60, 60, 60]
    """
    return timedelta(seconds=min(STOPPED_RETRY_BASE_S * 2 ** min(stopped_runs, 12), STOPPED_RETRY_MAX_S))


@task(backend=BACKEND)
def send_weekly_issue(schedule_key: str, stopped_runs: int = 0) -> dict:
    """Build the issue reserved for ``schedule_key`` if it is not built yet, then send it.

    Enqueues itself again for the earliest retry when temporary failures are
    left, so the worker finishes the issue without anyone watching. A run that
    stopped on a server problem (a refused login, a relay refusing everyone,
    a lost connection) is tried again after a minute, then after twice as long
    each time another run stops without sending anything (``stopped_runs``),
    up to an hour.
    """
    from . import building, sending

    issue = Issue.objects.get(schedule_key=schedule_key)
    if issue.status == Issue.Status.DRAFT:
        issue = building.build_issue(issue=issue)
    summary = sending.send_issue(issue=issue)
    if summary.stop_reason:
        # Progress restarts the series: the problem may be over.
        in_a_row = 0 if summary.sent else stopped_runs
        run_after = timezone.now() + stopped_retry_delay(in_a_row)
        send_weekly_issue.using(run_after=run_after).enqueue(schedule_key, stopped_runs=in_a_row + 1)
        logger.warning(
            "Weekly highlights #%s (%s) stopped (%s); trying again at %s.", issue.number, schedule_key, summary.stop_reason, run_after
        )
    elif summary.remaining:
        earliest = (
            Delivery.objects.filter(issue=issue, status=Delivery.Status.RETRY, next_attempt_at__isnull=False)
            .order_by("next_attempt_at").values_list("next_attempt_at", flat=True).first()
        )
        # Without a retry time (another worker holds the rest) look again in a minute.
        run_after = earliest or timezone.now() + timedelta(minutes=1)
        send_weekly_issue.using(run_after=run_after).enqueue(schedule_key)
    logger.info("Weekly highlights #%s (%s): %s", issue.number, schedule_key, summary.as_line())
    return {"issue": issue.number, "sent": summary.sent, "retried": summary.retried, "failed": summary.failed,
            "bounced": summary.bounced, "released": summary.released, "uncertain": summary.uncertain,
            "skipped": summary.skipped, "remaining": summary.remaining, "stopped": summary.stop_reason}


def schedule_due_issue(*, now: datetime | None = None) -> Issue | None:
    """Reserve this week's issue and enqueue its send once the send time has passed; return it, or None.

    Does nothing before this week's send time or when the week's issue
    already exists (built by this scheduler, by another worker, or earlier).
    """
    now = now or timezone.now()
    if now < send_time(now):
        return None
    key = schedule_key(now)
    if Issue.objects.filter(schedule_key=key).exists():
        return None
    try:
        with transaction.atomic():
            number = (Issue.objects.aggregate(top=Max("number"))["top"] or 0) + 1
            issue = Issue.objects.create(
                number=number, schedule_key=key, status=Issue.Status.DRAFT, week_start=now - timedelta(days=7), week_end=now,
            )
            # Enqueued in the same transaction as the reservation (the database
            # backend stores tasks in this database): both or neither.
            send_weekly_issue.enqueue(key)
    except IntegrityError:
        # Another worker reserved this week (or took the number) first.
        return None
    logger.info("Scheduled weekly highlights #%s for %s", issue.number, key)
    return issue
