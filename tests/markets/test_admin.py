"""Markets in the Wagtail admin: create, edit, link from both sides, resolve and cancel.

Everything goes through Django's test client and the real admin URLs, as
an editor, a resolver, an editor without the resolver role, and a reader.
"""

from __future__ import annotations

import datetime as dt
from html.parser import HTMLParser

import pytest
from django.conf import settings
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from bellwether.accounts.services import create_user
from bellwether.ledger.models import Account, Transfer
from bellwether.ledger.services import get_treasury
from bellwether.markets import lmsr, services
from bellwether.markets.audit import run_audit
from bellwether.markets.models import Market, MarketArticle, Position
from bellwether.markets.services import TradeRequest
from tests.news.factories import make_article

pytestmark = pytest.mark.django_db

M = lmsr.MICRO
START = settings.STARTING_BALANCE_MICRO
ADMIN_LOGIN = "/admin/login/"


def url(name: str, *args) -> str:
    return reverse(f"markets_admin:{name}", args=args)


def in_a_week() -> str:
    return timezone.localtime(timezone.now() + dt.timedelta(days=7)).strftime("%Y-%m-%d %H:%M")


def create_data(**overrides) -> dict:
    data = {
        "question": "Will the harbour reopen by June?",
        "kind": "binary",
        "outcomes": "",
        "liquidity_b": "100",
        "close_at": in_a_week(),
        "description": "The harbour has been shut since the storm.",
        "resolution_criteria": "Resolves YES if the port authority reopens it to traffic.",
        "start": "open",
        "article_1": "",
        "article_2": "",
        "article_3": "",
    }
    data.update(overrides)
    return data


def new_market(**kwargs) -> Market:
    defaults = dict(question="Will the talks yield progress?", liquidity_b_micro=100 * M, close_at=timezone.now() + dt.timedelta(days=7))
    defaults.update(kwargs)
    return services.create_market(**defaults)


def buy(user, market, outcome, shares):
    return services.place_trade(user=user, market_slug=market.slug, request=TradeRequest(outcome=outcome, side="buy", shares_micro=shares))


def sell(user, market, outcome, shares):
    return services.place_trade(user=user, market_slug=market.slug, request=TradeRequest(outcome=outcome, side="sell", shares_micro=shares))


def balance(user) -> int:
    return Account.objects.get(user=user).balance_micro


def pool_balance(market) -> int:
    return Account.objects.get(pk=market.pool_id).balance_micro


class _FormFields(HTMLParser):
    """Collect the named inputs and textareas inside the form with a given id."""

    def __init__(self, form_id: str):
        super().__init__()
        self.form_id, self.inside, self.fields, self._textarea = form_id, False, {}, None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "form" and attrs.get("id") == self.form_id:
            self.inside = True
        elif self.inside and tag == "input" and attrs.get("name") and attrs.get("type") != "submit":
            self.fields[attrs["name"]] = attrs.get("value") or ""
        elif self.inside and tag == "textarea":
            self._textarea = attrs["name"]
            self.fields[self._textarea] = ""

    def handle_data(self, data):
        if self._textarea:
            self.fields[self._textarea] += data

    def handle_endtag(self, tag):
        if tag == "textarea":
            self._textarea = None
        elif tag == "form":
            self.inside = False


def form_fields(response, form_id: str) -> dict:
    """Return what the browser would submit from the form ``form_id`` on the page."""
    parser = _FormFields(form_id)
    parser.feed(response.content.decode())
    fields = parser.fields
    fields.pop("csrfmiddlewaretoken", None)
    # A textarea's first newline belongs to the markup, not the value.
    return {k: v[1:] if v.startswith("\n") else v for k, v in fields.items()}


@pytest.fixture
def editor():
    return create_user(username="edna", roles=("editor",))


@pytest.fixture
def resolver():
    return create_user(username="ruth", roles=("resolver",))


@pytest.fixture
def editor_client(client, editor):
    client.force_login(editor)
    return client


@pytest.fixture
def resolver_client(resolver):
    client = Client()
    client.force_login(resolver)
    return client


@pytest.fixture
def alice():
    return create_user(username="alice")


@pytest.fixture
def bob():
    return create_user(username="bob")


@pytest.fixture
def article():
    return make_article(headline="Harbour shut after the storm")


