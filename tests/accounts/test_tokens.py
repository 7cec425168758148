"""API tokens and the user/token commands, through the real HTTP layer.

Tokens are ``Authorization: Bearer bw_...``; only their SHA-256 is stored.
Every refused request answers 401 with ``{"error": {"code": "unauthorized", ...}}``.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
from io import StringIO

import pytest
from django.contrib.auth import get_user_model
from django.core.management import CommandError, call_command
from django.test import Client
from django.utils import timezone

from bellwether.accounts.models import ApiToken
from bellwether.accounts.services import create_token, create_user, has_role, revoke_token
from bellwether.ledger.models import Account, Transfer
from bellwether.markets import services as market_services
from bellwether.markets.models import Market, Trade

pytestmark = pytest.mark.django_db

API = "/api/v1"
UNAUTHORIZED = {"error": {"code": "unauthorized", "message": "log in or send Authorization: Bearer <token>"}}


def bearer(token: str) -> dict:
    return {"HTTP_AUTHORIZATION": f"Bearer {token}"}


def new_market() -> Market:
    return market_services.create_market(
        question="Will the harbour strike end by Friday?", liquidity_b_micro=100_000_000, close_at=timezone.now() + dt.timedelta(days=7)
    )


def state() -> dict:
    return {
        "balances": dict(Account.objects.values_list("pk", "balance_micro")),
        "transfers": Transfer.objects.count(),
        "trades": Trade.objects.count(),
        "tokens": sorted(ApiToken.objects.values_list("pk", "revoked_at")),
    }


@pytest.fixture
def alice(db):
    return create_user(username="alice")


@pytest.fixture
def bob(db):
    return create_user(username="bob")


def test_valid_token_authenticates(client, alice):
    """Accept a valid bearer token and answer as its owner."""
    _, raw = create_token(user=alice)
    assert raw.startswith("bw_")
    response = client.get(f"{API}/me", **bearer(raw))
    assert response.status_code == 200
    assert response.json() == {"username": "alice", "balance": "1000.000000", "positions": []}


@pytest.mark.parametrize(
    "header",
    [
        None,
        "Bearer bw_thisTokenWasNeverIssuedToAnybodyAtAll000000000",
        "Bearer REVOKED",
        "Bearer OTHER_CASE",
        "Bearer not-a-bellwether-token",
        "Bearer ",
        "Bearer",
        "Token VALID",
        "Basic YWxpY2U6cGFzc3dvcmQ=",
        "VALID",
        "Bearer bw_" + "x" * 200,
    ],
    ids=["missing", "unknown", "revoked", "wrong-case", "no-prefix", "empty", "scheme-only", "wrong-scheme", "basic", "no-scheme", "overlong"],
)
def test_bad_token_is_unauthorized(client, alice, header):
    """Answer a missing, unknown, revoked or malformed token with 401 unauthorized, changing nothing."""
    token, raw = create_token(user=alice)
    revoked, revoked_raw = create_token(user=alice, name="old")
    revoke_token(user=alice, token_id=revoked.pk)
    market = new_market()
    extra = {}
    if header is not None:
        header = header.replace("REVOKED", revoked_raw).replace("VALID", raw).replace("OTHER_CASE", raw.upper())
        extra["HTTP_AUTHORIZATION"] = header
    before = state()
    for method, path, body in [
        ("get", "/me", None),
        ("get", "/me/transfers", None),
        ("post", f"/markets/{market.slug}/trades", {"outcome": "yes", "side": "buy", "shares": "1"}),
        ("post", "/markets", {"question": "Q?", "liquidity_b": "100", "close_at": "2099-01-01T00:00:00Z"}),
        ("post", f"/markets/{market.slug}/resolve", {"outcome": "yes"}),
    ]:
        if method == "get":
            response = client.get(API + path, **extra)
        else:
            response = client.post(API + path, body, content_type="application/json", **extra)
        assert response.status_code == 401, (path, response.content)
        assert response.json() == UNAUTHORIZED
    assert state() == before


def test_bad_token_on_a_post_is_unauthorized_even_where_csrf_is_enforced(alice):
    """Answer a POST with an unknown bearer token and no session with 401 unauthorized, as real API clients see it."""
    market = new_market()
    api_client = Client(enforce_csrf_checks=True)
    before = state()
    response = api_client.post(
        f"{API}/markets/{market.slug}/trades", {"outcome": "yes", "shares": "1"}, content_type="application/json",
        **bearer("bw_thisTokenWasNeverIssuedToAnybodyAtAll000000000"),
    )
    assert state() == before
    assert response.status_code == 401, response.content
    assert response.json() == UNAUTHORIZED


def test_revoking_a_token_stops_it_working(client, alice):
    """Stop accepting a token the moment it is revoked; other tokens keep working."""
    token, raw = create_token(user=alice)
    _, other = create_token(user=alice, name="second")
    assert client.get(f"{API}/me", **bearer(raw)).status_code == 200
    revoke_token(user=alice, token_id=token.pk)
    assert client.get(f"{API}/me", **bearer(raw)).json() == UNAUTHORIZED
    assert client.get(f"{API}/me", **bearer(other)).status_code == 200


def test_token_of_an_inactive_user_is_unauthorized(client, alice):
    """Refuse the token of a deactivated user with 401."""
    _, raw = create_token(user=alice)
    get_user_model().objects.filter(pk=alice.pk).update(is_active=False)
    response = client.get(f"{API}/me", **bearer(raw))
    assert response.status_code == 401
    assert response.json() == UNAUTHORIZED


def test_tokens_are_stored_hashed(alice):
    """Store only the token's SHA-256 (and a short prefix): the token text appears in no column."""
    token, raw = create_token(user=alice, name="laptop")
    assert len(raw) > 40
    row = ApiToken.objects.values().get(pk=token.pk)
    assert row["key_hash"] == hashlib.sha256(raw.encode()).hexdigest()
    assert row["prefix"] == raw[:10]
    for column, value in row.items():
        assert raw not in str(value), column
    for values in ApiToken.objects.values_list():
        assert all(raw not in str(value) for value in values)


