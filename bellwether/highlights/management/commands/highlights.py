from __future__ import annotations

from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from bellwether.commands import DetailedHelp
from bellwether.highlights.models import Issue

DETAILS = """\
The weekly highlights email by hand. The background worker (`bellwether worker`)
does the same on the weekly schedule (HIGHLIGHTS_WEEKDAY, HIGHLIGHTS_TIME,
HIGHLIGHTS_TIME_ZONE).

  build     freeze this week's headlines, expert insights and market moves in a
            new issue (or rebuild issue --number N while it has not been sent);
            --intro sets the editor's note, --pin/--drop take item keys such as
            article:12 or market:7 (pinned items go first, dropped ones are left out)
  preview   print the newest issue's HTML (or --text), or write it to --to FILE.html,
            as a subscriber with an account sees it
  send      mail the newest built issue (or --number N) to every active subscriber
            through the SMTP server in EMAIL_HOST/EMAIL_PORT, with a progress bar and
            a summary. Safe to run again: only messages not yet sent go out, a message
            whose outcome is unknown after a crash is marked uncertain (never resent),
            temporary failures wait for their retry time (run send again later).
            Only an unknown address (5.1.x at RCPT) bounces a subscriber. A refused
            login, sender or message, a connection lost twice, or
            HIGHLIGHTS_MAX_CONSECUTIVE_REFUSALS recipients refused in a row stop
            the send without touching anyone: it says why and exits with status 1.

Examples:
  bellwether highlights build --intro "A busy week for the polls." --pin article:12 --drop market:7
  bellwether highlights preview --to /tmp/issue.html
  bellwether highlights send --batch-size 500
"""


