"""Subscribing to the weekly highlights: double opt-in, signed expiring links, one-click unsubscribe, bounces."""

from __future__ import annotations

import email
import re
import socket
from email.policy import default as default_policy
from urllib.parse import urlsplit

import pytest
from aiosmtpd.controller import Controller
from allauth.account.models import EmailAddress
from django.core import mail, signing
from django.test import Client

from bellwether import ratelimit
from bellwether.accounts.services import create_user
from bellwether.highlights import subscriptions
from bellwether.highlights.models import Subscriber
from bellwether.highlights.subscriptions import Outcome

pytestmark = pytest.mark.django_db

SITE = "https://news.example.org"
LINK = re.compile(r"https://news\.example\.org(/highlights/confirm/[^/\s\"<]+/)")


@pytest.fixture(autouse=True)
def _site(settings):
    settings.SITE_URL = SITE
    settings.DEFAULT_FROM_EMAIL = "Bellwether <newsroom@news.example.org>"
    settings.HIGHLIGHTS_CONFIRM_MAX_AGE_S = 3 * 24 * 3600


def subscriber_state() -> list:
    return list(Subscriber.objects.order_by("pk").values_list("email", "status", "source"))


def confirm_path(message) -> str:
    """Return the site path of the confirmation link in the plain-text part of ``message``."""
    match = LINK.search(message.body)
    assert match, message.body
    return match.group(1)


def subscribe_by_post(client, email_address, *, source="article", htmx=True, capture):
    extra = {"HTTP_HX_REQUEST": "true"} if htmx else {}
    with capture(execute=True):
        return client.post("/highlights/subscribe/", {"email": email_address, "source": source}, **extra)


# --- the double opt-in flow ---------------------------------------------------------------


def test_subscribe_mails_a_signed_link_that_confirms(client, django_capture_on_commit_callbacks):
    """Subscribing creates a pending row and mails one link; pressing confirm on its page activates the row."""
    response = subscribe_by_post(client, "  Reader@Example.COM ", capture=django_capture_on_commit_callbacks)
    assert response.status_code == 200
    page = response.content.decode()
    assert "Check your inbox: we sent a link to reader@example.com. Click it to confirm your subscription." in page
    assert page.strip().startswith('<div class="signup-box" id="highlights-signup-box">')
    assert subscriber_state() == [("reader@example.com", "pending", "article")]
    assert len(mail.outbox) == 1
    message = mail.outbox[0]
    assert message.to == ["reader@example.com"]
    assert message.subject == "Confirm your subscription to Bellwether's weekly highlights"
    assert message.from_email == "Bellwether <newsroom@news.example.org>"
    path = confirm_path(message)
    html, mimetype = message.alternatives[0]
    assert mimetype == "text/html"
    assert f'href="{SITE}{path}"' in html

    # Opening the link (as a link scanner would) changes nothing.
    shown = client.get(path)
    assert shown.status_code == 200
    assert 'id="confirm-button"' in shown.content.decode()
    assert subscriber_state() == [("reader@example.com", "pending", "article")]

    done = client.post(path)
    assert done.status_code == 200
    assert "You are subscribed. The weekly highlights will go to <strong>reader@example.com</strong>." in done.content.decode()
    subscriber = Subscriber.objects.get()
    assert subscriber.status == "active"
    assert subscriber.confirmed_at is not None


def test_confirming_twice_changes_nothing(client, django_capture_on_commit_callbacks):
    """A second press of the confirm button answers "already confirmed" and keeps the first confirmation time."""
    subscribe_by_post(client, "twice@example.com", capture=django_capture_on_commit_callbacks)
    path = confirm_path(mail.outbox[0])
    client.post(path)
    first = Subscriber.objects.get().confirmed_at
    again = client.post(path)
    assert again.status_code == 200
    assert "twice@example.com was already confirmed: nothing more to do." in again.content.decode()
    assert Subscriber.objects.get().confirmed_at == first


