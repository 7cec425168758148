"""The account page at /accounts/: balance, email, password, API tokens, email preferences."""

from __future__ import annotations

import re

import pytest
from allauth.account.models import EmailAddress
from django.test import Client

from bellwether.accounts.models import ApiToken, EmailPreferences
from bellwether.accounts.services import create_token, create_user, get_email_preferences, revoke_token
from bellwether.ledger.models import Account

pytestmark = pytest.mark.django_db

HOME = "/accounts/"
TOKENS = "/accounts/tokens/"
PREFERENCES = "/accounts/preferences/"
HTMX = {"HTTP_HX_REQUEST": "true"}
NEW_TOKEN = re.compile(r'<code id="new-token-text">(bw_[A-Za-z0-9_-]+)</code>')


def revoke_url(token_id: int) -> str:
    return f"/accounts/tokens/{token_id}/revoke/"


@pytest.fixture
def alice(db):
    user = create_user(username="alice", email="alice@example.com", password="lantern-harbour-71")
    EmailAddress.objects.create(user=user, email="alice@example.com", verified=True, primary=True)
    EmailAddress.objects.create(user=user, email="alice@work.example", verified=False, primary=False)
    return user


@pytest.fixture
def bob(db):
    return create_user(username="bob", email="bob@example.com", password="lantern-harbour-71")


@pytest.fixture
def alice_client(alice):
    client = Client()
    client.force_login(alice)
    return client


@pytest.fixture
def bob_client(bob):
    client = Client()
    client.force_login(bob)
    return client


def token_state() -> list:
    return sorted(ApiToken.objects.values_list("pk", "user__username", "name", "revoked_at"))


def preference_state() -> list:
    return sorted(EmailPreferences.objects.values_list("user__username", "market_resolutions"))


# --- Access ----------------------------------------------------------------------


@pytest.mark.parametrize("method,path", [("get", HOME), ("post", TOKENS), ("post", revoke_url(1)), ("post", PREFERENCES)])
def test_anonymous_readers_are_sent_to_log_in(client, method, path):
    """Redirect an anonymous reader to the login page, coming back afterwards, and change nothing."""
    response = getattr(client, method)(path, {"name": "sneaky"} if method == "post" else None)
    assert response.status_code == 302
    assert response["Location"] == f"/accounts/login/?next={path}"
    assert not ApiToken.objects.exists()


def test_the_account_page_is_never_cached(alice_client):
    """Mark the account page private and not to be stored by any cache."""
    response = alice_client.get(HOME)
    assert response.status_code == 200
    cache_control = {part.strip() for part in response["Cache-Control"].split(",")}
    assert {"no-store", "no-cache", "private", "must-revalidate", "max-age=0"} <= cache_control


# --- What the page shows ---------------------------------------------------------


def test_the_account_page_shows_balance_emails_and_password_links(alice_client):
    """Show the balance with a portfolio link, each email with its verified state, and the email and password links."""
    page = alice_client.get(HOME).content.decode()
    assert '<span id="account-balance-amount">1,000.00</span> credits' in page
    assert '<a href="/portfolio/">See your portfolio and trades →</a>' in page
    emails = re.findall(
        r'<span class="email-address__text">([^<]+)</span>\s*<span class="badge badge--(ok|warn)">([^<]+)</span>', page
    )
    assert emails == [("alice@example.com", "ok", "Verified"), ("alice@work.example", "warn", "Not verified")]
    assert '<a href="/accounts/email/" id="manage-email-link">Manage email addresses</a>' in page
    assert '<a href="/accounts/password/change/" id="change-password-link">Change your password</a>' in page
    assert "You have no API tokens yet." in page


def test_a_reader_without_a_ledger_account_gets_one_on_the_account_page(client):
    """Open the starting balance for a reader made elsewhere (say, the admin) when they first open the page."""
    from django.contrib.auth import get_user_model

    carol = get_user_model().objects.create_user(username="carol", password="lantern-harbour-71")
    assert not Account.objects.filter(user=carol).exists()
    client.force_login(carol)
    page = client.get(HOME).content.decode()
    assert '<span id="account-balance-amount">1,000.00</span> credits' in page
    assert Account.objects.get(user=carol).balance_micro == 1_000_000_000
    assert "No email address yet." in page


