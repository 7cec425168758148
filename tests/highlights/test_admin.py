"""The weekly highlights in the Wagtail admin: build, pin and drop, intro, preview, send, subscribers, who may."""

from __future__ import annotations

import datetime as dt

import pytest
from django.core import mail
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from bellwether.accounts.services import create_user
from bellwether.highlights import admin_views
from bellwether.highlights.models import Delivery, Issue, Subscriber
from tests.news.factories import make_article

pytestmark = pytest.mark.django_db
DAYS = dt.timedelta(days=1)


def url(name: str, *args) -> str:
    return reverse(f"highlights_admin:{name}", args=args)


def keys(issue: Issue, section: str = "headlines") -> list[str]:
    issue.refresh_from_db()
    return [item["key"] for item in issue.content[section]]


@pytest.fixture(autouse=True)
def media(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path / "media"


@pytest.fixture
def editor():
    return create_user(username="edna", roles=("editor",))


@pytest.fixture
def editor_client(editor):
    client = Client()
    client.force_login(editor)
    return client


@pytest.fixture
def resolver_client():
    client = Client()
    client.force_login(create_user(username="ruth", roles=("resolver",)))
    return client


@pytest.fixture
def stories(home):
    """Three stories of this week, newest first: built issues list them in this order."""
    now = timezone.now()
    return [
        make_article(headline="Harbour reopens", published_at=now - 1 * DAYS),
        make_article(headline="Ferry strike called off", published_at=now - 2 * DAYS),
        make_article(headline="Bridge vote delayed", published_at=now - 3 * DAYS),
    ]


@pytest.fixture
def built(editor_client, stories) -> Issue:
    editor_client.post(url("build"))
    return Issue.objects.get()


def subscribe(email: str, status=Subscriber.Status.ACTIVE) -> Subscriber:
    return Subscriber.objects.create(email=email, status=status, source="admin")


# --- building ---------------------------------------------------------------


def test_editor_builds_an_issue_from_the_admin(editor_client, stories):
    """The build button freezes a new issue with this week's stories and opens its page."""
    assert editor_client.get(url("index")).status_code == 200
    response = editor_client.post(url("build"))
    issue = Issue.objects.get()
    assert response.status_code == 302
    assert response["Location"] == url("edit", issue.number)
    assert issue.number == 1
    assert issue.status == Issue.Status.BUILT
    assert keys(issue) == [f"article:{a.pk}" for a in stories]
    page = editor_client.get(url("edit", 1)).content.decode()
    for article in stories:
        assert f'name="pin" value="article:{article.pk}"' in page
        assert f'name="drop" value="article:{article.pk}"' in page


def test_build_again_rebuilds_the_unsent_issue_instead_of_adding_one(editor_client, built):
    """A second click rebuilds the newest unsent issue: still one issue, number 1."""
    editor_client.post(url("build"))
    assert list(Issue.objects.values_list("number", "status")) == [(1, "built")]


def test_index_lists_issues_with_deliveries_sent_over_total(editor_client, built):
    """Each issue row shows its status and how many of its deliveries went out."""
    a, b = subscribe("a@example.org"), subscribe("b@example.org")
    Delivery.objects.create(issue=built, subscriber=a, status=Delivery.Status.SENT)
    Delivery.objects.create(issue=built, subscriber=b, status=Delivery.Status.PENDING)
    html = editor_client.get(url("index")).content.decode()
    row = html[html.index('id="issue-1"'):]
    row = row[: row.index("</tr>")]
    assert "Built" in row
    assert "1 / 2" in row


def test_index_without_issues_explains_how_to_start(editor_client):
    """With no issue yet the page says how the first one comes about."""
    html = editor_client.get(url("index")).content.decode()
    assert 'id="highlights-no-issues"' in html
    assert "The button starts issue #1." in html


# --- editing ------------------------------------------------------------------


def test_pins_and_drops_change_the_frozen_order_exactly(editor_client, built, stories):
    """Pinned items go first in pin order, dropped ones vanish; the rest keep their order."""
    newest, middle, oldest = (f"article:{a.pk}" for a in stories)
    response = editor_client.post(url("edit", 1), {"intro": "", "pin": [oldest], "drop": [newest]})
    assert response.status_code == 302
    built.refresh_from_db()
    assert keys(built) == [oldest, middle]
    assert built.pinned == [oldest]
    assert built.dropped == [newest]

    # A second pin goes after the first, whatever the page order; un-dropping restores the item.
    editor_client.post(url("edit", 1), {"intro": "", "pin": [middle, oldest]})
    built.refresh_from_db()
    assert built.pinned == [oldest, middle]
    assert built.dropped == []
    assert keys(built) == [oldest, middle, newest]


def test_dropped_item_stays_listed_so_it_can_be_restored(editor_client, built, stories):
    """A dropped story is no longer in the issue but keeps its row, with Drop ticked."""
    dropped = f"article:{stories[0].pk}"
    editor_client.post(url("edit", 1), {"intro": "", "drop": [dropped]})
    html = editor_client.get(url("edit", 1)).content.decode()
    assert f'<input type="checkbox" name="drop" value="{dropped}" checked>' in html
    assert "Harbour reopens" in html
    assert "Left out" in html


def test_pin_and_drop_of_one_item_is_refused(editor_client, built, stories):
    """Pinning and dropping the same key is an error; the issue is not rebuilt."""
    key = f"article:{stories[1].pk}"
    built_at = built.built_at
    response = editor_client.post(url("edit", 1), {"intro": "Note", "pin": [key], "drop": [key]})
    assert response.status_code == 400
    assert f"An item cannot be both pinned and dropped: {key}." in response.content.decode()
    built.refresh_from_db()
    assert (built.intro, built.pinned, built.dropped, built.built_at) == ("", [], [], built_at)


def test_intro_is_saved(editor_client, built):
    """The intro from the textarea is stored on the issue (Windows line ends normalised)."""
    editor_client.post(url("edit", 1), {"intro": "A busy week.\r\n\r\nRead on."})
    built.refresh_from_db()
    assert built.intro == "A busy week.\n\nRead on."
    assert "A busy week." in editor_client.get(url("edit", 1)).content.decode()


def test_sent_issue_is_read_only(editor_client, built):
    """A sent issue shows no form and a POST changes nothing."""
    Issue.objects.filter(pk=built.pk).update(status=Issue.Status.SENT, intro="Final words")
    html = editor_client.get(url("edit", 1)).content.decode()
    assert 'id="issue-read-only"' in html
    assert 'id="issue-edit-form"' not in html
    assert 'name="pin"' not in html
    response = editor_client.post(url("edit", 1), {"intro": "Changed"})
    assert response.status_code == 302
    built.refresh_from_db()
    assert built.intro == "Final words"


# --- preview ------------------------------------------------------------------


def test_preview_returns_the_email_html_with_the_intro(editor_client, built):
    """The preview frame's URL answers with the rendered email, framable by the admin only."""
    editor_client.post(url("edit", 1), {"intro": "Storms and ferries this week."})
    page = editor_client.get(url("preview", 1)).content.decode()
    assert f'src="{url("preview_html", 1)}"' in page
    response = editor_client.get(url("preview_html", 1))
    assert response.status_code == 200
    assert response["Content-Type"] == "text/html; charset=utf-8"
    assert response["X-Frame-Options"] == "SAMEORIGIN"
    html = response.content.decode()
    assert html.lstrip().lower().startswith("<!doctype html")
    assert "Storms and ferries this week." in html
    assert "Harbour reopens" in html


# --- sending ------------------------------------------------------------------


def test_send_confirmation_shows_the_count_and_confirm_sends(editor_client, built):
    """The confirmation counts active subscribers only; confirming creates their deliveries and mails them."""
    subscribe("ann@example.org")
    subscribe("bo@example.org")
    subscribe("gone@example.org", Subscriber.Status.UNSUBSCRIBED)
    subscribe("new@example.org", Subscriber.Status.PENDING)
    page = editor_client.get(url("send", 1)).content.decode()
    assert '<strong id="send-count">2</strong> active subscribers' in page
    assert Delivery.objects.count() == 0

    response = editor_client.post(url("send", 1))
    assert response.status_code == 302
    assert response["Location"] == url("edit", 1)
    assert sorted(Delivery.objects.values_list("subscriber__email", "status")) == [
        ("ann@example.org", "sent"), ("bo@example.org", "sent"),
    ]
    assert sorted(m.to[0] for m in mail.outbox) == ["ann@example.org", "bo@example.org"]
    built.refresh_from_db()
    assert built.status == Issue.Status.SENT
    # Sending again finds nothing to send and mails nobody twice.
    editor_client.post(url("send", 1))
    assert len(mail.outbox) == 2


def test_send_hands_at_most_the_admin_limit_per_click(editor_client, built, monkeypatch):
    """One POST sends at most ADMIN_SEND_LIMIT; "Continue sending" sends the rest."""
    monkeypatch.setattr(admin_views, "ADMIN_SEND_LIMIT", 2)
    for n in range(3):
        subscribe(f"reader{n}@example.org")
    editor_client.post(url("send", 1))
    assert len(mail.outbox) == 2
    built.refresh_from_db()
    assert built.status == Issue.Status.SENDING
    assert '<strong id="send-count">1</strong> message still due' in editor_client.get(url("send", 1)).content.decode()
    editor_client.post(url("send", 1))
    assert len(mail.outbox) == 3
    built.refresh_from_db()
    assert built.status == Issue.Status.SENT


# --- subscribers --------------------------------------------------------------


def test_subscribers_listing_filters_by_status_and_searches(editor_client):
    """The listing filters by status and searches the address."""
    subscribe("ann@example.org")
    subscribe("bob@example.net")
    subscribe("cara@example.org", Subscriber.Status.BOUNCED)
    html = editor_client.get(url("subscribers")).content.decode()
    assert [e in html for e in ("ann@example.org", "bob@example.net", "cara@example.org")] == [True, True, True]
    html = editor_client.get(url("subscribers"), {"status": "active"}).content.decode()
    assert ("ann@example.org" in html, "bob@example.net" in html, "cara@example.org" in html) == (True, True, False)
    html = editor_client.get(url("subscribers"), {"q": "EXAMPLE.ORG"}).content.decode()
    assert ("ann@example.org" in html, "bob@example.net" in html, "cara@example.org" in html) == (True, False, True)
    html = editor_client.get(url("subscribers"), {"q": "nobody"}).content.decode()
    assert "No subscribers match this search." in html


# --- who may --------------------------------------------------------------------


@pytest.mark.parametrize("name,args", [
    ("index", ()), ("subscribers", ()), ("edit", (1,)), ("preview", (1,)), ("preview_html", (1,)), ("send", (1,)),
])
def test_non_editor_gets_403(resolver_client, built, name, args):
    """Admin users who are not editors are refused every page."""
    response = resolver_client.get(url(name, *args))
    assert response.status_code == 403
    assert "Only editors can manage the weekly highlights." in response.content.decode()


def test_non_editor_cannot_build_or_send(resolver_client, built):
    """A non-editor's POSTs are refused and change nothing."""
    subscribe("ann@example.org")
    assert resolver_client.post(url("build")).status_code == 403
    assert resolver_client.post(url("send", 1)).status_code == 403
    assert Issue.objects.count() == 1
    assert Delivery.objects.count() == 0


def test_anonymous_is_sent_to_the_login(stories):
    """Without a login the admin asks for one."""
    response = Client().get(url("index"))
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("wagtailadmin_login"))