def test_a_plain_form_post_answers_with_a_whole_page(client, django_capture_on_commit_callbacks):
    """Without htmx the sign-up answers with a full page carrying the same notice."""
    response = subscribe_by_post(client, "plain@example.com", htmx=False, capture=django_capture_on_commit_callbacks)
    page = response.content.decode()
    assert response.status_code == 200
    assert page.startswith("<!doctype html>")
    assert "Check your inbox: we sent a link to plain@example.com." in page
    assert len(mail.outbox) == 1


@pytest.mark.parametrize(
    "address,message",
    [
        ("not-an-address", "Enter a valid email address, such as name@example.com."),
        ("", "Enter your email address."),
        ("a@b", "Enter a valid email address, such as name@example.com."),
        ("x" * 250 + "@example.com", "That address is too long: email addresses have at most 254 characters."),
    ],
)
def test_an_invalid_address_is_refused_and_nothing_is_created(client, django_capture_on_commit_callbacks, address, message):
    """An invalid address gets a clear message (htmx: in the box; plain POST: a 400 page) and no row, no mail."""
    response = subscribe_by_post(client, address, capture=django_capture_on_commit_callbacks)
    assert response.status_code == 200
    assert f'<p class="signup-box__error" role="alert" id="highlights-signup-error">{message}</p>' in response.content.decode()
    plain = subscribe_by_post(client, address, htmx=False, capture=django_capture_on_commit_callbacks)
    assert plain.status_code == 400
    assert message in plain.content.decode()
    assert subscriber_state() == []
    assert mail.outbox == []


def test_subscribing_again_reuses_the_one_row(client, django_capture_on_commit_callbacks, settings):
    """Signing up again, in any case, keeps one row; too soon it is refused, once active the reader is told so; one mail."""
    subscribe_by_post(client, "again@example.com", capture=django_capture_on_commit_callbacks)
    again = subscribe_by_post(client, "AGAIN@Example.com", source="home", capture=django_capture_on_commit_callbacks)
    assert "We sent a confirmation link to again@example.com a short while ago." in again.content.decode()
    # Refused within the resend wait: nothing changed, no second mail.
    assert subscriber_state() == [("again@example.com", "pending", "article")]
    assert len(mail.outbox) == 1
    client.post(confirm_path(mail.outbox[0]))
    response = subscribe_by_post(client, "Again@example.com", source="home", capture=django_capture_on_commit_callbacks)
    assert "again@example.com is already subscribed to the weekly highlights." in response.content.decode()
    assert subscriber_state() == [("again@example.com", "active", "article")]
    assert len(mail.outbox) == 1


@pytest.fixture
def clock(monkeypatch):
    """Freeze the rate limits' clock at a whole hour; move it with ``clock.now += seconds``."""

    class Clock:
        now = 1_800_000_000.0

    monkeypatch.setattr(ratelimit, "clock", lambda: Clock.now)
    return Clock


def test_resending_a_link_waits_longer_each_time(clock, django_capture_on_commit_callbacks, settings):
    """A pending address gets a second link after 60 s, a third after 120 s more, a fourth after 240 s; earlier asks are refused and mail nothing."""
    settings.HIGHLIGHTS_CONFIRM_RESEND_S, settings.HIGHLIGHTS_CONFIRM_RESEND_MAX_S = 60, 24 * 3600
    sent_at = []
    for wait in (0, 60, 120, 240):
        if wait:
            clock.now += wait - 1
            with pytest.raises(subscriptions.TooSoon) as refused, django_capture_on_commit_callbacks(execute=True):
                subscriptions.subscribe(email="slow@example.com", source="home")
            assert refused.value.retry_after_s == 1
            assert str(refused.value) == (
                "We sent a confirmation link to slow@example.com a short while ago. Check your inbox and spam folder; "
                "another link can be sent in 1 second."
            )
            assert len(mail.outbox) == len(sent_at)
            clock.now += 1
        with django_capture_on_commit_callbacks(execute=True):
            assert subscriptions.subscribe(email="slow@example.com", source="home").outcome is Outcome.CONFIRMATION_SENT
        sent_at.append(clock.now)
        assert len(mail.outbox) == len(sent_at)
    assert [m.to for m in mail.outbox] == [["slow@example.com"]] * 4
    with pytest.raises(subscriptions.TooSoon, match="another link can be sent in 8 minutes"):
        subscriptions.subscribe(email="slow@example.com", source="home")
    assert Subscriber.objects.count() == 1