# --- creating ----------------------------------------------------------------


def test_editor_creates_a_binary_market_linked_to_an_article(editor_client, editor, article):
    """The form creates a yes/no market through the service: pool funded from the treasury, article linked, audit clean."""
    treasury_before = get_treasury().balance_micro
    response = editor_client.post(url("add"), create_data(article_1=str(article.pk)))
    market = Market.objects.get()
    assert response.status_code == 302 and response["Location"] == url("edit", market.pk)
    assert (market.question, market.kind, market.status, market.created_by) == ("Will the harbour reopen by June?", "binary", "open", editor)
    assert [o.slug for o in market.outcomes.order_by("position")] == ["yes", "no"]
    assert market.liquidity_b_micro == 100 * M
    assert market.resolution_criteria == "Resolves YES if the port authority reopens it to traffic."
    subsidy = lmsr.max_loss_micro(100 * M, 2)
    assert pool_balance(market) == subsidy
    assert get_treasury().balance_micro == treasury_before - subsidy
    assert Transfer.objects.filter(kind="subsidy", credit_id=market.pool_id, amount_micro=subsidy).count() == 1
    assert list(MarketArticle.objects.values_list("market_id", "article_id")) == [(market.pk, article.pk)]
    assert run_audit().problems == []


def test_editor_creates_a_multiple_choice_draft(editor_client):
    """One outcome per line (blank lines ignored), b as a decimal, started as a draft."""
    response = editor_client.post(url("add"), create_data(
        question="Who wins the mayoral race?", kind="multiple", outcomes="Alvarez\n\n  Brandt \nChen", liquidity_b="250.5", start="draft",
    ))
    assert response.status_code == 302
    market = Market.objects.get()
    assert [(o.slug, o.name) for o in market.outcomes.order_by("position")] == [("alvarez", "Alvarez"), ("brandt", "Brandt"), ("chen", "Chen")]
    assert (market.kind, market.status, market.liquidity_b_micro) == ("multiple", "draft", 250_500_000)
    assert pool_balance(market) == lmsr.max_loss_micro(250_500_000, 3)
    assert run_audit().problems == []


@pytest.mark.parametrize(
    "overrides, field, message",
    [
        (dict(close_at="2020-01-01 12:00"), "close_at", "Choose a close time in the future."),
        (dict(liquidity_b="0"), "liquidity_b", "Liquidity b must be greater than zero."),
        (dict(liquidity_b="-5"), "liquidity_b", "Liquidity b must be greater than zero."),
        (dict(liquidity_b="lots"), "liquidity_b", "Enter a number."),
        (dict(liquidity_b="2000000000"), "liquidity_b", "Liquidity b can be at most 1,000,000,000 credits."),
        (dict(kind="multiple", outcomes="Alpha\nalpha"), "outcomes", "The outcomes 'Alpha' and 'alpha' are the same."),
        (dict(kind="multiple", outcomes="Only one"), "outcomes", "Give 2 to 50 outcomes, one per line (got 1)."),
        (dict(kind="multiple", outcomes="Alpha\n" + "x" * 201), "outcomes", "The outcome 'xxxxxxxxxxxxxxxxxxxxxxxxxxxxxx'... is longer than 200 characters."),
        (dict(question=""), "question", "This field is required."),
        (dict(start="closed"), "start", "Select a valid choice. closed is not one of the available choices."),
    ],
)
def test_invalid_market_forms_create_nothing(editor_client, overrides, field, message):
    """Each mistake is shown on its field and no market, pool or transfer is written."""
    transfers = Transfer.objects.count()
    response = editor_client.post(url("add"), create_data(**overrides))
    assert response.status_code == 200
    assert response.context["form"].errors[field] == [message]
    assert Market.objects.count() == 0
    assert Account.objects.filter(kind="pool").count() == 0
    assert Transfer.objects.count() == transfers


def test_a_refusal_from_the_service_is_shown_on_the_form(editor_client, monkeypatch):
    """Rules the service enforces come back as a form error, with nothing created."""
    from bellwether.markets.exceptions import InvalidTrade

    def refuse(**kwargs):
        raise InvalidTrade("close_at must be in the future")

    monkeypatch.setattr(services, "create_market", refuse)
    response = editor_client.post(url("add"), create_data())
    assert response.status_code == 200
    assert response.context["form"].non_field_errors() == ["close_at must be in the future"]
    assert Market.objects.count() == 0


