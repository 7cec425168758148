"""The weekly highlights in Chromium: subscribe from a story, confirm from the email, read the issue, leave in one click."""

from __future__ import annotations

import datetime as dt
import email
import email.policy
import re
import socket

import pytest
from aiosmtpd.controller import Controller
from django.utils import timezone

from bellwether.highlights.building import build_issue
from bellwether.highlights.models import Subscriber
from bellwether.highlights.sending import prepare_deliveries, send_issue
from tests.news.factories import make_article

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]
READER = "reader@example.org"


class Inbox:
    """An aiosmtpd handler keeping every message it accepts."""

    def __init__(self) -> None:
        self.messages: list[email.message.EmailMessage] = []

    async def handle_DATA(self, server, session, envelope):
        self.messages.append(email.message_from_bytes(envelope.content, policy=email.policy.default))
        return "250 OK"

    def wait_for(self, count: int, page) -> email.message.EmailMessage:
        for _ in range(100):
            if len(self.messages) >= count:
                return self.messages[count - 1]
            page.wait_for_timeout(100)
        raise AssertionError(f"expected {count} message(s), got {len(self.messages)}")


@pytest.fixture
def inbox(settings):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    handler = Inbox()
    controller = Controller(handler, hostname="127.0.0.1", port=port)
    controller.start()
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT = "127.0.0.1", port
    yield handler
    controller.stop()


def link_to(message, path_fragment: str) -> str:
    """Return the first link in the message's plain-text part that contains ``path_fragment``."""
    text = message.get_body(preferencelist=("plain",)).get_content()
    return next(url for url in re.findall(r"https?://\S+", text) if path_fragment in url)


def test_subscribe_from_a_story_confirm_read_the_issue_and_unsubscribe(page, live_server, home, inbox, settings):
    """The whole loop a reader sees, with a real SMTP server in between."""
    settings.SITE_URL = live_server.url
    article = make_article(headline="Harbour talks resume", published_at=timezone.now() - dt.timedelta(hours=5))

    page.goto(live_server.url + article.url)
    box = page.locator("#highlights-signup-box")
    box.locator("input[name=email]").fill(READER)
    box.get_by_role("button", name="Subscribe").click()
    page.locator("#highlights-signup-notice").wait_for()
    assert Subscriber.objects.get(email=READER).status == Subscriber.Status.PENDING

    confirmation = inbox.wait_for(1, page)
    assert confirmation["To"] == READER
    page.goto(link_to(confirmation, "/highlights/confirm/"))
    page.locator("#confirm-button").click()
    page.locator("#confirm-done").wait_for()
    assert Subscriber.objects.get(email=READER).status == Subscriber.Status.ACTIVE

    issue = build_issue()
    prepare_deliveries(issue=issue)
    assert send_issue(issue=issue).sent == 1
    weekly = inbox.wait_for(2, page)
    assert weekly["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    page.goto(link_to(weekly, f"/highlights/{issue.number}/"))
    assert "Harbour talks resume" in page.locator("#issue-headlines").inner_text()

    page.goto(link_to(weekly, "/highlights/unsubscribe/"))
    page.locator("#unsubscribe-button").click()
    page.locator("#unsubscribe-done").wait_for()
    assert Subscriber.objects.get(email=READER).status == Subscriber.Status.UNSUBSCRIBED