def test_the_wait_is_capped_and_forgotten_after_a_quiet_day(clock, django_capture_on_commit_callbacks, settings):
    """The wait never passes HIGHLIGHTS_CONFIRM_RESEND_MAX_S; a day without a link starts the series again at 60 s."""
    settings.HIGHLIGHTS_CONFIRM_RESEND_S, settings.HIGHLIGHTS_CONFIRM_RESEND_MAX_S = 60, 3600
    for _ in range(8):
        with django_capture_on_commit_callbacks(execute=True):
            subscriptions.subscribe(email="cap@example.com", source="home")
        clock.now += 3600
    assert len(mail.outbox) == 8
    clock.now += 1
    with django_capture_on_commit_callbacks(execute=True):
        subscriptions.subscribe(email="cap@example.com", source="home")
    clock.now += 59
    with pytest.raises(subscriptions.TooSoon, match="another link can be sent in 1 second"):
        subscriptions.subscribe(email="cap@example.com", source="home")


def test_a_refused_resend_is_shown_clearly_and_mails_nothing(client, clock, django_capture_on_commit_callbacks):
    """The box shows why no link went out and when one can; a plain POST gets 429 with Retry-After."""
    subscribe_by_post(client, "inbox@example.com", capture=django_capture_on_commit_callbacks)
    boxed = subscribe_by_post(client, "inbox@example.com", capture=django_capture_on_commit_callbacks)
    assert boxed.status_code == 200
    message = (
        "We sent a confirmation link to inbox@example.com a short while ago. Check your inbox and spam folder; "
        "another link can be sent in 1 minute."
    )
    assert f'<p class="signup-box__error" role="alert" id="highlights-signup-error">{message}</p>' in boxed.content.decode()
    plain = subscribe_by_post(client, "inbox@example.com", htmx=False, capture=django_capture_on_commit_callbacks)
    assert plain.status_code == 429
    assert plain["Retry-After"] == "60"
    assert message in plain.content.decode()
    assert [m.to for m in mail.outbox] == [["inbox@example.com"]]


def test_one_address_cannot_flood_an_inbox_from_the_public_form(client, django_capture_on_commit_callbacks):
    """Fifty sign-ups of one address in a row mail it exactly once."""
    for _ in range(50):
        subscribe_by_post(client, "victim@example.com", capture=django_capture_on_commit_callbacks)
    assert [m.to for m in mail.outbox] == [["victim@example.com"]]


def test_sign_ups_from_one_address_are_limited_per_hour(client, clock, settings, django_capture_on_commit_callbacks):
    """Past HIGHLIGHTS_SIGNUPS_PER_IP_PER_HOUR the form refuses (429, Retry-After) and mails nothing; another IP and the next hour may."""
    settings.HIGHLIGHTS_SIGNUPS_PER_IP_PER_HOUR = 3
    clock.now += 600  # ten minutes into the hour
    for n in range(3):
        assert subscribe_by_post(client, f"n{n}@example.com", htmx=False, capture=django_capture_on_commit_callbacks).status_code == 200
    refused = subscribe_by_post(client, "n3@example.com", htmx=False, capture=django_capture_on_commit_callbacks)
    assert refused.status_code == 429
    assert refused["Retry-After"] == "3000"
    assert "Too many sign-ups from your network: at most 3 an hour. Try again in 50 minutes." in refused.content.decode()
    boxed = subscribe_by_post(client, "n3@example.com", capture=django_capture_on_commit_callbacks)
    assert boxed.status_code == 200
    assert 'id="highlights-signup-error">Too many sign-ups from your network: at most 3 an hour.' in boxed.content.decode()
    assert [m.to[0] for m in mail.outbox] == ["n0@example.com", "n1@example.com", "n2@example.com"]
    assert Subscriber.objects.filter(email="n3@example.com").count() == 0
    with django_capture_on_commit_callbacks(execute=True):
        other = client.post("/highlights/subscribe/", {"email": "n3@example.com"}, REMOTE_ADDR="192.0.2.7")
    assert other.status_code == 200
    clock.now += 3000
    assert subscribe_by_post(client, "n4@example.com", htmx=False, capture=django_capture_on_commit_callbacks).status_code == 200
    assert len(mail.outbox) == 5


