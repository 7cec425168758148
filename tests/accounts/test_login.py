"""Logging in: the failed-login lockout, password reset by email, password change, Argon2 hashing, the pages' look."""

from __future__ import annotations

import re

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.hashers import check_password, make_password
from django.core import mail

from bellwether.accounts.services import create_user

from .helpers import PASSWORD, link_in, sign_up

pytestmark = pytest.mark.django_db

WRONG = "The username and/or password you specified are not correct."
LOCKED = "Too many failed attempts."


def logged_in_as(client) -> str | None:
    return client.session.get("_auth_user_id")


def log_in(client, login: str, password: str):
    return client.post("/accounts/login/", {"login": login, "password": password})


# --- Lockout -------------------------------------------------------------------


def test_five_failed_logins_lock_the_username_even_for_the_right_password(client):
    """After 5 wrong passwords for one username, refuse even the right one with a clear message."""
    create_user(username="alice", email="alice@example.com", password=PASSWORD)
    for attempt in range(5):
        response = log_in(client, "alice", f"wrong-{attempt}")
        assert response.status_code == 200
        assert WRONG in response.content.decode()
        assert LOCKED not in response.content.decode()
    refused = log_in(client, "alice", PASSWORD)
    assert refused.status_code == 200
    page = refused.content.decode()
    assert 'id="login-locked"' in page
    assert (
        "<strong>Too many failed attempts.</strong> To keep this account safe, logging in to it is paused for a few minutes."
        in page
    )
    assert logged_in_as(client) is None


def test_a_locked_username_does_not_lock_out_other_readers(client):
    """Let another reader log in from the same address while one username is locked."""
    create_user(username="alice", password=PASSWORD)
    bob = create_user(username="bob", password=PASSWORD)
    for attempt in range(5):
        log_in(client, "alice", f"wrong-{attempt}")
    assert LOCKED in log_in(client, "alice", PASSWORD).content.decode()
    accepted = log_in(client, "bob", PASSWORD)
    assert accepted.status_code == 302
    assert logged_in_as(client) == str(bob.pk)


def test_four_failed_logins_still_let_the_right_password_in(client):
    """Accept the right password after four mistakes: the fifth failure is what locks."""
    alice = create_user(username="alice", password=PASSWORD)
    for attempt in range(4):
        log_in(client, "alice", f"wrong-{attempt}")
    assert log_in(client, "alice", PASSWORD).status_code == 302
    assert logged_in_as(client) == str(alice.pk)


# --- Password reset ------------------------------------------------------------


def test_password_reset_by_email_end_to_end(client):
    """Request a reset, follow the emailed link, choose a new password and log in with it; the old one stops working."""
    sign_up(client)
    client.post("/accounts/logout/")
    mail.outbox.clear()

    requested = client.post("/accounts/password/reset/", {"email": "reader@example.com"})
    assert requested.status_code == 302
    assert requested["Location"] == "/accounts/password/reset/done/"
    assert "Check your email" in client.get(requested["Location"]).content.decode()
    assert len(mail.outbox) == 1
    message = mail.outbox[0]
    assert message.to == ["reader@example.com"]
    assert message.subject == "[Bellwether] Reset your password"
    assert "In case you forgot, your username is reader." in message.body
    path = link_in(message.body)
    assert re.fullmatch(r"/accounts/password/reset/key/[0-9a-z]+-[0-9A-Za-z-]+/", path), path

    # The link stores the key in the session and moves to a key-free URL.
    stage = client.get(path)
    assert stage.status_code == 302
    form_page = client.get(stage["Location"])
    assert form_page.status_code == 200
    assert "Choose a new password" in form_page.content.decode()
    new_password = "quiet-ferry-lanterns-88"
    done = client.post(stage["Location"], {"password1": new_password, "password2": new_password})
    assert done.status_code == 302
    assert done["Location"] == "/accounts/password/reset/key/done/"

    assert log_in(client, "reader", PASSWORD).status_code == 200
    assert logged_in_as(client) is None
    assert log_in(client, "reader", new_password).status_code == 302
    assert logged_in_as(client) == str(get_user_model().objects.get(username="reader").pk)


def test_a_used_reset_link_does_not_work_twice(client):
    """Refuse a reset link once it has set a password."""
    sign_up(client)
    client.post("/accounts/logout/")
    mail.outbox.clear()
    client.post("/accounts/password/reset/", {"email": "reader@example.com"})
    path = link_in(mail.outbox[0].body)
    stage = client.get(path)["Location"]
    client.post(stage, {"password1": "quiet-ferry-lanterns-88", "password2": "quiet-ferry-lanterns-88"})
    again = client.get(path, follow=True)
    assert "This link no longer works" in again.content.decode()


