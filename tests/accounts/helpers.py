"""Helpers shared by the account tests."""

from __future__ import annotations

import re

PASSWORD = "lantern-harbour-71"
LINK = re.compile(r"https?://testserver(/accounts/[^\s]+)")


def signup_next_value(client) -> str:
    """Return the hidden ``next`` value the sign-up form posts."""
    page = client.get("/accounts/signup/").content.decode()
    match = re.search(r'<input type="hidden" name="next" value="([^"]*)">', page)
    assert match, "the sign-up form carries no next field"
    return match.group(1)


def sign_up(client, *, username="reader", email="reader@example.com", password=PASSWORD, follow=False):
    """Sign up through the real form, posting what the page's form posts."""
    return client.post(
        "/accounts/signup/",
        {"username": username, "email": email, "password1": password, "next": signup_next_value(client)},
        follow=follow,
    )


def link_in(body: str) -> str:
    """Return the path of the one site link in an email body."""
    links = LINK.findall(body)
    assert len(links) == 1, links
    return links[0]
