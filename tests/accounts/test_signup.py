"""Sign-up through allauth: the starting balance, the welcome, email confirmation (locmem and real SMTP)."""

from __future__ import annotations

import email
import re
import socket

import pytest
from aiosmtpd.controller import Controller
from allauth.account.models import EmailAddress
from django.contrib.auth import get_user_model
from django.core import mail

from bellwether.ledger.models import Account, Transfer

from .helpers import PASSWORD, link_in, sign_up, signup_next_value

pytestmark = pytest.mark.django_db

WELCOME = "Welcome to Bellwether, reader! You start with 1,000 credits to forecast with."
CONFIRM_PATH = re.compile(r"^/accounts/confirm-email/[^/\s]+/$")


def test_signup_form_sends_new_readers_to_their_account_page(client):
    """Post a hidden next field pointing at the account page, unless a next was asked for."""
    assert signup_next_value(client) == "/accounts/"
    page = client.get("/accounts/signup/?next=/markets/").content.decode()
    assert '<input type="hidden" name="next" value="/markets/">' in page


def test_signup_opens_the_ledger_account_with_the_starting_balance_in_the_same_request(client):
    """Open the new reader's cash account, funded by the welcome grant, before the sign-up response returns."""
    response = sign_up(client)
    assert response.status_code == 302
    assert response["Location"] == "/accounts/"
    user = get_user_model().objects.get(username="reader")
    account = Account.objects.get(user=user)
    assert account.balance_micro == 1_000_000_000
    grant = Transfer.objects.get(credit=account)
    assert (grant.kind, grant.amount_micro, grant.reference) == ("grant", 1_000_000_000, f"user:{user.pk}")


def test_after_signup_the_reader_is_welcomed_with_their_starting_credits(client):
    """Land on the account page, which says how many credits the reader starts with and shows them in the masthead chip."""
    response = sign_up(client, follow=True)
    assert response.redirect_chain == [("/accounts/", 302)]
    page = response.content.decode()
    assert f'<li class="flash__item flash__item--success">{WELCOME}</li>' in page
    assert re.search(r'id="nav-balance"[^>]*>1,000\.00 cr</a>', page)
    assert '<span id="account-balance-amount">1,000.00</span> credits' in page
    # The welcome is shown once, not again on the next page.
    assert WELCOME not in client.get("/accounts/").content.decode()


def test_signup_is_refused_for_a_taken_username_and_opens_no_account(client):
    """Refuse a second sign-up with a taken username, creating no user and no second account."""
    sign_up(client)
    client.logout()
    response = sign_up(client, email="other@example.com")
    assert response.status_code == 200
    assert "A user with that username already exists." in response.content.decode()
    assert get_user_model().objects.count() == 1
    assert Account.objects.filter(kind="user").count() == 1


def test_signup_sends_a_confirmation_email_whose_link_verifies_the_address(client):
    """Send one confirmation email on sign-up; its link confirms the address."""
    sign_up(client)
    assert len(mail.outbox) == 1
    message = mail.outbox[0]
    assert message.to == ["reader@example.com"]
    assert message.subject == "[Bellwether] Please confirm your email address"
    path = link_in(message.body)
    assert CONFIRM_PATH.match(path), path
    address = EmailAddress.objects.get(email="reader@example.com")
    assert (address.verified, address.primary) == (False, True)

    page = client.get(path)
    assert page.status_code == 200
    assert "Yes, confirm it" in page.content.decode()
    confirmed = client.post(path)
    assert confirmed.status_code == 302
    address.refresh_from_db()
    assert address.verified is True
    account_page = client.get("/accounts/").content.decode()
    assert '<span class="badge badge--ok">Verified</span>' in account_page


def test_a_forged_confirmation_link_verifies_nothing(client):
    """Show an expired-link page for a made-up key and leave the address unverified."""
    sign_up(client)
    page = client.get("/accounts/confirm-email/not-a-real-key/")
    assert page.status_code == 200
    assert "This confirmation link has expired or is not valid." in page.content.decode()
    client.post("/accounts/confirm-email/not-a-real-key/")
    assert EmailAddress.objects.get(email="reader@example.com").verified is False


class _Inbox:
    """An aiosmtpd handler that keeps every message it is given."""

    def __init__(self) -> None:
        self.envelopes = []

    async def handle_DATA(self, server, session, envelope):
        self.envelopes.append(envelope)
        return "250 Message accepted for delivery"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def smtp_inbox(settings):
    """Run a real SMTP server on 127.0.0.1 and point Django's SMTP backend at it."""
    inbox = _Inbox()
    port = _free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST = "127.0.0.1"
    settings.EMAIL_PORT = port
    settings.EMAIL_HOST_USER = ""
    settings.EMAIL_HOST_PASSWORD = ""
    settings.EMAIL_USE_TLS = False
    settings.EMAIL_USE_SSL = False
    try:
        yield inbox
    finally:
        controller.stop()


def test_the_confirmation_email_goes_out_through_a_real_smtp_server(client, smtp_inbox):
    """Deliver the confirmation email over SMTP to the reader's address, with a link that verifies it."""
    sign_up(client, username="smtpreader", email="smtp.reader@example.com")
    assert len(smtp_inbox.envelopes) == 1
    envelope = smtp_inbox.envelopes[0]
    assert envelope.rcpt_tos == ["smtp.reader@example.com"]
    assert envelope.mail_from == "newsroom@localhost"
    message = email.message_from_bytes(envelope.original_content)
    assert message["To"] == "smtp.reader@example.com"
    assert message["Subject"] == "[Bellwether] Please confirm your email address"
    body = message.get_payload(decode=True).decode()
    path = link_in(body)
    assert CONFIRM_PATH.match(path), path
    assert client.post(path).status_code == 302
    assert EmailAddress.objects.get(email="smtp.reader@example.com").verified is True


def test_a_new_reader_can_log_out_and_back_in_with_username_or_email(client):
    """Log in again after sign-up with either the username or the email address."""
    sign_up(client)
    client.post("/accounts/logout/")
    assert "_auth_user_id" not in client.session
    by_name = client.post("/accounts/login/", {"login": "reader", "password": PASSWORD})
    assert by_name.status_code == 302
    client.post("/accounts/logout/")
    by_email = client.post("/accounts/login/", {"login": "reader@example.com", "password": PASSWORD})
    assert by_email.status_code == 302
    assert client.session["_auth_user_id"] == str(get_user_model().objects.get(username="reader").pk)
    # Logging in again opens no second account and grants nothing twice.
    assert Transfer.objects.filter(kind="grant").count() == 1


def test_the_signup_page_and_welcome_state_the_configured_starting_balance(client, settings):
    """Quote the configured starting balance on the sign-up page and in the welcome, and grant exactly that."""
    settings.STARTING_BALANCE_MICRO = 250_500_000
    page = client.get("/accounts/signup/").content.decode()
    assert "New readers start with 250.50 play-money credits to trade on every market." in page
    response = sign_up(client, follow=True)
    assert "Welcome to Bellwether, reader! You start with 250.50 credits to forecast with." in response.content.decode()
    assert Account.objects.get(user__username="reader").balance_micro == 250_500_000