def test_a_reader_without_a_password_is_offered_to_set_one(client):
    """Offer "Set a password" to a reader created without one (an API-only user)."""
    dan = create_user(username="dan")
    client.force_login(dan)
    page = client.get(HOME).content.decode()
    assert '<a href="/accounts/password/set/" id="change-password-link">Set a password</a>' in page


# --- API tokens ------------------------------------------------------------------


def test_creating_a_token_shows_its_text_once_and_never_again(alice_client, alice):
    """Show the new token's text on the create response only (not cached); it works, and later pages show just its prefix."""
    response = alice_client.post(TOKENS, {"name": "  trading bot  "})
    assert response.status_code == 200
    assert "no-store" in response["Cache-Control"]
    page = response.content.decode()
    raw = NEW_TOKEN.search(page).group(1)
    token = ApiToken.objects.get(user=alice)
    assert token.name == "trading bot"
    assert raw.startswith(token.prefix) and len(raw) > 40
    assert "Copy it now: for your safety it will never be shown again." in page
    assert Client().get("/api/v1/me", HTTP_AUTHORIZATION=f"Bearer {raw}").json()["username"] == "alice"

    later = alice_client.get(HOME).content.decode()
    assert raw not in later
    assert 'id="new-token-text"' not in later
    assert f'<code class="token__prefix">{token.prefix}…</code>' in later
    assert '<span class="token__name">trading bot</span>' in later


def test_creating_a_token_through_htmx_swaps_only_the_tokens_section(alice_client, alice):
    """Answer an htmx create with just the tokens section, holding the new token's text."""
    response = alice_client.post(TOKENS, {"name": "laptop"}, **HTMX)
    assert response.status_code == 200
    assert "no-store" in response["Cache-Control"]
    fragment = response.content.decode().strip()
    assert fragment.startswith('<section class="account-card account-card--wide" id="api-tokens"')
    assert fragment.endswith("</section>")
    assert "<html" not in fragment and "masthead" not in fragment
    raw = NEW_TOKEN.search(fragment).group(1)
    assert ApiToken.objects.get(user=alice).prefix == raw[:10]


@pytest.mark.parametrize("name", ["", "   ", "x" * 101])
def test_a_token_needs_a_sensible_name(alice_client, name):
    """Refuse a blank or overlong token name with a message, creating nothing."""
    response = alice_client.post(TOKENS, {"name": name})
    assert response.status_code == 200
    page = response.content.decode()
    expected = (
        "Give the token a name so you can tell it apart later."
        if name.strip() == ""
        else "Ensure this value has at most 100 characters (it has 101)."
    )
    assert f'<p class="field__error">{expected}</p>' in page
    assert not ApiToken.objects.exists()
    assert "new-token-text" not in page


def test_the_token_list_shows_name_prefix_dates_and_revoked_state(alice_client, alice):
    """List working tokens first, each with name, prefix, created and last-used dates; revoked ones say so."""
    old, _ = create_token(user=alice, name="old script")
    revoke_token(user=alice, token_id=old.pk)
    live, raw = create_token(user=alice, name="bot")
    assert Client().get("/api/v1/me", HTTP_AUTHORIZATION=f"Bearer {raw}").status_code == 200
    page = alice_client.get(HOME).content.decode()
    names = re.findall(r'<span class="token__name">([^<]+)</span>', page)
    assert names == ["bot", "old script"]
    live_item = page[page.index(f'id="token-{live.pk}"') : page.index(f'id="token-{old.pk}"')]
    assert '<span class="badge badge--ok">Active</span>' in live_item
    assert "<dt>Last used</dt><dd><time" in live_item
    assert "Revoke “bot”" in live_item
    old_item = page[page.index(f'id="token-{old.pk}"') :]
    assert '<span class="badge">Revoked</span>' in old_item
    assert "<dt>Last used</dt><dd>Never</dd>" in old_item
    assert "<dt>Revoked</dt>" in old_item
    assert "Revoke “old script”" not in old_item