# --- editing -------------------------------------------------------------------


def test_edit_page_shows_fixed_terms_and_saves_texts_and_close_time(editor_client):
    """Outcomes and b are shown but not editable; description, criteria and close time are saved."""
    market = new_market(outcomes=["North", "South"])
    response = editor_client.get(url("edit", market.pk))
    assert response.status_code == 200
    assert set(response.context["form"].fields) == {"description", "resolution_criteria", "close_at"}
    html = response.content.decode()
    assert "North" in html and "South" in html and "100.000000 credits" in html
    new_close = timezone.localtime(timezone.now() + dt.timedelta(days=30)).replace(second=0, microsecond=0)
    response = editor_client.post(url("edit", market.pk), {
        "description": "Updated background.", "resolution_criteria": "Per the official count.",
        "close_at": new_close.strftime("%Y-%m-%d %H:%M"),
    })
    assert response.status_code == 302
    market.refresh_from_db()
    assert (market.description, market.resolution_criteria, market.close_at) == ("Updated background.", "Per the official count.", new_close)


def test_close_time_cannot_move_into_the_past(editor_client):
    """A past close time is refused and the stored one kept."""
    market = new_market()
    before = market.close_at
    response = editor_client.post(url("edit", market.pk), {"description": "", "resolution_criteria": "", "close_at": "2020-01-01 00:00"})
    assert response.status_code == 200
    assert response.context["form"].errors["close_at"] == ["Choose a close time in the future."]
    market.refresh_from_db()
    assert market.close_at == before


def test_unchanged_close_time_saves_even_after_the_market_closed(editor_client):
    """A closed market's texts can still be fixed: keeping its (past) close time is not moving it."""
    market = new_market()
    past = timezone.now() - dt.timedelta(hours=2)
    Market.objects.filter(pk=market.pk).update(close_at=past)
    shown = form_fields(editor_client.get(url("edit", market.pk)), "market-edit-form")
    shown["description"] = "Clarified."
    assert editor_client.post(url("edit", market.pk), shown).status_code == 302
    market.refresh_from_db()
    assert (market.description, market.close_at, market.display_status) == ("Clarified.", past, "closed")


def test_editor_opens_a_draft(editor_client):
    """The Open market button turns a draft into an open market."""
    market = new_market(status="draft")
    assert "Open market" in editor_client.get(url("edit", market.pk)).content.decode()
    assert editor_client.post(url("open", market.pk)).status_code == 302
    market.refresh_from_db()
    assert market.status == "open"


def test_a_draft_past_its_close_time_is_not_opened(editor_client):
    """Opening needs a close time still ahead; the refusal is shown and the draft stays a draft."""
    market = new_market(status="draft")
    Market.objects.filter(pk=market.pk).update(close_at=timezone.now() - dt.timedelta(minutes=1))
    response = editor_client.post(url("open", market.pk), follow=True)
    assert "The market was not opened: the close time has passed: move it into the future before opening." in response.content.decode()
    market.refresh_from_db()
    assert market.status == "draft"


def test_settled_market_cannot_be_edited(editor_client, resolver):
    """After resolution the edit form is gone and a forged POST changes nothing."""
    market = new_market(description="Original.")
    services.resolve_market(market_slug=market.slug, by=resolver, outcome="yes")
    response = editor_client.get(url("edit", market.pk))
    assert response.context["settled"] is True and 'id="market-edit-form"' not in response.content.decode()
    response = editor_client.post(url("edit", market.pk), {"description": "Changed.", "resolution_criteria": "", "close_at": in_a_week()})
    assert response.context["form"].non_field_errors() == ["the market is resolved and can no longer be edited"]
    market.refresh_from_db()
    assert market.description == "Original."


# --- linking from both sides ------------------------------------------------------


