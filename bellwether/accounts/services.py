"""Users, roles, API tokens and email preferences."""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group, Permission
from django.contrib.contenttypes.models import ContentType
from django.db import IntegrityError, transaction
from django.utils import timezone

from bellwether.ledger.services import open_user_account

from .exceptions import AccountError
from .models import ApiToken, EmailPreferences

# Role name -> Django group. Editors (Wagtail's group) create markets;
# resolvers resolve and cancel them.
ROLE_GROUPS = {"editor": "Editors", "resolver": "Resolvers"}
TOKEN_PREFIX = "bw_"
LAST_USED_RESOLUTION = dt.timedelta(minutes=5)
EMAIL_TOPICS = ("market_resolutions",)


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
    group, created = Group.objects.get_or_create(name=ROLE_GROUPS[role])
    if created:
        # Migrations create both groups with admin access; a group made here
        # (after someone deleted it) needs that access to be of any use.
        group.permissions.add(_admin_access_permission())
    user.groups.add(group)
    if role == "editor":
        user.is_staff = True
        user.save(update_fields=["is_staff"])


def _admin_access_permission() -> Permission:
    """Return Wagtail's access_admin permission, recreating it as its migration does if it is gone."""
    content_type, _ = ContentType.objects.get_or_create(app_label="wagtailadmin", model="admin")
    permission, _ = Permission.objects.get_or_create(
        content_type=content_type, codename="access_admin", defaults={"name": "Can access Wagtail admin"}
    )
    return permission


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


def user_id_for_token(raw: str) -> int | None:
    """Return the id of the active user behind a working token, or None; records nothing (rate limits use it)."""
    if not raw.startswith(TOKEN_PREFIX) or len(raw) > 100:
        return None
    return (
        ApiToken.objects.filter(key_hash=hash_token(raw), revoked_at__isnull=True, user__is_active=True)
        .values_list("user_id", flat=True)
        .first()
    )


def hash_token(raw: str) -> str:
    """Return the stored form of a token (SHA-256; tokens carry 256 random bits)."""
    return hashlib.sha256(raw.encode()).hexdigest()


def get_email_preferences(*, user) -> EmailPreferences:
    """Return ``user``'s email preferences, creating them with every email switched on the first time."""
    preferences = next(iter(EmailPreferences.objects.filter(user=user)[:1]), None)
    if preferences is not None:
        return preferences
    try:
        with transaction.atomic():
            return EmailPreferences.objects.create(user=user)
    except IntegrityError:
        # Another request created the row between the read and the insert.
        return EmailPreferences.objects.get(user=user)


def update_email_preferences(*, user, market_resolutions: bool | None = None) -> EmailPreferences:
    """Switch ``user``'s emails on or off; a topic passed as None keeps its setting."""
    preferences = get_email_preferences(user=user)
    changes = {name: bool(value) for name, value in (("market_resolutions", market_resolutions),) if value is not None}
    if changes:
        for name, value in changes.items():
            setattr(preferences, name, value)
        preferences.updated_at = timezone.now()
        EmailPreferences.objects.filter(pk=preferences.pk).update(**changes, updated_at=preferences.updated_at)
    return preferences


def unsubscribe(*, token: str, topic: str = "market_resolutions") -> EmailPreferences | None:
    """Switch off ``topic`` for the reader behind an unsubscribe token; return None for an unknown token."""
    if topic not in EMAIL_TOPICS:
        raise AccountError(f"unknown email topic {topic!r}; choose from {', '.join(EMAIL_TOPICS)}")
    if not token or len(token) > 64:
        return None
    preferences = next(iter(EmailPreferences.objects.filter(unsubscribe_token=token)[:1]), None)
    if preferences is None:
        return None
    now = timezone.now()
    EmailPreferences.objects.filter(pk=preferences.pk).update(**{topic: False}, updated_at=now)
    setattr(preferences, topic, False)
    preferences.updated_at = now
    return preferences