def test_confirming_lets_the_address_sign_up_again_at_once(clock, django_capture_on_commit_callbacks):
    """After the owner confirms, a later sign-up (say after a bounce) mails its link without waiting."""
    with django_capture_on_commit_callbacks(execute=True):
        result = subscriptions.subscribe(email="owner@example.com", source="home")
    subscriptions.confirm(signed=confirm_path(mail.outbox[0]).split("/")[-2])
    subscriptions.mark_bounced(subscriber=result.subscriber, reason="550 5.1.1 user unknown")
    with django_capture_on_commit_callbacks(execute=True):
        assert subscriptions.subscribe(email="owner@example.com", source="home").outcome is Outcome.CONFIRMATION_SENT
    assert len(mail.outbox) == 2


def test_no_mail_leaves_before_the_transaction_commits(django_capture_on_commit_callbacks):
    """The confirmation is sent on commit, not inside the sign-up's transaction."""
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        subscriptions.subscribe(email="later@example.com", source="home")
    assert mail.outbox == []
    assert len(callbacks) == 1
    callbacks[0]()
    assert [m.to for m in mail.outbox] == [["later@example.com"]]


def test_a_bounced_address_may_subscribe_again_through_confirmation(django_capture_on_commit_callbacks):
    """A bounced subscriber who signs up again goes back to pending and gets a link; confirming reactivates it."""
    with django_capture_on_commit_callbacks(execute=True):
        result = subscriptions.subscribe(email="gone@example.com", source="home")
    subscriptions.confirm(signed=confirm_path(mail.outbox[0]).split("/")[-2])
    subscriptions.mark_bounced(subscriber=result.subscriber, reason="550 5.1.1 user unknown")
    bounced = Subscriber.objects.get()
    assert (bounced.status, bounced.bounce_reason) == ("bounced", "550 5.1.1 user unknown")
    mail.outbox.clear()
    with django_capture_on_commit_callbacks(execute=True):
        again = subscriptions.subscribe(email="gone@example.com", source="home")
    assert again.outcome is Outcome.CONFIRMATION_SENT
    assert Subscriber.objects.get().status == "pending"
    assert subscriptions.confirm(signed=confirm_path(mail.outbox[0]).split("/")[-2]).outcome is Outcome.CONFIRMED
    assert Subscriber.objects.get().status == "active"


# --- links that must be refused ---------------------------------------------------------------


def test_an_expired_link_is_refused(client, django_capture_on_commit_callbacks, settings):
    """A link older than HIGHLIGHTS_CONFIRM_MAX_AGE_S is refused (410) with a clear message, on GET and POST."""
    subscribe_by_post(client, "late@example.com", capture=django_capture_on_commit_callbacks)
    path = confirm_path(mail.outbox[0])
    settings.HIGHLIGHTS_CONFIRM_MAX_AGE_S = -1
    for response in (client.get(path), client.post(path)):
        assert response.status_code == 410
        assert "This confirmation link has expired. Sign up again and we will send you a new one." in response.content.decode()
    assert Subscriber.objects.get().status == "pending"