def test_link_and_unlink_from_the_market_side(editor_client, article):
    """The edit page links an article chosen in the page chooser and unlinks it again."""
    market = new_market()
    assert editor_client.post(url("link", market.pk), {"article": article.pk}).status_code == 302
    assert list(market.article_links.values_list("article_id", flat=True)) == [article.pk]
    assert "Harbour shut after the storm" in editor_client.get(url("edit", market.pk)).content.decode()
    response = editor_client.post(url("unlink", market.pk, article.pk), {"next": url("edit", market.pk)})
    assert response["Location"] == url("edit", market.pk)
    assert market.article_links.count() == 0


def test_link_and_unlink_from_the_article_side(editor_client, article):
    """The article's Markets page lists linked markets, links an open one and unlinks it."""
    market = new_market()
    settled = new_market(question="Already settled?")
    Market.objects.filter(pk=settled.pk).update(status="cancelled")
    page = editor_client.get(url("article", article.pk))
    assert "No markets are linked to this article yet." in page.content.decode()
    assert list(page.context["form"].fields["market"].queryset) == [market]
    response = editor_client.post(url("article", article.pk), {"market": market.pk})
    assert response["Location"] == url("article", article.pk)
    assert list(MarketArticle.objects.values_list("market_id", "article_id")) == [(market.pk, article.pk)]
    page = editor_client.get(url("article", article.pk)).content.decode()
    assert "Will the talks yield progress?" in page and "Unlink" in page
    response = editor_client.post(url("unlink", market.pk, article.pk), {"next": url("article", article.pk)})
    assert response["Location"] == url("article", article.pk)
    assert MarketArticle.objects.count() == 0


def test_article_side_refuses_settled_or_already_linked_markets(editor_client, article):
    """Only draft or open markets not yet linked can be chosen."""
    market = new_market()
    services.link_article(market=market, article=article)
    response = editor_client.post(url("article", article.pk), {"market": market.pk})
    assert response.status_code == 200
    assert response.context["form"].errors["market"] == ["That market cannot be linked (it is settled or already linked)."]
    assert MarketArticle.objects.count() == 1


def test_create_from_the_article_prelinks_it_and_returns(editor_client, article):
    """"Create a market for this article" pre-fills the article and comes back to the article's Markets page."""
    here = url("article", article.pk)
    page = editor_client.get(here).content.decode()
    create_url = f"{url('add')}?article={article.pk}&amp;next={here}"
    assert create_url in page
    form = editor_client.get(f"{url('add')}?article={article.pk}&next={here}")
    assert form.context["form"].initial["article_1"] == article
    response = editor_client.post(url("add"), create_data(article_1=str(article.pk), next=here))
    assert response["Location"] == here
    assert MarketArticle.objects.get().article_id == article.pk


@pytest.mark.parametrize("target", ["https://evil.example/", "//evil.example/x", "javascript:alert(1)"])
def test_next_never_leaves_the_site(editor_client, article, target):
    """A ``next`` pointing off the site is ignored on create and unlink: both go back to the market's edit page."""
    response = editor_client.post(url("add"), create_data(article_1=str(article.pk), next=target))
    market = Market.objects.get()
    assert response.status_code == 302 and response["Location"] == url("edit", market.pk)
    page = editor_client.get(f"{url('add')}?next={target}").content.decode()
    assert 'name="next"' not in page
    response = editor_client.post(url("unlink", market.pk, article.pk), {"next": target})
    assert response.status_code == 302 and response["Location"] == url("edit", market.pk)
    assert MarketArticle.objects.count() == 0


def test_article_pages_carry_a_markets_button(editor_client, article):
    """The article's edit header and the page listing's "more" menu link to its Markets page; other pages do not."""
    target = url("article", article.pk)
    edit = editor_client.get(reverse("wagtailadmin_pages:edit", args=[article.pk]))
    assert edit.status_code == 200 and target in edit.content.decode()
    listing = editor_client.get(reverse("wagtailadmin_explore", args=[article.get_parent().pk]))
    assert listing.status_code == 200 and target in listing.content.decode()
    section = article.get_parent()
    section_edit = editor_client.get(reverse("wagtailadmin_pages:edit", args=[section.pk])).content.decode()
    assert url("article", section.pk) not in section_edit


# --- the listing ------------------------------------------------------------------------


