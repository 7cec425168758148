"""Users, roles and API tokens."""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.db import transaction
from django.utils import timezone

from bellwether.ledger.services import open_user_account

from .exceptions import AccountError
from .models import ApiToken

# Role name -> Django group. Editors (Wagtail's group) create markets;
# resolvers resolve and cancel them.
ROLE_GROUPS = {"editor": "Editors", "resolver": "Resolvers"}
TOKEN_PREFIX = "bw_"
LAST_USED_RESOLUTION = dt.timedelta(minutes=5)


def create_user(*, username: str, email: str = "", password: str | None = None, roles: tuple[str, ...] = ()):
    """Create a user with the starting balance and the given roles."""
    User = get_user_model()
    if User.objects.filter(username__iexact=username).exists():
        raise AccountError(f"user {username!r} already exists")
    unknown = set(roles) - set(ROLE_GROUPS)
    if unknown:
        raise AccountError(f"unknown role(s): {', '.join(sorted(unknown))}; choose from {', '.join(ROLE_GROUPS)}")
    with transaction.atomic():
        user = User.objects.create_user(username=username, email=email, password=password)
        if password is None:
            user.set_unusable_password()
            user.save(update_fields=["password"])
        for role in roles:
            grant_role(user=user, role=role)
        open_user_account(user=user)
    return user


def grant_role(*, user, role: str) -> None:
    """Add ``user`` to the group behind ``role``."""
    group, _ = Group.objects.get_or_create(name=ROLE_GROUPS[role])
    user.groups.add(group)
    if role == "editor":
        user.is_staff = True
        user.save(update_fields=["is_staff"])


def has_role(user, role: str) -> bool:
    """Return True when ``user`` holds ``role`` (superusers hold every role)."""
    if not user.is_authenticated:
        return False
    return user.is_superuser or user.groups.filter(name=ROLE_GROUPS[role]).exists()


def create_token(*, user, name: str = "default") -> tuple[ApiToken, str]:
    """Create an API token; return the row and the token text, which is not stored."""
    raw = TOKEN_PREFIX + secrets.token_urlsafe(32)
    token = ApiToken.objects.create(user=user, name=name[:100], prefix=raw[:10], key_hash=hash_token(raw))
    return token, raw


def revoke_token(*, user, token_id: int) -> None:
    """Revoke one of ``user``'s tokens."""
    updated = ApiToken.objects.filter(pk=token_id, user=user, revoked_at__isnull=True).update(revoked_at=timezone.now())
    if not updated:
        raise AccountError("no such token")


def authenticate_token(raw: str):
    """Return the user behind a token, or None when it is unknown or revoked."""
    if not raw.startswith(TOKEN_PREFIX) or len(raw) > 100:
        return None
    token = next(iter(ApiToken.objects.select_related("user").filter(key_hash=hash_token(raw), revoked_at__isnull=True)[:1]), None)
    if token is None or not token.user.is_active:
        return None
    now = timezone.now()
    if token.last_used_at is None or now - token.last_used_at > LAST_USED_RESOLUTION:
        # Recorded coarsely: a write on every API call would tax the trade path.
        ApiToken.objects.filter(pk=token.pk).update(last_used_at=now)
    return token.user


def hash_token(raw: str) -> str:
    """Return the stored form of a token (SHA-256; tokens carry 256 random bits)."""
    return hashlib.sha256(raw.encode()).hexdigest()