def test_a_tampered_link_is_refused(client, django_capture_on_commit_callbacks):
    """A link whose token or signature was changed is refused (400) and confirms nobody."""
    subscribe_by_post(client, "tamper@example.com", capture=django_capture_on_commit_callbacks)
    signed = confirm_path(mail.outbox[0]).split("/")[-2]
    token, stamp, signature = signed.split(":")
    other = Subscriber.objects.create(email="victim@example.com")
    forged = [f"{other.token}:{stamp}:{signature}", f"{token}:{stamp}:{signature[:-2]}xx", token, "garbage"]
    for value in forged:
        response = client.post(f"/highlights/confirm/{value}/")
        assert response.status_code == 400, value
        assert "This confirmation link is not valid" in response.content.decode()
    assert sorted(Subscriber.objects.values_list("email", "status")) == [("tamper@example.com", "pending"), ("victim@example.com", "pending")]


def test_a_link_signed_with_another_salt_is_refused():
    """A value signed for another purpose with the same secret does not confirm."""
    subscriber = Subscriber.objects.create(email="salt@example.com")
    other = signing.TimestampSigner(salt="some.other.purpose").sign(subscriber.token)
    with pytest.raises(subscriptions.InvalidLink):
        subscriptions.confirm(signed=other)
    assert Subscriber.objects.get().status == "pending"


def test_a_link_for_an_unsubscribed_address_is_refused(django_capture_on_commit_callbacks):
    """Unsubscribing before confirming makes the old link useless."""
    with django_capture_on_commit_callbacks(execute=True):
        result = subscriptions.subscribe(email="changed@example.com", source="home")
    subscriptions.unsubscribe(token=result.subscriber.token)
    with pytest.raises(subscriptions.InvalidLink, match="This subscription was stopped after the link was sent"):
        subscriptions.confirm(signed=confirm_path(mail.outbox[0]).split("/")[-2])
    assert Subscriber.objects.get().status == "unsubscribed"


# --- unsubscribing ----------------------------------------------------------------------------


@pytest.fixture
def active():
    return Subscriber.objects.create(email="active@example.com", status=Subscriber.Status.ACTIVE)


def test_one_click_post_unsubscribes_without_session_or_csrf(active):
    """The RFC 8058 POST (body List-Unsubscribe=One-Click, no cookie, no CSRF token) unsubscribes, and again is harmless."""
    client = Client(enforce_csrf_checks=True)
    url = f"/highlights/unsubscribe/{active.token}/"
    for _ in range(2):
        response = client.post(url, "List-Unsubscribe=One-Click", content_type="application/x-www-form-urlencoded")
        assert response.status_code == 200
        assert response.content == b"Unsubscribed.\n"
        active.refresh_from_db()
        assert active.status == "unsubscribed"
    first = active.unsubscribed_at
    client.post(url, "List-Unsubscribe=One-Click", content_type="application/x-www-form-urlencoded")
    active.refresh_from_db()
    assert active.unsubscribed_at == first


def test_one_click_post_as_multipart_works(active):
    """RFC 8058 allows multipart/form-data too."""
    response = Client(enforce_csrf_checks=True).post(f"/highlights/unsubscribe/{active.token}/", {"List-Unsubscribe": "One-Click"})
    assert response.status_code == 200
    active.refresh_from_db()
    assert active.status == "unsubscribed"


def test_get_shows_a_button_and_does_not_unsubscribe(client, active):
    """Opening the unsubscribe link shows a one-click button; only pressing it (a plain POST) unsubscribes."""
    url = f"/highlights/unsubscribe/{active.token}/"
    response = client.get(url)
    assert response.status_code == 200
    page = response.content.decode()
    assert f'<form method="post" action="{url}">' in page
    assert 'id="unsubscribe-button"' in page
    active.refresh_from_db()
    assert active.status == "active"
    pressed = Client(enforce_csrf_checks=True).post(url)
    assert pressed.status_code == 200
    assert "active@example.com will get no more weekly highlights." in pressed.content.decode()
    active.refresh_from_db()
    assert active.status == "unsubscribed"
    assert 'id="unsubscribe-done"' in client.get(url).content.decode()