def test_listing_filters_searches_and_sorts(editor_client, alice):
    """Status (with derived closed), question search and volume ordering; odds and article counts shown."""
    draft = new_market(question="Draft about ferries?", status="draft")
    opened = new_market(question="Open about harbours?")
    closed = new_market(question="Closed about harbours?")
    Market.objects.filter(pk=closed.pk).update(close_at=timezone.now() - dt.timedelta(hours=1))
    buy(alice, opened, "yes", 50 * M)
    services.link_article(market=opened, article=make_article())
    index = url("index")

    def listed(query=""):
        response = editor_client.get(index + query)
        assert response.status_code == 200
        return [m.question for m in response.context["object_list"]]

    assert listed() == ["Closed about harbours?", "Open about harbours?", "Draft about ferries?"]
    assert listed("?status=closed") == ["Closed about harbours?"]
    assert listed("?status=open") == ["Open about harbours?"]
    assert listed("?status=draft") == ["Draft about ferries?"]
    assert listed("?q=harbours") == ["Closed about harbours?", "Open about harbours?"]
    assert listed("?ordering=-volume_micro")[0] == "Open about harbours?"
    assert listed("?ordering=-article_count")[0] == "Open about harbours?"
    html = editor_client.get(index + "?status=open").content.decode()
    assert "Yes 62%" in html  # 50 YES shares at b = 100: e^0.5 / (e^0.5 + 1)
    assert draft.pk and "Open about harbours?" in html


def test_listing_queries_do_not_grow_with_markets(editor_client):
    """The index runs the same number of queries for 2 markets as for 8."""
    def count() -> int:
        with CaptureQueriesContext(connection) as ctx:
            assert editor_client.get(url("index")).status_code == 200
        return len(ctx.captured_queries)

    for i in range(2):
        new_market(question=f"Question {i}?")
    small = count()
    for i in range(2, 8):
        new_market(question=f"Question {i}?")
    assert count() == small


def test_empty_listing_explains_what_to_do(editor_client, resolver_client):
    """With no markets the listing offers editors the add link and tells resolvers where markets come from."""
    html = editor_client.get(url("index")).content.decode()
    assert f'There are no markets to display. Why not <a href="{url("add")}">add one</a>?' in html
    html = resolver_client.get(url("index")).content.decode()
    assert "No markets yet. Editors create them with “Add market” or from an article&#x27;s “Markets” button." in html


# --- resolving ---------------------------------------------------------------------------


def resolve_preview(client, market, **data):
    data.setdefault("note", "")
    data.setdefault("sources", "")
    return client.post(url("resolve", market.pk), data)


def test_resolver_sees_the_exact_payouts_then_confirms(resolver_client, resolver, alice, bob):
    """Step 2 shows each holder's payout as plan_payouts computes it, writes nothing; confirming pays exactly that."""
    market = new_market()
    buy(alice, market, "yes", 10 * M)
    buy(bob, market, "no", 4_500_000)
    pool = pool_balance(market)
    alice_before, bob_before, treasury_before = balance(alice), balance(bob), get_treasury().balance_micro
    response = resolve_preview(resolver_client, market, action="outcome", outcome="yes", note="Port reopened on 2 May.", sources="https://example.org/port\nhttps://example.org/notice")
    assert response.status_code == 200
    assert response.context["step"] == "confirm"
    assert response.context["holders"] == [
        {"username": "alice", "shares": [("Yes", "10.000000")], "net_spent": response.context["holders"][0]["net_spent"], "payout": "10.000000"},
        {"username": "bob", "shares": [("No", "4.500000")], "net_spent": response.context["holders"][1]["net_spent"], "payout": "0.000000"},
    ]
    returned = pool - 10 * M
    assert (response.context["total"], response.context["pool"]) == ("10.000000", f"{pool // M}.{pool % M:06d}")
    assert response.context["returned"] == f"{returned // M}.{returned % M:06d}"
    html = response.content.decode()
    assert '<td class="payout-holder">alice</td>' in html and '<td class="payout-amount">10.000000</td>' in html
    assert "Confirm and pay" in html
    # The preview wrote nothing.
    market.refresh_from_db()
    assert market.status == "open" and balance(alice) == alice_before and not Transfer.objects.filter(kind="payout").exists()

    confirm = form_fields(response, "confirm-resolution-form")
    assert confirm["trade_count"] == "2"
    done = resolver_client.post(url("resolve_confirm", market.pk), confirm)
    assert done.status_code == 302 and done["Location"] == url("resolve", market.pk)
    assert balance(alice) - alice_before == 10 * M
    assert balance(bob) - bob_before == 0
    assert get_treasury().balance_micro - treasury_before == returned
    market.refresh_from_db()
    assert (market.status, market.resolution, market.resolved_by) == ("resolved", {"outcome": "yes"}, resolver)
    assert market.resolution_note == "Port reopened on 2 May."
    assert market.resolution_sources == ["https://example.org/port", "https://example.org/notice"]
    assert run_audit().problems == []
    record = resolver_client.get(url("resolve", market.pk)).content.decode()
    assert "Market resolved: paid 10.000000 credits to 1 holder(s)" in record
    assert "Resolved to Yes" in record and "https://example.org/notice" in record and "<td>alice</td><td>10.000000</td>" in record

    again = resolver_client.post(url("resolve_confirm", market.pk), confirm, follow=True)
    assert "This market was already resolved; nothing more was paid." in again.content.decode()
    assert balance(alice) - alice_before == 10 * M