def test_a_token_shows_only_its_own_users_data(client, alice, bob):
    """Show each token's owner only their own /me and /me/transfers, never another user's."""
    _, alice_raw = create_token(user=alice)
    _, bob_raw = create_token(user=bob)
    market = new_market()
    bought = client.post(
        f"{API}/markets/{market.slug}/trades", {"outcome": "yes", "side": "buy", "shares": "10"},
        content_type="application/json", **bearer(alice_raw),
    )
    assert bought.status_code == 201
    assert Trade.objects.get().user == alice

    alice_me = client.get(f"{API}/me", **bearer(alice_raw)).json()
    bob_me = client.get(f"{API}/me", **bearer(bob_raw)).json()
    assert alice_me["username"] == "alice" and alice_me["balance"] == "994.875052" and len(alice_me["positions"]) == 1
    assert bob_me == {"username": "bob", "balance": "1000.000000", "positions": []}

    alice_page = client.get(f"{API}/me/transfers", **bearer(alice_raw)).json()
    bob_page = client.get(f"{API}/me/transfers", **bearer(bob_raw)).json()
    assert alice_page["next"] is None and bob_page["next"] is None
    alice_lines, bob_lines = alice_page["items"], bob_page["items"]
    assert [(line["kind"], line["amount"]) for line in alice_lines] == [("buy", "-5.124948"), ("grant", "1000.000000")]
    assert [(line["kind"], line["amount"], line["reference"]) for line in bob_lines] == [("grant", "1000.000000", f"user:{bob.pk}")]
    assert not {line["id"] for line in alice_lines} & {line["id"] for line in bob_lines}


# --- `bellwether token create` -------------------------------------------------


