"""Wagtail's editorial tools work for articles: drafts, revisions, preview, scheduling, moderation."""

from __future__ import annotations

import datetime as dt
import time

import pytest
from django.contrib.auth.models import Group
from django.core.management import call_command
from django.urls import reverse
from django.utils import timezone
from wagtail.models import Workflow
from wagtail.test.utils.form_data import nested_form_data, rich_text, streamfield

from bellwether.news.models import ArticlePage, SectionPage
from bellwether.news.services import ensure_demo_editor, ensure_section_path

from .factories import make_article

pytestmark = pytest.mark.django_db


@pytest.fixture
def section(home) -> SectionPage:
    return ensure_section_path(path=("Politics", "Diplomacy"), home=home)


@pytest.fixture
def editor(client, home, django_user_model):
    """The demo editor: may write and submit, may not publish alone."""
    username, _ = ensure_demo_editor()
    user = django_user_model.objects.get(username=username)
    user.groups.remove(Group.objects.get(name="Moderators"))
    client.force_login(user)
    return user


@pytest.fixture
def moderator(django_user_model):
    user = django_user_model.objects.create_user("mod", password="x-long-password-1")
    user.groups.add(Group.objects.get(name="Moderators"))
    return user


def _article_form(title: str, **extra) -> dict:
    return nested_form_data(
        {
            "title": title,
            "slug": "talks-resume",
            "dek": "Negotiators meet again.",
            "body": streamfield([("heading", "Background"), ("paragraph", rich_text("<p>They met on Monday.</p>"))]),
            "tags": "diplomacy, fisheries",
            "comments": {"TOTAL_FORMS": 0, "INITIAL_FORMS": 0, "MIN_NUM_FORMS": 0, "MAX_NUM_FORMS": 1000},
            **extra,
        }
    )


def test_editor_saves_a_draft_that_readers_cannot_see(client, editor, section):
    """A draft created in the admin is stored with a revision but is not live."""
    url = reverse("wagtailadmin_pages:add", args=["news", "articlepage", section.pk])
    response = client.post(url, _article_form("Talks resume"))
    assert response.status_code == 302, response.content.decode()[:2000]
    article = ArticlePage.objects.get(slug="talks-resume")
    assert article.live is False
    assert article.revisions.count() == 1
    client.logout()
    assert client.get("/politics/diplomacy/talks-resume/").status_code == 404


def test_editor_previews_a_draft(client, editor, section):
    """The preview renders the article template with the unsaved content."""
    article = make_article(headline="Original headline", section_path=("Politics", "Diplomacy"))
    preview = reverse("wagtailadmin_pages:preview_on_edit", args=[article.pk])
    data = _article_form("Preview headline")
    data["slug"] = article.slug
    assert client.post(preview, data).json()["is_valid"] is True
    html = client.get(preview).content.decode()
    assert "Preview headline" in html and "They met on Monday." in html


def test_revisions_keep_history_and_can_be_reverted(section):
    """Every publish is a revision; an older revision can be published again."""
    article = make_article(headline="First headline", section_path=("Politics", "Diplomacy"))
    first = article.latest_revision
    article.title = "Second headline"
    article.save_revision().publish()
    assert ArticlePage.objects.get(pk=article.pk).title == "Second headline"
    first.publish()
    assert ArticlePage.objects.get(pk=article.pk).title == "First headline"
    assert article.revisions.count() == 2


def test_scheduled_publishing(section):
    """An article with a future go-live time is published by `publish_scheduled`, and stamped with its date."""
    article = make_article(headline="Embargoed", section_path=("Politics", "Diplomacy"))
    article.unpublish()
    article = ArticlePage.objects.get(pk=article.pk)
    article.published_at = None
    article.go_live_at = timezone.now() + dt.timedelta(seconds=1)
    article.save_revision().publish()  # with go_live_at in the future this only schedules
    call_command("publish_scheduled")
    assert ArticlePage.objects.get(pk=article.pk).live is False
    time.sleep(1.1)
    call_command("publish_scheduled")
    published = ArticlePage.objects.get(pk=article.pk)
    assert published.live is True
    assert published.published_at is not None


def test_moderation_workflow_publishes_on_approval(editor, moderator, section):
    """An editor submits to the moderators' workflow; approval publishes the article."""
    article = make_article(headline="Needs approval", section_path=("Politics", "Diplomacy"))
    article.unpublish()
    article = ArticlePage.objects.get(pk=article.pk)
    article.title = "Approved headline"
    article.save_revision(user=editor)
    workflow = article.get_workflow()
    assert workflow == Workflow.objects.get(name="Moderators approval")
    state = workflow.start(article, editor)
    assert ArticlePage.objects.get(pk=article.pk).live is False
    task_state = state.current_task_state
    task_state.task.specific.on_action(task_state, moderator, "approve")
    published = ArticlePage.objects.get(pk=article.pk)
    assert published.live is True
    assert published.title == "Approved headline"


def test_editor_alone_cannot_publish(client, editor, section):
    """Without moderator rights the publish action does not make the page live."""
    url = reverse("wagtailadmin_pages:add", args=["news", "articlepage", section.pk])
    data = _article_form("Try to publish")
    data["action-publish"] = "action-publish"
    client.post(url, data)
    article = ArticlePage.objects.get(slug="talks-resume")
    assert article.live is False


def test_articles_only_live_under_sections(home):
    """The page tree allows articles under sections only, sections under home or sections."""
    from bellwether.news.models import HomePage

    assert ArticlePage.can_create_at(HomePage.objects.get()) is False
    assert ArticlePage.allowed_parent_page_models() == [SectionPage]
    assert set(SectionPage.allowed_parent_page_models()) == {HomePage, SectionPage}