def test_menu_shows_for_editors_only(editor_client, resolver_client):
    """The "Weekly highlights" menu appears in the admin for editors, not for other admin users."""
    assert "Weekly highlights" in editor_client.get(reverse("wagtailadmin_home")).content.decode()
    assert "Weekly highlights" not in resolver_client.get(reverse("wagtailadmin_home")).content.decode()


def test_csrf_is_enforced_on_every_post(editor, built, stories):
    """Without a CSRF token the build, save and send POSTs are refused and change nothing."""
    client = Client(enforce_csrf_checks=True)
    client.force_login(editor)
    subscribe("ann@example.org")
    assert client.post(url("build")).status_code == 403
    assert client.post(url("edit", 1), {"intro": "Sneaky", "drop": [f"article:{stories[0].pk}"]}).status_code == 403
    assert client.post(url("send", 1)).status_code == 403
    built.refresh_from_db()
    assert (Issue.objects.count(), built.intro, built.dropped, built.status) == (1, "", [], "built")
    assert Delivery.objects.count() == 0
    assert mail.outbox == []


def test_a_send_stopped_by_the_server_says_why_and_bounces_nobody(editor_client, built, smtp):
    """A server refusing the message at DATA stops the run: the editor reads the reason, every reader stays subscribed."""
    smtp.data_reply = "554 5.6.0 Message refused"
    for n in range(3):
        subscribe(f"reader{n}@example.org")
    response = editor_client.post(url("send", 1), follow=True)
    shown = [str(m) for m in response.context["messages"] if str(m).startswith("Issue #1")]
    assert len(shown) == 1 and "The send stopped:" in shown[0] and "554" in shown[0], shown
    assert set(Subscriber.objects.values_list("status", flat=True)) == {Subscriber.Status.ACTIVE}
    assert smtp.messages == []