def test_token_command_prints_a_working_token(client, alice):
    """Print a new token once; it authenticates as the named user and is stored hashed under its name."""
    out = StringIO()
    call_command("token", "create", "alice", stdout=out)
    raw = out.getvalue().strip()
    assert re.fullmatch(r"bw_[A-Za-z0-9_-]{40,}", raw), raw
    response = client.get(f"{API}/me", **bearer(raw))
    assert response.status_code == 200 and response.json()["username"] == "alice"
    token = ApiToken.objects.get(user=alice)
    assert token.name == "cli"
    assert token.key_hash == hashlib.sha256(raw.encode()).hexdigest()

    out = StringIO()
    call_command("token", "create", "alice", "--name", "laptop", stdout=out)
    assert out.getvalue().strip() != raw
    assert sorted(ApiToken.objects.filter(user=alice).values_list("name", flat=True)) == ["cli", "laptop"]


def test_token_command_refuses_an_unknown_user(db):
    """Refuse to create a token for a user who does not exist, creating nothing."""
    with pytest.raises(CommandError, match="no user 'ghost'"):
        call_command("token", "create", "ghost", stdout=StringIO())
    assert not ApiToken.objects.exists()


# --- `bellwether user create` ---------------------------------------------------


def test_user_command_creates_a_user_with_roles_and_the_starting_balance(client, db):
    """Create a user with both roles and the starting grant, and report it."""
    out = StringIO()
    call_command("user", "create", "carol", "--role", "editor", "--role", "resolver", stdout=out)
    assert out.getvalue().strip() == "created carol (editor, resolver) with 1000.000000 credits"
    carol = get_user_model().objects.get(username="carol")
    assert has_role(carol, "editor") and has_role(carol, "resolver")
    assert not carol.has_usable_password()
    account = Account.objects.get(user=carol)
    assert account.balance_micro == 1000 * 1_000_000
    assert Transfer.objects.get(credit=account).kind == "grant"

    out = StringIO()
    call_command("user", "create", "dan", stdout=out)
    assert out.getvalue().strip() == "created dan (trader) with 1000.000000 credits"
    dan = get_user_model().objects.get(username="dan")
    assert not has_role(dan, "editor") and not has_role(dan, "resolver")


def test_user_command_roles_take_effect_in_the_api(client, db):
    """Let a user created as editor create markets and one created as resolver resolve them."""
    call_command("user", "create", "ed", "--role", "editor", stdout=StringIO())
    call_command("user", "create", "plain", stdout=StringIO())
    ed = StringIO()
    call_command("token", "create", "ed", stdout=ed)
    plain = StringIO()
    call_command("token", "create", "plain", stdout=plain)
    body = {"question": "Q?", "liquidity_b": "100", "close_at": "2099-01-01T00:00:00Z"}
    created = client.post(f"{API}/markets", body, content_type="application/json", **bearer(ed.getvalue().strip()))
    assert created.status_code == 201, created.content
    refused = client.post(f"{API}/markets", body, content_type="application/json", **bearer(plain.getvalue().strip()))
    assert refused.status_code == 403 and refused.json()["error"]["code"] == "forbidden"


def test_user_command_refuses_a_duplicate_user(db):
    """Refuse a username that exists already (whatever its case), changing nothing."""
    call_command("user", "create", "carol", stdout=StringIO())
    before = (get_user_model().objects.count(), Account.objects.count(), Transfer.objects.count())
    with pytest.raises(CommandError, match="user 'carol' already exists"):
        call_command("user", "create", "carol", stdout=StringIO())
    with pytest.raises(CommandError, match="already exists"):
        call_command("user", "create", "CAROL", stdout=StringIO())
    assert (get_user_model().objects.count(), Account.objects.count(), Transfer.objects.count()) == before


def test_user_command_refuses_an_unknown_role(db):
    """Refuse a role other than editor or resolver, creating no user."""
    with pytest.raises(CommandError, match=r"invalid choice: '?admin'?"):
        call_command("user", "create", "mallory", "--role", "admin", stdout=StringIO(), stderr=StringIO())
    assert not get_user_model().objects.filter(username="mallory").exists()
    assert not Account.objects.filter(kind="user").exists()
