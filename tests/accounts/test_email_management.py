"""Managing email addresses through allauth's page, in the site's frame."""

from __future__ import annotations

import re

import pytest
from allauth.account.models import EmailAddress
from django.core import mail

from bellwether.ratelimit import counters

from .helpers import link_in, sign_up

pytestmark = pytest.mark.django_db


def addresses() -> list:
    return sorted(EmailAddress.objects.values_list("email", "verified", "primary"))


def test_adding_an_address_sends_it_a_confirmation_that_verifies_it(client):
    """Add a second address, confirm it from its email, make it primary, then remove the first."""
    sign_up(client)
    mail.outbox.clear()
    added = client.post("/accounts/email/", {"action_add": "", "email": "reader@work.example"})
    assert added.status_code == 302
    assert addresses() == [("reader@example.com", False, True), ("reader@work.example", False, False)]
    assert [m.to for m in mail.outbox] == [["reader@work.example"]]
    page = client.get("/accounts/email/").content.decode()
    assert page.count('<span class="badge badge--warn">Not verified</span>') == 2

    client.post(link_in(mail.outbox[0].body))
    assert addresses() == [("reader@example.com", False, True), ("reader@work.example", True, False)]

    client.post("/accounts/email/", {"action_primary": "", "email": "reader@work.example"})
    assert addresses() == [("reader@example.com", False, False), ("reader@work.example", True, True)]
    client.post("/accounts/email/", {"action_remove": "", "email": "reader@example.com"})
    assert addresses() == [("reader@work.example", True, True)]
    account_page = client.get("/accounts/").content.decode()
    assert re.findall(r'<span class="email-address__text">([^<]+)</span>', account_page) == ["reader@work.example"]


def test_resending_the_confirmation_email(client):
    """Send the confirmation email again on request, but not within 3 minutes of the last one."""
    sign_up(client)
    mail.outbox.clear()
    too_soon = client.post("/accounts/email/", {"action_send": "", "email": "reader@example.com"})
    assert too_soon.status_code == 302
    assert mail.outbox == []
    counters.clear()  # as if the 3-minute window had passed
    response = client.post("/accounts/email/", {"action_send": "", "email": "reader@example.com"}, follow=True)
    assert response.status_code == 200
    assert [m.to for m in mail.outbox] == [["reader@example.com"]]
    assert "Confirmation email sent to reader@example.com." in response.content.decode()


def test_an_address_verified_by_another_reader_is_never_verified_for_a_second_account(client):
    """Never let a second account confirm an address another reader has confirmed (nor say whose it is)."""
    sign_up(client, username="first", email="shared@example.com")
    client.post(link_in(mail.outbox[0].body))
    client.post("/accounts/logout/")
    sign_up(client, username="second", email="second@example.com")
    mail.outbox.clear()
    counters.clear()
    response = client.post("/accounts/email/", {"action_add": "", "email": "shared@example.com"})
    assert response.status_code == 302
    # The page behaves as for a free address, so it reveals nothing; the owner's inbox gets the link.
    assert [m.to for m in mail.outbox] == [["shared@example.com"]]
    link = link_in(mail.outbox[0].body)
    page = client.get(link).content.decode()
    assert "shared@example.com cannot be confirmed here, because another account has confirmed it already." in page
    client.post(link)
    assert sorted(EmailAddress.objects.filter(email="shared@example.com").values_list("user__username", "verified")) == [
        ("first", True),
        ("second", False),
    ]