def test_an_unknown_unsubscribe_token_is_a_404(client, active):
    """A made-up token unsubscribes nobody."""
    assert client.get("/highlights/unsubscribe/not-a-token/").status_code == 404
    assert Client().post("/highlights/unsubscribe/not-a-token/", {"List-Unsubscribe": "One-Click"}).status_code == 404
    active.refresh_from_db()
    assert active.status == "active"


def test_a_bounced_address_stays_bounced_when_unsubscribed(active):
    """Unsubscribing a bounced address reports it as already stopped and keeps the bounce."""
    subscriptions.mark_bounced(subscriber=active, reason="550 no such user")
    result = subscriptions.unsubscribe(token=active.token)
    assert result.outcome is Outcome.ALREADY_UNSUBSCRIBED
    assert Subscriber.objects.get().status == "bounced"


# --- readers with an account --------------------------------------------------------------------


@pytest.fixture
def reader(db):
    user = create_user(username="reader", email="reader@example.com", password="lantern-harbour-71")
    EmailAddress.objects.create(user=user, email="reader@example.com", verified=True, primary=True)
    return user


def test_a_verified_account_address_is_active_at_once(reader, django_capture_on_commit_callbacks):
    """A signed-in reader subscribing their verified address needs no confirmation email."""
    with django_capture_on_commit_callbacks(execute=True):
        result = subscriptions.subscribe(email="Reader@example.com", source="account", user=reader)
    assert result.outcome is Outcome.ACTIVATED
    assert list(Subscriber.objects.values_list("email", "status", "user__username")) == [("reader@example.com", "active", "reader")]
    assert mail.outbox == []


def test_an_unverified_address_of_a_signed_in_reader_needs_confirmation(reader, django_capture_on_commit_callbacks):
    """Another address typed by a signed-in reader is confirmed by email, and not linked to the account."""
    with django_capture_on_commit_callbacks(execute=True):
        result = subscriptions.subscribe(email="someone-else@example.com", source="account", user=reader)
    assert result.outcome is Outcome.CONFIRMATION_SENT
    assert list(Subscriber.objects.values_list("email", "status", "user")) == [("someone-else@example.com", "pending", None)]
    assert [m.to for m in mail.outbox] == [["someone-else@example.com"]]


def test_the_account_page_switches_the_subscriber(reader, django_capture_on_commit_callbacks):
    """The account page's box subscribes the reader's address at once and stops it again; the row is the truth."""
    client = Client()
    client.force_login(reader)
    page = client.get("/accounts/").content.decode()
    assert 'id="highlights-signup"' in page
    assert 'hx-get="/highlights/signup-box/?source=account"' in page
    assert 'name="weekly_highlights"' not in page

    box = client.get("/highlights/signup-box/?source=account").content.decode()
    assert 'value="reader@example.com"' in box
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post("/highlights/subscribe/", {"email": "reader@example.com", "source": "account"}, HTTP_HX_REQUEST="true")
    assert "Done: the weekly highlights will go to reader@example.com." in response.content.decode()
    assert list(Subscriber.objects.values_list("email", "status", "source", "user__username")) == [("reader@example.com", "active", "account", "reader")]
    assert mail.outbox == []

    box = client.get("/highlights/signup-box/?source=account").content.decode()
    token = Subscriber.objects.get().token
    assert f'hx-post="/highlights/unsubscribe/{token}/"' in box
    assert "Stop the weekly highlights" in box
    stopped = client.post(f"/highlights/unsubscribe/{token}/", HTTP_HX_REQUEST="true")
    assert "You will get no more weekly highlights." in stopped.content.decode()
    assert Subscriber.objects.get().status == "unsubscribed"
    box = client.get("/highlights/signup-box/?source=account").content.decode()
    assert ">Subscribe</button>" in box