def test_resolving_to_probabilities_pays_each_share_its_probability(resolver_client, alice, bob):
    """0.7 / 0.3: 10 YES pay 7, 5 NO pay 1.5."""
    market = new_market()
    buy(alice, market, "yes", 10 * M)
    buy(bob, market, "no", 5 * M)
    before = balance(alice), balance(bob)
    response = resolve_preview(resolver_client, market, action="probabilities", p_yes="0.7", p_no="0.3")
    assert [h["payout"] for h in response.context["holders"]] == ["7.000000", "1.500000"]
    resolver_client.post(url("resolve_confirm", market.pk), form_fields(response, "confirm-resolution-form"))
    assert (balance(alice) - before[0], balance(bob) - before[1]) == (7 * M, 1_500_000)
    market.refresh_from_db()
    assert market.resolution == {"probabilities": {"yes": "0.700000", "no": "0.300000"}}


@pytest.mark.parametrize(
    "data, message",
    [
        (dict(action="probabilities", p_yes="0.7", p_no="0.2"), "The probabilities must add up to exactly 1."),
        (dict(action="probabilities", p_yes="1"), "Give a probability for every outcome (missing: No)."),
        (dict(action="outcome"), "Choose the winning outcome."),
    ],
)
def test_bad_resolutions_are_refused_before_the_preview(resolver_client, data, message):
    """Inconsistent choices come back with the error; no preview, nothing written."""
    market = new_market()
    response = resolve_preview(resolver_client, market, **data)
    form = response.context["form"]
    assert message in form.non_field_errors() + form.errors.get("outcome", [])
    assert "step" not in response.context
    market.refresh_from_db()
    assert market.status == "open"


def test_sources_must_be_web_addresses(resolver_client):
    """Every sources line must be an http(s) URL."""
    market = new_market()
    response = resolve_preview(resolver_client, market, action="outcome", outcome="no", sources="https://ok.example/a\nnot a url")
    assert response.context["form"].errors["sources"] == ["'not a url' is not a web address (http:// or https://)."]


def test_a_trade_after_the_preview_shows_a_new_preview_instead_of_paying(resolver_client, alice, bob):
    """The confirmation carries trade_count; when a trade happened since, nothing is paid and the new payouts are shown."""
    market = new_market()
    buy(alice, market, "yes", 10 * M)
    preview = resolve_preview(resolver_client, market, action="outcome", outcome="yes")
    stale = form_fields(preview, "confirm-resolution-form")
    buy(bob, market, "yes", 3 * M)
    before = balance(alice), balance(bob)
    response = resolver_client.post(url("resolve_confirm", market.pk), stale)
    assert response.status_code == 409
    assert response.context["stale"] is True
    assert "Someone traded since you looked at the preview" in response.content.decode()
    assert [(h["username"], h["payout"]) for h in response.context["holders"]] == [("alice", "10.000000"), ("bob", "3.000000")]
    market.refresh_from_db()
    assert market.status == "open" and (balance(alice), balance(bob)) == before
    fresh = form_fields(response, "confirm-resolution-form")
    assert fresh["trade_count"] == "2"
    assert resolver_client.post(url("resolve_confirm", market.pk), fresh).status_code == 302
    assert (balance(alice) - before[0], balance(bob) - before[1]) == (10 * M, 3 * M)