def test_revoking_a_token_stops_it_and_says_so(alice_client, alice):
    """Revoke with a plain POST: back to the account page with a message, and the token no longer works."""
    token, raw = create_token(user=alice, name="bot")
    response = alice_client.post(revoke_url(token.pk), follow=True)
    assert response.redirect_chain == [(HOME, 302)]
    assert "The token “bot” is revoked. Scripts using it can no longer sign in." in response.content.decode()
    token.refresh_from_db()
    assert token.revoked_at is not None
    assert Client().get("/api/v1/me", HTTP_AUTHORIZATION=f"Bearer {raw}").status_code == 401


def test_revoking_through_htmx_swaps_the_tokens_section(alice_client, alice):
    """Answer an htmx revoke with the tokens section showing the token as revoked and a notice."""
    token, _ = create_token(user=alice, name="bot")
    response = alice_client.post(revoke_url(token.pk), **HTMX)
    assert response.status_code == 200
    fragment = response.content.decode().strip()
    assert fragment.startswith('<section class="account-card account-card--wide" id="api-tokens"')
    assert '<p class="notice" role="status">The token “bot” is revoked. Scripts using it can no longer sign in.</p>' in fragment
    assert '<span class="badge">Revoked</span>' in fragment


def test_revoking_twice_changes_nothing_the_second_time(alice_client, alice):
    """Keep the first revocation time when a revoked token is revoked again."""
    token, _ = create_token(user=alice, name="bot")
    alice_client.post(revoke_url(token.pk))
    token.refresh_from_db()
    first = token.revoked_at
    response = alice_client.post(revoke_url(token.pk), follow=True)
    assert "The token “bot” was already revoked." in response.content.decode()
    token.refresh_from_db()
    assert token.revoked_at == first


def test_revoking_needs_a_post(alice_client, alice):
    """Refuse a GET on the revoke URL (405), leaving the token working."""
    token, _ = create_token(user=alice, name="bot")
    assert alice_client.get(revoke_url(token.pk)).status_code == 405
    token.refresh_from_db()
    assert token.revoked_at is None


# --- One reader never touches another's -------------------------------------------


def test_a_reader_never_sees_another_readers_tokens(alice_client, alice, bob):
    """Show only the reader's own tokens on their page."""
    create_token(user=bob, name="bobs-secret-bot")
    create_token(user=alice, name="alices-bot")
    page = alice_client.get(HOME).content.decode()
    assert "alices-bot" in page
    assert "bobs-secret-bot" not in page


@pytest.mark.parametrize("htmx", [False, True], ids=["plain", "htmx"])
def test_a_reader_cannot_revoke_another_readers_token(alice_client, bob, htmx):
    """Answer 404 to revoking someone else's token (or one that does not exist), and change nothing."""
    token, raw = create_token(user=bob, name="bot")
    before = token_state()
    extra = HTMX if htmx else {}
    assert alice_client.post(revoke_url(token.pk), **extra).status_code == 404
    assert alice_client.post(revoke_url(token.pk + 1000), **extra).status_code == 404
    assert token_state() == before
    assert Client().get("/api/v1/me", HTTP_AUTHORIZATION=f"Bearer {raw}").status_code == 200


def test_preferences_are_each_readers_own(alice_client, bob_client, alice, bob):
    """Save preferences for the reader who posts only; each page shows its own reader's settings."""
    bob_client.post(PREFERENCES, {})
    assert preference_state() == [("bob", False)]
    alice_page = alice_client.get(HOME).content.decode()
    assert re.findall(r'<input type="checkbox" name="market_resolutions"[^>]*?( checked)?>', alice_page) == [" checked"]
    assert preference_state() == [("alice", True), ("bob", False)]
    bob_page = bob_client.get(HOME).content.decode()
    assert re.findall(r'<input type="checkbox" name="market_resolutions"[^>]*?( checked)?>', bob_page) == [""]


# --- Email preferences -------------------------------------------------------------


