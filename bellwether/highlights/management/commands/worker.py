from __future__ import annotations

import logging
import threading

from django.db import close_old_connections, connection
from django_tasks_db.management.commands.db_worker import Command as DbWorkerCommand

from bellwether.commands import DetailedHelp
from bellwether.highlights.tasks import BACKEND

logger = logging.getLogger("bellwether.worker")

DETAILS = """\
The worker runs the background tasks that pages and commands queue in the
database (django-tasks with its database backend, the "worker" entry of the
TASKS setting: the task rows live in the same database as everything else), one at a time, until stopped with Ctrl-C
or SIGTERM (the task in progress finishes first; a second Ctrl-C aborts it).

It also keeps the weekly schedule, which the task framework has no notion of:
every --schedule-every seconds (default 60) it checks whether this week's
highlights are due (HIGHLIGHTS_WEEKDAY at HIGHLIGHTS_TIME in
HIGHLIGHTS_TIME_ZONE, defaults Friday 07:00 UTC) and, if this week's issue does
not exist yet, reserves it (its ISO week, e.g. 2026-W47, is unique, so several
workers never schedule the same week twice) and queues the task that builds
it and sends it to every active subscriber. A worker started after the send
time still sends that week's issue; a send interrupted by a restart resumes
where it stopped, and temporary SMTP failures are retried by the same task.

At the same checks it deletes trades' Idempotency-Keys older than
IDEMPOTENCY_KEY_TTL_S (default 7 days), so that table does not grow forever.

Run one or more workers beside `bellwether serve`; --no-schedule leaves the
schedule and the sweep to another worker.

Examples:
  bellwether worker                         run queued tasks and the weekly send
  bellwether worker --batch                 run what is queued now, then exit
  bellwether worker --no-schedule --queue-name '*'
"""


class Command(DetailedHelp, DbWorkerCommand):
    help = "Run background tasks and the weekly highlights schedule."

    details = DETAILS

    def add_arguments(self, parser):
        super().add_arguments(parser)
        # The database-backed backend in settings.TASKS ("default" is Wagtail's immediate one).
        parser.set_defaults(backend_name=BACKEND)
        parser.add_argument(
            "--schedule-every", type=float, default=60.0, metavar="SECONDS",
            help="how often to check whether the weekly highlights are due (default: %(default)s)",
        )
        parser.add_argument("--no-schedule", action="store_true", help="do not schedule the weekly highlights (another worker does)")

    def handle(self, *args, schedule_every: float, no_schedule: bool, **options):
        if not no_schedule:
            check_schedule()
            thread = threading.Thread(target=_schedule_loop, args=(max(schedule_every, 1.0),), name="highlights-schedule", daemon=True)
            thread.start()
        return super().handle(*args, **options)


def check_schedule() -> None:
    """Enqueue this week's highlights if due and sweep expired idempotency keys; log and survive any error (the next check tries again)."""
    from bellwether.highlights.tasks import schedule_due_issue

    try:
        close_old_connections()
        issue = schedule_due_issue()
        if issue is not None:
            logger.warning("Queued weekly highlights #%s (%s)", issue.number, issue.schedule_key)
    except Exception:
        logger.exception("Weekly highlights schedule check failed")
    try:
        sweep_expired()
    except Exception:
        logger.exception("Sweeping expired idempotency keys failed")
    finally:
        connection.close()


def sweep_expired() -> int:
    """Delete expired trade idempotency keys; return how many went."""
    from bellwether.markets.services import sweep_idempotency_keys

    deleted = sweep_idempotency_keys()
    if deleted:
        logger.info("Deleted %s expired idempotency key(s)", deleted)
    return deleted


def _schedule_loop(every: float) -> None:
    stop = threading.Event()
    while not stop.wait(every):
        check_schedule()