def test_cancel_refunds_net_spend_and_returns_the_subsidy(resolver_client, alice, bob):
    """Cancelling shows each trader's refund (spent minus received); confirming brings both back to their starting balance."""
    market = new_market()
    buy(alice, market, "yes", 10 * M)
    sell(alice, market, "yes", 4 * M)
    buy(bob, market, "no", 5 * M)
    alice_net = START - balance(alice)
    bob_net = START - balance(bob)
    response = resolve_preview(resolver_client, market, action="cancel")
    assert [(h["username"], h["payout"]) for h in response.context["holders"]] == [
        ("alice", f"{alice_net // M}.{alice_net % M:06d}"), ("bob", f"{bob_net // M}.{bob_net % M:06d}"),
    ]
    subsidy = lmsr.max_loss_micro(100 * M, 2)
    assert response.context["returned"] == f"{subsidy // M}.{subsidy % M:06d}"
    assert response.context["has_cover"] is False
    assert "Confirm cancellation and refund" in response.content.decode()
    resolver_client.post(url("resolve_confirm", market.pk), form_fields(response, "confirm-resolution-form"))
    assert (balance(alice), balance(bob)) == (START, START)
    market.refresh_from_db()
    assert market.status == "cancelled"
    assert sorted(Position.objects.filter(market=market).values_list("payout_micro", flat=True)) == sorted([alice_net, bob_net])
    assert run_audit().problems == []


def test_cancel_preview_shows_the_treasury_cover(resolver_client, alice, bob):
    """When refunds exceed the pool (a trader sold at a profit), the preview shows the treasury's cover and confirming pays it."""
    market = new_market(liquidity_b_micro=10 * M)
    for _ in range(2):  # alice buys low and sells high twice; bob pays for both swings
        buy(alice, market, "yes", 20 * M)
        buy(bob, market, "yes", 40 * M)
        sell(alice, market, "yes", 20 * M)
        sell(bob, market, "yes", 40 * M)
    buy(bob, market, "yes", 40 * M)
    alice_after_trading = balance(alice)
    bob_net = START - balance(bob)
    pool = pool_balance(market)
    assert alice_after_trading > START and bob_net > pool  # alice profited; bob's refund exceeds the pool
    treasury_before = get_treasury().balance_micro
    response = resolve_preview(resolver_client, market, action="cancel")
    cover = bob_net - pool
    assert [(h["username"], h["payout"]) for h in response.context["holders"]] == [("bob", f"{bob_net // M}.{bob_net % M:06d}")]  # alice holds nothing and is owed nothing
    assert (response.context["has_cover"], response.context["cover"], response.context["returned"]) == (True, f"{cover // M}.{cover % M:06d}", "0.000000")
    assert 'id="payout-cover"' in response.content.decode()
    resolver_client.post(url("resolve_confirm", market.pk), form_fields(response, "confirm-resolution-form"))
    assert (balance(alice), balance(bob)) == (alice_after_trading, START)
    assert get_treasury().balance_micro == treasury_before - cover
    assert Transfer.objects.get(kind="cover").amount_micro == cover
    assert run_audit().problems == []


def test_change_returns_to_the_form_with_the_choices_kept(resolver_client):
    """"Change" on the confirmation page goes back to step 1 with what was chosen."""
    market = new_market()
    preview = resolve_preview(resolver_client, market, action="outcome", outcome="no", note="Talks collapsed.")
    back = resolver_client.post(url("resolve", market.pk), {**form_fields(preview, "confirm-resolution-form"), "back": "1"})
    assert back.context["form"].data["outcome"] == "no" and back.context["form"].data["note"] == "Talks collapsed."
    assert "step" not in back.context


def test_draft_markets_are_not_resolved(resolver_client):
    """A draft has nothing to resolve: the page says so and a forged confirmation is refused."""
    market = new_market(status="draft")
    page = resolver_client.get(url("resolve", market.pk)).content.decode()
    assert "This market is still a draft" in page and 'id="resolve-form"' not in page
    response = resolver_client.post(url("resolve_confirm", market.pk), {"action": "cancel", "trade_count": "0"}, follow=True)
    assert "A draft market cannot be resolved" in response.content.decode()
    market.refresh_from_db()
    assert market.status == "draft"


