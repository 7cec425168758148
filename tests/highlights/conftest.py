"""A real SMTP server for the sending tests: aiosmtpd on 127.0.0.1, told how to answer each step."""

from __future__ import annotations

import email
import socket
from collections import Counter
from datetime import timedelta
from email.policy import default as default_policy

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword
from django.utils import timezone

from bellwether.highlights.models import Issue, Subscriber

SITE = "https://news.example.org"
FROM = "Bellwether <newsroom@news.example.org>"


class Recorder:
    """An aiosmtpd handler that keeps every accepted message and answers as a test tells it.

    It can refuse the sender at MAIL FROM, chosen recipients (or every one)
    at RCPT, the message at DATA, close the connection at RCPT, and refuse
    a login.
    """

    def __init__(self):
        self.messages: list[email.message.EmailMessage] = []
        self.refuse: dict[str, str] = {}  # address -> SMTP reply for RCPT TO
        self.refuse_times: Counter = Counter()  # address -> how many more times to refuse
        self.refuse_every_rcpt = ""  # a reply for every RCPT TO, e.g. "554 5.7.1 Relay access denied"
        self.mail_reply = ""  # a reply for MAIL FROM instead of accepting the sender
        self.data_reply = ""  # a reply for DATA instead of accepting the message
        self.drop_times: Counter = Counter()  # address -> how many more times to close the connection at its RCPT TO
        self.drop_every_rcpt = False
        self.password = ""  # the only password a login may use
        self.rcpt_seen: Counter = Counter()  # RCPT TO commands received, per address
        self.logins: list[tuple[str, bool]] = []  # (user, accepted)

    async def handle_MAIL(self, server, session, envelope, address, mail_options):  # noqa: N802 - aiosmtpd's hook name
        if self.mail_reply:
            return self.mail_reply
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 OK"

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):  # noqa: N802 - aiosmtpd's hook name
        self.rcpt_seen[address] += 1
        if self.drop_every_rcpt or self.drop_times[address] > 0:
            self.drop_times[address] -= 1
            server.transport.close()
            return "250 OK"  # never reaches the client: the connection is closed
        if self.refuse_every_rcpt:
            return self.refuse_every_rcpt
        if address in self.refuse and self.refuse_times[address] > 0:
            self.refuse_times[address] -= 1
            return self.refuse[address]
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):  # noqa: N802 - aiosmtpd's hook name
        if self.data_reply:
            return self.data_reply
        self.messages.append(email.message_from_bytes(envelope.content, policy=default_policy))
        return "250 Message accepted for delivery"

    def authenticate(self, server, session, envelope, mechanism, auth_data):
        accepted = isinstance(auth_data, LoginPassword) and auth_data.password.decode() == self.password
        self.logins.append((auth_data.login.decode() if isinstance(auth_data, LoginPassword) else "", accepted))
        return AuthResult(success=accepted, handled=False)

    def per_recipient(self) -> Counter:
        return Counter(str(message["To"]) for message in self.messages)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def smtp(settings):
    """Start an aiosmtpd server and point Django's SMTP backend at it; yield its Recorder.

    The server offers AUTH without TLS (a login is only tried when a test sets
    EMAIL_HOST_USER) and accepts mail without one.
    """
    recorder = Recorder()
    controller = Controller(
        recorder, hostname="127.0.0.1", port=free_port(), authenticator=recorder.authenticate, auth_require_tls=False
    )
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


def subscribers(count: int, status=Subscriber.Status.ACTIVE) -> list[Subscriber]:
    """Create ``count`` subscribers reader0@example.com, reader1@example.com, ..."""
    return [Subscriber.objects.create(email=f"reader{i}@example.com", status=status) for i in range(count)]


def built_issue(number: int = 1) -> Issue:
    """Create a built (empty) issue ready to send."""
    now = timezone.now()
    return Issue.objects.create(
        number=number, week_start=now - timedelta(days=7), week_end=now, status=Issue.Status.BUILT, subject=f"Weekly highlights #{number}"
    )


def delivery_statuses(issue: Issue) -> Counter:
    return Counter(issue.deliveries.values_list("status", flat=True))