def test_reset_for_an_unknown_address_reveals_nothing_and_sends_no_reset_link(client):
    """Answer an unknown address exactly like a known one, sending no reset link."""
    response = client.post("/accounts/password/reset/", {"email": "nobody@example.com"})
    assert response.status_code == 302
    assert response["Location"] == "/accounts/password/reset/done/"
    assert not any("/accounts/password/reset/key/" in m.body for m in mail.outbox)


def test_password_change_keeps_the_reader_logged_in_and_takes_effect(client):
    """Change the password from the account's link; the new one logs in, the old one no longer does."""
    sign_up(client)
    changed = client.post(
        "/accounts/password/change/",
        {"oldpassword": PASSWORD, "password1": "quiet-ferry-lanterns-88", "password2": "quiet-ferry-lanterns-88"},
    )
    assert changed.status_code == 302
    assert logged_in_as(client) is not None
    client.post("/accounts/logout/")
    assert log_in(client, "reader", PASSWORD).status_code == 200
    assert log_in(client, "reader", "quiet-ferry-lanterns-88").status_code == 302


# --- Argon2 --------------------------------------------------------------------


def test_production_settings_hash_new_passwords_with_argon2_first():
    """List Argon2 first in the shared settings, so every new or upgraded password uses it."""
    from bellwether.settings import base

    assert base.PASSWORD_HASHERS[0] == "django.contrib.auth.hashers.Argon2PasswordHasher"


def test_argon2_hashes_round_trip(settings):
    """Hash with Argon2id and verify: the right password matches, a wrong one does not."""
    from bellwether.settings import base

    settings.PASSWORD_HASHERS = base.PASSWORD_HASHERS
    encoded = make_password("lantern-harbour-71", hasher="argon2")
    assert encoded.startswith("argon2$argon2id$")
    assert "lantern-harbour-71" not in encoded
    assert check_password("lantern-harbour-71", encoded) is True
    assert check_password("lantern-harbour-72", encoded) is False


def test_a_reader_signing_up_under_the_real_hashers_gets_an_argon2_password(client, settings):
    """Store a signed-up reader's password as Argon2id when the shared settings' hashers are in force."""
    from bellwether.settings import base

    settings.PASSWORD_HASHERS = base.PASSWORD_HASHERS
    sign_up(client)
    user = get_user_model().objects.get(username="reader")
    assert user.password.startswith("argon2$argon2id$")
    client.post("/accounts/logout/")
    assert log_in(client, "reader", PASSWORD).status_code == 302


# --- The pages look like the site ---------------------------------------------

ANONYMOUS_PAGES = [
    "/accounts/login/",
    "/accounts/signup/",
    "/accounts/password/reset/",
    "/accounts/password/reset/done/",
    "/accounts/confirm-email/not-a-real-key/",
]
MEMBER_PAGES = ["/accounts/", "/accounts/logout/", "/accounts/password/change/", "/accounts/email/"]


def _assert_site_page(response) -> str:
    assert response.status_code == 200, response
    page = response.content.decode()
    assert '<header class="masthead">' in page
    assert "/static/css/accounts.css" in page
    # The Content-Security-Policy forbids inline styles and scripts.
    assert not re.search(r"\sstyle=", page)
    assert "<style" not in page
    assert all("src=" in tag for tag in re.findall(r"<script[^>]*>", page))
    return page


@pytest.mark.parametrize("path", ANONYMOUS_PAGES)
def test_entrance_pages_use_the_site_frame_without_inline_styles_or_scripts(client, path):
    """Render each allauth entrance page inside the site's frame, with no inline style or script."""
    page = _assert_site_page(client.get(path))
    assert '<div class="auth auth--entrance">' in page


@pytest.mark.parametrize("path", MEMBER_PAGES)
def test_member_pages_use_the_site_frame_without_inline_styles_or_scripts(client, path):
    """Render each page for a logged-in reader inside the site's frame, with no inline style or script."""
    sign_up(client)
    _assert_site_page(client.get(path))


def test_login_page_shows_a_labelled_form_with_a_reset_link(client):
    """Show labelled login fields, a remember-me box and a link to reset the password."""
    page = client.get("/accounts/login/").content.decode()
    assert '<label for="id_login">Username or email</label>' in page
    assert '<label for="id_password">Password</label>' in page
    assert '<label for="id_remember">Keep me logged in on this device</label>' in page
    assert '<a class="auth__aside" href="/accounts/password/reset/">Forgot your password?</a>' in page