def test_csrf_is_enforced_on_the_confirmation(resolver, alice):
    """Without the CSRF token the confirmation POST is refused and nothing is paid."""
    market = new_market()
    buy(alice, market, "yes", 10 * M)
    client = Client(enforce_csrf_checks=True)
    client.force_login(resolver)
    response = client.post(url("resolve_confirm", market.pk), {"action": "outcome", "outcome": "yes", "trade_count": "1", "note": "", "sources": ""})
    assert response.status_code == 403
    market.refresh_from_db()
    assert market.status == "open"


# --- who may do what -----------------------------------------------------------------


def test_editor_without_the_resolver_role_cannot_resolve(editor_client, alice):
    """403 on both resolve steps, and no resolve button anywhere for them."""
    market = new_market()
    buy(alice, market, "yes", M)
    assert editor_client.get(url("resolve", market.pk)).status_code == 403
    response = editor_client.post(url("resolve_confirm", market.pk), {"action": "outcome", "outcome": "yes", "trade_count": "1"})
    assert response.status_code == 403
    assert "Only resolvers can resolve or cancel markets." in response.content.decode()
    assert "Resolve or cancel" not in editor_client.get(url("index")).content.decode()
    assert "Resolve or cancel" not in editor_client.get(url("edit", market.pk)).content.decode()
    market.refresh_from_db()
    assert market.status == "open"


def test_resolver_reaches_the_admin_without_being_staff(resolver_client, resolver):
    """Resolvers hold Wagtail's access_admin through their group, so is_staff is not needed; they see Markets and resolve buttons."""
    market = new_market()
    assert resolver.is_staff is False
    assert resolver.has_perm("wagtailadmin.access_admin")
    dashboard = resolver_client.get("/admin/")
    assert dashboard.status_code == 200 and url("index") in dashboard.content.decode()
    listing = resolver_client.get(url("index")).content.decode()
    assert "Resolve or cancel" in listing and url("resolve", market.pk) in listing


def test_resolver_without_the_editor_role_cannot_create_or_edit(resolver_client, article):
    """Creating, editing, opening and linking answer 403 to a resolver who is not an editor."""
    market = new_market(status="draft")
    assert resolver_client.get(url("add")).status_code == 403
    assert resolver_client.post(url("add"), create_data()).status_code == 403
    assert resolver_client.get(url("edit", market.pk)).status_code == 403
    assert resolver_client.post(url("open", market.pk)).status_code == 403
    assert resolver_client.post(url("link", market.pk), {"article": article.pk}).status_code == 403
    assert resolver_client.get(url("article", article.pk)).status_code == 403
    assert resolver_client.post(url("article", article.pk), {"market": market.pk}).status_code == 403
    assert Market.objects.count() == 1 and MarketArticle.objects.count() == 0
    services.link_article(market=market, article=article)
    assert resolver_client.post(url("unlink", market.pk, article.pk)).status_code == 403
    assert resolver_client.post(url("edit", market.pk), {"description": "Changed.", "close_at": in_a_week()}).status_code == 403
    market.refresh_from_db()
    assert MarketArticle.objects.count() == 1 and market.status == "draft" and market.description == ""
    assert "Add market" not in resolver_client.get(url("index")).content.decode()


def test_readers_are_sent_to_the_admin_login_everywhere(alice, article):
    """A signed-in reader without admin access (and an anonymous visitor) gets a redirect to the admin login."""
    market = new_market()
    paths = [
        ("get", url("index")), ("get", url("add")), ("post", url("add")), ("get", url("edit", market.pk)),
        ("post", url("open", market.pk)), ("post", url("link", market.pk)), ("post", url("unlink", market.pk, article.pk)),
        ("get", url("article", article.pk)), ("get", url("resolve", market.pk)), ("post", url("resolve_confirm", market.pk)),
    ]
    reader = Client()
    reader.force_login(alice)
    for client in (reader, Client()):
        for method, path in paths:
            response = getattr(client, method)(path)
            assert response.status_code == 302, path
            assert response["Location"].startswith(ADMIN_LOGIN), path
    market.refresh_from_db()
    assert market.status == "open"