def test_every_email_is_on_until_the_reader_says_otherwise(alice_client):
    """Tick the resolution-notice box for a reader who has never changed it."""
    page = alice_client.get(HOME).content.decode()
    assert re.findall(r'<input type="checkbox" name="(\w+)"[^>]*?( checked)?>', page) == [
        ("market_resolutions", " checked"),
    ]


def test_saving_preferences_with_a_plain_post(alice_client, alice):
    """Save the boxes as posted (an unticked box is off) and come back with a confirmation."""
    response = alice_client.post(PREFERENCES, {}, follow=True)
    assert response.redirect_chain == [(HOME, 302)]
    page = response.content.decode()
    assert "Your email preferences are saved." in page
    assert re.findall(r'<input type="checkbox" name="(\w+)"[^>]*?( checked)?>', page) == [
        ("market_resolutions", ""),
    ]
    preferences = EmailPreferences.objects.get(user=alice)
    assert preferences.market_resolutions is False


def test_saving_preferences_through_htmx_swaps_the_section(alice_client, alice):
    """Answer an htmx save with just the preferences section and a saved notice."""
    response = alice_client.post(PREFERENCES, {}, **HTMX)
    assert response.status_code == 200
    fragment = response.content.decode().strip()
    assert fragment.startswith('<section class="account-card" id="email-preferences"')
    assert '<p class="notice" role="status">Your email preferences are saved.</p>' in fragment
    assert " checked" not in fragment
    preferences = get_email_preferences(user=alice)
    assert preferences.market_resolutions is False


# --- CSRF ------------------------------------------------------------------------------


def _csrf_posts(alice):
    token, _ = create_token(user=alice, name="bot")
    return [(TOKENS, {"name": "forged"}), (revoke_url(token.pk), {}), (PREFERENCES, {})]


def test_every_post_on_the_account_page_needs_the_csrf_token(alice):
    """Refuse every account-page POST without the CSRF token (403), changing nothing."""
    client = Client(enforce_csrf_checks=True)
    client.force_login(alice)
    posts = _csrf_posts(alice)
    get_email_preferences(user=alice)
    before = (token_state(), preference_state())
    for path, data in posts:
        for extra in ({}, HTMX):
            response = client.post(path, data, **extra)
            assert response.status_code == 403, path
    assert (token_state(), preference_state()) == before


def test_the_same_posts_succeed_with_the_pages_csrf_token(alice):
    """Accept the same POSTs when they carry the token the page gives out, as the browser sends it."""
    client = Client(enforce_csrf_checks=True)
    client.force_login(alice)
    posts = _csrf_posts(alice)
    page = client.get(HOME).content.decode()
    csrf = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page).group(1)
    statuses = [client.post(path, {**data, "csrfmiddlewaretoken": csrf}).status_code for path, data in posts]
    assert statuses == [200, 302, 302]
    # htmx sends the token in the X-CSRFToken header that base.html puts on <body>.
    header = re.search(r"hx-headers='\{\"X-CSRFToken\": \"([^\"]+)\"\}'", page).group(1)
    assert client.post(PREFERENCES, {}, HTTP_X_CSRFTOKEN=header, **HTMX).status_code == 200
    assert sorted((name, revoked is not None) for name, revoked in ApiToken.objects.values_list("name", "revoked_at")) == [
        ("bot", True),
        ("forged", False),
    ]


# --- Queries -----------------------------------------------------------------------------


def test_the_account_page_query_count_does_not_grow_with_tokens(alice_client, alice, django_assert_num_queries):
    """Render the page in the same, small number of queries with 1 token or 10."""
    create_token(user=alice, name="token 1")
    alice_client.get(HOME)  # the first visit creates the preferences row
    # session, user, ledger account, preferences, email addresses, tokens, and the masthead's sections
    with django_assert_num_queries(7):
        alice_client.get(HOME)
    for number in range(2, 11):
        create_token(user=alice, name=f"token {number}")
    with django_assert_num_queries(7):
        page = alice_client.get(HOME).content.decode()
    assert page.count('<li class="token"') == 10