@pytest.mark.parametrize("status", ["active", "pending"])
def test_the_box_never_shows_the_subscription_of_an_unverified_address(status):
    """Someone who signs up with another person's address sees neither that subscription nor its unsubscribe token."""
    victim = Subscriber.objects.create(email="victim@example.com", status=status)
    intruder = create_user(username="intruder", email="victim@example.com", password="lantern-harbour-71")
    address = EmailAddress.objects.create(user=intruder, email="Victim@example.com", verified=False, primary=True)
    client = Client()
    client.force_login(intruder)
    box = client.get("/highlights/signup-box/?source=account").content.decode()
    assert victim.token not in box
    assert "/highlights/unsubscribe/" not in box
    assert "Stop the weekly highlights" not in box
    assert 'id="highlights-signup-pending"' not in box
    assert ">Subscribe</button>" in box
    assert subscriptions.subscription_for_user(user=intruder) is None
    # Once the address is confirmed it is theirs, and the box shows its subscription.
    address.verified = True
    address.save()
    assert subscriptions.subscription_for_user(user=intruder) == victim


def test_the_box_shows_the_subscription_of_a_verified_address_that_is_not_primary(reader):
    """A verified second address's subscription is shown when the primary one has none; an unverified one's never."""
    other = EmailAddress.objects.create(user=reader, email="work@example.com", verified=True, primary=False)
    EmailAddress.objects.create(user=reader, email="old@example.com", verified=False, primary=False)
    Subscriber.objects.create(email="old@example.com", status="active")
    work = Subscriber.objects.create(email=other.email, status="active")
    assert subscriptions.subscription_for_user(user=reader) == work
    primary = Subscriber.objects.create(email="reader@example.com", status="active")
    assert subscriptions.subscription_for_user(user=reader) == primary


# --- a real SMTP server -------------------------------------------------------------------------


class _Sink:
    def __init__(self) -> None:
        self.messages: list[tuple[str, list[str], bytes]] = []

    async def handle_DATA(self, server, session, envelope):  # noqa: N802 - aiosmtpd's hook name
        self.messages.append((envelope.mail_from, list(envelope.rcpt_tos), envelope.original_content or envelope.content))
        return "250 OK"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def smtp_server(settings):
    sink = _Sink()
    controller = Controller(sink, hostname="127.0.0.1", port=_free_port())
    controller.start()
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT = "127.0.0.1", controller.port
    settings.EMAIL_HOST_USER = settings.EMAIL_HOST_PASSWORD = ""
    settings.EMAIL_USE_TLS = False
    yield sink
    controller.stop()


def test_the_confirmation_arrives_through_real_smtp_with_a_working_link(smtp_server, client, django_capture_on_commit_callbacks):
    """Over SMTP the confirmation parses with the email package, has text and HTML parts, and its link confirms."""
    subscribe_by_post(client, "smtp@example.com", capture=django_capture_on_commit_callbacks)
    assert len(smtp_server.messages) == 1
    mail_from, rcpt_tos, raw = smtp_server.messages[0]
    assert (mail_from, rcpt_tos) == ("newsroom@news.example.org", ["smtp@example.com"])
    message = email.message_from_bytes(raw, policy=default_policy)
    assert message["To"] == "smtp@example.com"
    assert message["Subject"] == "Confirm your subscription to Bellwether's weekly highlights"
    assert message["From"] == "Bellwether <newsroom@news.example.org>"
    assert message["Message-ID"] and message["Date"]
    text = message.get_body(preferencelist=("plain",)).get_content()
    html = message.get_body(preferencelist=("html",)).get_content()
    path = LINK.search(text).group(1)
    assert f'href="{SITE}{path}"' in html
    assert urlsplit(SITE + path).path == path
    assert client.post(path).status_code == 200
    assert Subscriber.objects.get().status == "active"
