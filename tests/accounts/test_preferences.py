"""Email preference services: lazy defaults, partial updates, one-click unsubscribe tokens."""

from __future__ import annotations

import pytest

from bellwether.accounts.exceptions import AccountError
from bellwether.accounts.models import EmailPreferences
from bellwether.accounts.services import create_user, get_email_preferences, unsubscribe, update_email_preferences

pytestmark = pytest.mark.django_db


@pytest.fixture
def alice(db):
    return create_user(username="alice", email="alice@example.com")


@pytest.fixture
def bob(db):
    return create_user(username="bob", email="bob@example.com")


def test_preferences_are_created_once_with_every_email_on(alice):
    """Create the row on first read with resolution notices on; later reads return the same row."""
    assert not EmailPreferences.objects.exists()
    first = get_email_preferences(user=alice)
    assert first.market_resolutions is True
    again = get_email_preferences(user=alice)
    assert again.pk == first.pk
    assert EmailPreferences.objects.count() == 1


def test_each_reader_gets_a_distinct_unguessable_unsubscribe_token(alice, bob):
    """Give every reader their own long random unsubscribe token."""
    tokens = {get_email_preferences(user=user).unsubscribe_token for user in (alice, bob)}
    assert len(tokens) == 2
    assert all(len(token) >= 40 for token in tokens)


def test_update_changes_only_the_topics_passed(alice):
    """Switch a topic off and on again; None means "keep"."""
    update_email_preferences(user=alice, market_resolutions=False)
    row = EmailPreferences.objects.get(user=alice)
    assert row.market_resolutions is False
    update_email_preferences(user=alice, market_resolutions=None)
    row.refresh_from_db()
    assert row.market_resolutions is False
    returned = update_email_preferences(user=alice, market_resolutions=True)
    row.refresh_from_db()
    assert row.market_resolutions is True and returned.market_resolutions is True


def test_updating_one_reader_leaves_the_others_alone(alice, bob):
    """Change only the preferences of the reader named."""
    get_email_preferences(user=bob)
    update_email_preferences(user=alice, market_resolutions=False)
    assert sorted(EmailPreferences.objects.values_list("user__username", "market_resolutions")) == [
        ("alice", False),
        ("bob", True),
    ]


def test_unsubscribe_token_switches_off_only_that_topic_for_that_reader(alice, bob):
    """Turn off resolution notices for the token's owner alone."""
    token = get_email_preferences(user=alice).unsubscribe_token
    get_email_preferences(user=bob)
    result = unsubscribe(token=token)
    assert result.user_id == alice.pk and result.market_resolutions is False
    assert sorted(EmailPreferences.objects.values_list("user__username", "market_resolutions")) == [
        ("alice", False),
        ("bob", True),
    ]


@pytest.mark.parametrize("token", ["", "not-a-token", "x" * 65])
def test_an_unknown_unsubscribe_token_changes_nothing(alice, token):
    """Return None for an unknown, empty or overlong token and change no one's preferences."""
    get_email_preferences(user=alice)
    assert unsubscribe(token=token) is None
    assert EmailPreferences.objects.filter(user=alice, market_resolutions=True).exists()


def test_unsubscribe_refuses_an_unknown_topic(alice):
    """Refuse a topic that is not an email we send."""
    token = get_email_preferences(user=alice).unsubscribe_token
    with pytest.raises(AccountError, match="unknown email topic 'sms'"):
        unsubscribe(token=token, topic="sms")