class Command(DetailedHelp, BaseCommand):
    help = "Build, preview and send the weekly highlights email."

    details = DETAILS

    def add_arguments(self, parser):
        actions = parser.add_subparsers(dest="action", required=True, metavar="{build,preview,send}")

        build = actions.add_parser(
            "build", help="freeze this week's sections in an issue",
            description="Freeze this week's headlines, expert insights, market movers, markets closing soon and "
            "resolved markets (odds as of now) in a new issue, or rebuild --number N until it is sent.",
        )
        build.add_argument("--number", type=int, help="rebuild this issue instead of creating the next one (not once sent)")
        build.add_argument("--intro", help="the editor's opening note")
        build.add_argument("--pin", nargs="+", action="extend", metavar="KEY", help="item keys to put first, e.g. article:12 market:7")
        build.add_argument("--drop", nargs="+", action="extend", metavar="KEY", help="item keys to leave out")

        preview = actions.add_parser(
            "preview", help="show an issue's email (HTML by default)",
            description="Print an issue's email as a subscriber with an account sees it (sample positions), "
            "HTML by default, or write it to a file to open in a browser.",
        )
        preview.add_argument("--number", type=int, help="the issue to show (default: the newest)")
        preview.add_argument("--to", metavar="FILE.html", help="write to this file instead of printing")
        preview.add_argument("--text", action="store_true", help="the plain-text part instead of the HTML")

        send = actions.add_parser(
            "send", help="mail an issue to every active subscriber",
            description="Mail an issue to every active subscriber through the configured SMTP server, in batches "
            "over one connection each, with a progress bar and a summary (sent, retried, failed, bounced, released, "
            "uncertain, skipped). Running it again only sends what is still due; nobody gets a message twice. "
            "A server problem stops the send without touching any subscriber and exits with status 1.",
        )
        send.add_argument("--number", type=int, help="the issue to send (default: the newest built or unfinished one)")
        send.add_argument(
            "--batch-size", type=int, default=settings.HIGHLIGHTS_BATCH_SIZE,
            help="messages per SMTP connection (default: HIGHLIGHTS_BATCH_SIZE, %(default)s)",
        )
        send.add_argument("--no-progress", action="store_true", help="no progress bar (the summary still prints)")

    def handle(self, *args, action, **options):
        return getattr(self, f"handle_{action}")(**options)

    def _issue(self, number: int | None, *, statuses=None) -> Issue:
        issues = Issue.objects.all()
        if number is not None:
            issue = issues.filter(number=number).first()
            if issue is None:
                raise CommandError(f"No issue #{number}.")
            return issue
        if statuses:
            issues = issues.filter(status__in=statuses)
        issue = issues.order_by("-number").first()
        if issue is None:
            raise CommandError("No issue yet: run `bellwether highlights build` first.")
        return issue

    def handle_build(self, *, number, intro, pin, drop, **options):
        from bellwether.highlights import building

        try:
            issue = building.build_issue(number=number, intro=intro, pinned=pin, dropped=drop)
        except Exception as error:  # the building module's own refusals (e.g. already sent)
            if type(error).__module__.startswith("bellwether.highlights"):
                raise CommandError(str(error)) from error
            raise
        content = issue.content or {}
        counts = ", ".join(f"{len(content.get(name, []))} {name.replace('_', ' ')}" for name in ("headlines", "insights", "movers", "closing_soon", "resolved"))
        self.stdout.write(f"Built issue #{issue.number}: {issue.subject}\n  {counts}\n  web page: {settings.SITE_URL}{issue.get_absolute_url()}")

    def handle_preview(self, *, number, to, text, **options):
        from bellwether.highlights import rendering

        issue = self._issue(number)
        if issue.status == Issue.Status.DRAFT:
            raise CommandError(f"Issue #{issue.number} is a draft: build it first.")
        subject, text_part, html_part = rendering.render_preview(issue)
        body = text_part if text else html_part
        if to:
            Path(to).write_text(body, encoding="utf-8")
            self.stdout.write(f"Issue #{issue.number} ({subject}) written to {to}")
        else:
            self.stdout.write(body, ending="" if body.endswith("\n") else "\n")

    def handle_send(self, *, number, batch_size, no_progress, verbosity=1, **options):
        from bellwether.highlights import sending

        if batch_size < 1:
            raise CommandError("--batch-size must be at least 1.")
        issue = self._issue(number, statuses=None if number else [Issue.Status.BUILT, Issue.Status.SENDING])
        try:
            issue = sending.start_sending(issue)
        except sending.SendingError as error:
            raise CommandError(str(error)) from error
        total = sending.due_count(issue=issue)
        self.stdout.write(f"Sending issue #{issue.number} ({issue.subject}) to {total} subscriber(s) in batches of {batch_size}")
        bar = None
        if not no_progress and verbosity > 0:
            from tqdm import tqdm

            bar = tqdm(total=total, unit="email", file=self.stderr._out, dynamic_ncols=True)
        try:
            summary = sending.send_issue(issue=issue, batch_size=batch_size, progress=(lambda outcome: bar.update(1)) if bar else None)
        finally:
            if bar is not None:
                bar.close()
        issue.refresh_from_db()
        self.stdout.write(f"Issue #{issue.number}: {summary.as_line()}; {summary.remaining} left to send; issue is {issue.status}")
        problems = summary.errors[:-1] if summary.stop_reason else summary.errors
        for line in problems[:10]:
            self.stderr.write(f"  {line}")
        if len(problems) > 10:
            self.stderr.write(f"  ... and {len(problems) - 10} more")
        if summary.uncertain:
            self.stderr.write(
                f"{summary.uncertain} message(s) may or may not have gone out when an earlier send stopped: "
                "they are marked uncertain and will not be resent (see the deliveries in the admin)."
            )
        if summary.stop_reason:
            raise CommandError(
                f"The send stopped. {summary.stop_reason.rstrip('.')}. {summary.remaining} deliveries wait; "
                "run `bellwether highlights send` again once this is fixed."
            )
        if summary.remaining:
            self.stdout.write("Run `bellwether highlights send` again later for the retries (the worker does it by itself).")
