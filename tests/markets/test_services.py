"""Market services: creation, linking, positions, resolution arithmetic."""

from __future__ import annotations

import datetime as dt
import math

import pytest
from django.utils import timezone

from bellwether.accounts.services import create_user
from bellwether.ledger.models import Account, Transfer
from bellwether.ledger.services import get_treasury
from bellwether.markets import lmsr, services
from bellwether.markets.audit import run_audit
from bellwether.markets.exceptions import InsufficientFunds, InvalidTrade, MarketClosed, SlippageExceeded, StalePreview
from bellwether.markets.models import Market, MarketArticle, Position
from bellwether.markets.services import TradeRequest

pytestmark = pytest.mark.django_db
M = lmsr.MICRO


def new_market(**kwargs) -> Market:
    defaults = dict(question="Will the talks yield substantive progress?", liquidity_b_micro=100 * M, close_at=timezone.now() + dt.timedelta(days=7))
    defaults.update(kwargs)
    return services.create_market(**defaults)


def buy(user, market, outcome="yes", **kwargs):
    request = TradeRequest(outcome=outcome, side="buy", **kwargs)
    return services.place_trade(user=user, market_slug=market.slug, request=request)


def sell(user, market, outcome="yes", **kwargs):
    return services.place_trade(user=user, market_slug=market.slug, request=TradeRequest(outcome=outcome, side="sell", **kwargs))


@pytest.fixture
def alice():
    return create_user(username="alice")


@pytest.fixture
def bob():
    return create_user(username="bob")


def balance(user) -> int:
    return Account.objects.get(user=user).balance_micro


def test_create_market_funds_the_pool_with_the_subsidy():
    """The pool starts with ceil(b ln n) micro-credits from the treasury, recorded as a subsidy."""
    market = new_market(outcomes=["Alpha", "Beta", "Gamma"])
    expected = math.ceil(100 * math.log(3) * M)
    assert abs(Account.objects.get(pk=market.pool_id).balance_micro - expected) <= 1
    assert Account.objects.get(pk=market.pool_id).balance_micro == lmsr.max_loss_micro(100 * M, 3)
    transfer = Transfer.objects.get(kind="subsidy")
    assert (transfer.debit_id, transfer.credit_id) == (get_treasury().pk, market.pool_id)
    assert [o.slug for o in market.outcomes.order_by("position")] == ["alpha", "beta", "gamma"]
    assert market.kind == "multiple"


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(question="  "), "a market needs a question"),
        (dict(close_at=timezone.now() - dt.timedelta(seconds=1)), "close_at must be in the future"),
        (dict(liquidity_b_micro=0), "liquidity b must be positive"),
        (dict(outcomes=["Only"]), "a market has 2 to 50 outcomes"),
        (dict(outcomes=[f"o{i}" for i in range(51)]), "a market has 2 to 50 outcomes"),
        (dict(outcomes=["Same", "same"]), "the outcomes 'Same' and 'same' are the same"),
    ],
)
def test_create_market_refuses_bad_input(kwargs, message):
    """Bad market definitions are refused before anything is written."""
    with pytest.raises(InvalidTrade, match=message):
        new_market(**kwargs)
    assert Market.objects.count() == 0
    assert Account.objects.filter(kind="pool").count() == 0


def test_worked_example_from_the_design():
    """b = 100 at 50/50: 10 YES cost 5.124948 credits, charged exactly."""
    market = new_market()
    alice = create_user(username="alice")
    body = buy(alice, market, shares_micro=10 * M)
    assert balance(alice) == 1000 * M - 5_124_948
    assert Transfer.objects.get(kind="buy").amount_micro == 5_124_948
    assert body["trade_id"] > 0


def test_selling_takes_average_cost_out_of_the_basis(alice):
    """Two buys at different prices then a partial sell leave the basis of the shares still held."""
    market = new_market()
    buy(alice, market, shares_micro=10 * M)
    buy(alice, market, shares_micro=30 * M)
    position = Position.objects.get(user=alice)
    spent = position.spent_micro
    assert position.cost_basis_micro == spent
    sell(alice, market, shares_micro=10 * M)
    position.refresh_from_db()
    assert position.shares_micro == 30 * M
    assert position.cost_basis_micro == spent - spent * 10 // 40
    sell(alice, market, sell_all=True)
    position.refresh_from_db()
    assert (position.shares_micro, position.cost_basis_micro) == (0, 0)
    assert position.received_micro > 0
    assert balance(alice) < 1000 * M  # a round trip never makes money


def test_slippage_and_funds_checks_change_nothing(alice):
    """A refused trade leaves balances, quantities and trades untouched."""
    market = new_market()
    quote = services.quote(market=market, request=TradeRequest(outcome="yes", side="buy", shares_micro=10 * M))
    with pytest.raises(SlippageExceeded):
        buy(alice, market, shares_micro=10 * M, max_cost_micro=quote.amount_micro - 1)
    with pytest.raises(InsufficientFunds):
        buy(alice, market, shares_micro=5000 * M)
    with pytest.raises(InvalidTrade, match="you hold no shares"):
        sell(alice, market, sell_all=True)
    assert balance(alice) == 1000 * M
    assert market.trades.count() == 0
    assert sum(market.outcomes.values_list("shares_micro", flat=True)) == 0
    buy(alice, market, shares_micro=10 * M, max_cost_micro=quote.amount_micro)
    assert balance(alice) == 1000 * M - quote.amount_micro


def test_trading_stops_at_close_time(alice):
    """A market past close_at refuses trades and quotes."""
    market = new_market()
    Market.objects.filter(pk=market.pk).update(close_at=timezone.now() - dt.timedelta(seconds=1))
    market.refresh_from_db()
    assert market.display_status == "closed"
    with pytest.raises(MarketClosed):
        buy(alice, market, shares_micro=M)
    with pytest.raises(MarketClosed):
        services.quote(market=market, request=TradeRequest(outcome="yes", side="buy", shares_micro=M))


def test_resolution_pays_winners_and_returns_the_rest(alice, bob):
    """Each winning share pays 1 credit; the pool's remainder goes back to the treasury."""
    market = new_market()
    buy(alice, market, "yes", shares_micro=40 * M)
    buy(bob, market, "no", shares_micro=25 * M)
    alice_before, bob_before = balance(alice), balance(bob)
    resolver = create_user(username="res", roles=("resolver",))
    result = services.resolve_market(market_slug=market.slug, by=resolver, outcome="yes", note="Joint statement", sources=["https://example.org/a"])
    assert result.payouts == {alice.pk: 40 * M}
    assert balance(alice) == alice_before + 40 * M
    assert balance(bob) == bob_before
    assert Account.objects.get(pk=market.pool_id).balance_micro == 0
    market.refresh_from_db()
    assert (market.status, market.resolution, market.resolution_note) == ("resolved", {"outcome": "yes"}, "Joint statement")
    assert market.resolved_by == resolver and market.resolution_sources == ["https://example.org/a"]
    again = services.resolve_market(market_slug=market.slug, by=resolver, outcome="yes")
    assert again.already_done and again.payouts == {}
    assert balance(bob) == bob_before
    assert run_audit().problems == []


def test_resolution_to_probabilities_rounds_down(alice):
    """Resolving to probabilities pays floor(shares x p) per outcome held."""
    market = new_market()
    buy(alice, market, "yes", shares_micro=10 * M + 1)
    buy(alice, market, "no", shares_micro=3 * M)
    before = balance(alice)
    result = services.resolve_market(market_slug=market.slug, by=None, probabilities={"yes": "0.333333", "no": "0.666667"})
    expected = (10 * M + 1) * 333_333 // M + 3 * M * 666_667 // M
    assert result.payouts == {alice.pk: expected}
    assert balance(alice) == before + expected
    assert run_audit().problems == []


@pytest.mark.parametrize(
    "probabilities, message",
    [
        ({"yes": "0.5", "no": "0.4"}, "must sum to 1"),
        ({"yes": "1"}, "give a probability for every outcome"),
        ({"yes": "1.5", "no": "-0.5"}, "between 0 and 1"),
        ({"yes": "0.1234567", "no": "0.8765433"}, "at most 6 decimals"),
        ({"yes": "x", "no": "1"}, "is not a number"),
    ],
)
def test_bad_probabilities_are_refused(probabilities, message):
    """A probability resolution must cover every outcome with numbers summing to 1."""
    market = new_market()
    with pytest.raises(InvalidTrade, match=message):
        services.resolve_market(market_slug=market.slug, by=None, probabilities=probabilities)
    market.refresh_from_db()
    assert market.status == "open"


def test_cancel_refunds_net_spend_with_treasury_cover(alice, bob):
    """Cancelling refunds what each trader spent net of sales; the treasury covers any shortfall."""
    market = new_market(liquidity_b_micro=1 * M)
    buy(alice, market, "yes", shares_micro=50 * M)
    buy(bob, market, "yes", shares_micro=20 * M)
    sell(bob, market, "yes", shares_micro=5 * M)
    net = {}
    for user in (alice, bob):
        p = Position.objects.get(user=user)
        net[user.pk] = p.spent_micro - p.received_micro
    result = services.resolve_market(market_slug=market.slug, by=None, cancel=True)
    assert result.payouts == net
    assert balance(alice) == 1000 * M
    assert balance(bob) == 1000 * M
    assert Account.objects.get(pk=market.pool_id).balance_micro == 0
    assert run_audit().problems == []


def test_link_article_stores_the_odds_when_it_was_published(alice, home):
    """A link remembers the probabilities at the article's publication time, not now."""
    from tests.news.factories import make_article

    market = new_market()
    article = make_article(headline="Before the trade", published_at=timezone.now() - dt.timedelta(hours=1))
    buy(alice, market, "yes", shares_micro=50 * M)
    link = services.link_article(market=market, article=article)
    assert link.probabilities_at_publish == {"yes": 0.5, "no": 0.5}
    later = make_article(headline="After the trade", published_at=timezone.now() + dt.timedelta(seconds=1))
    odds = services.link_article(market=market, article=later).probabilities_at_publish
    assert odds["yes"] > 0.6
    assert MarketArticle.objects.filter(market=market).count() == 2
    assert services.link_article(market=market, article=article).pk == link.pk


def test_budget_buy_spends_at_most_the_budget(alice):
    """Buying by amount never charges more than the amount, and buys the most shares it can."""
    market = new_market()
    services.place_trade(user=alice, market_slug=market.slug, request=TradeRequest(outcome="no", side="buy", amount_micro=25 * M))
    spent = 1000 * M - balance(alice)
    assert 25 * M - 1 <= spent <= 25 * M


def test_a_draft_linked_before_publication_gets_the_odds_when_it_goes_live(alice, home):
    """Linking a draft stores provisional odds; the first publication replaces them with the odds at that moment."""
    from bellwether.news.models import ArticlePage
    from tests.news.factories import make_article

    market = new_market()
    article = make_article(headline="Embargoed story")
    article.unpublish()
    ArticlePage.objects.filter(pk=article.pk).update(published_at=None, first_published_at=None, last_published_at=None)
    draft = ArticlePage.objects.get(pk=article.pk)
    link = services.link_article(market=market, article=draft)
    assert link.probabilities_at_publish == {"yes": 0.5, "no": 0.5}
    buy(alice, market, "yes", shares_micro=60 * M)
    draft.save_revision().publish()
    link.refresh_from_db()
    assert link.probabilities_at_publish["yes"] > 0.6
    buy(alice, market, "no", shares_micro=200 * M)
    ArticlePage.objects.get(pk=article.pk).save_revision().publish()  # a later edit keeps the first odds
    link.refresh_from_db()
    assert link.probabilities_at_publish["yes"] > 0.6


def test_resolution_confirmed_from_a_stale_preview_pays_nothing(alice, bob):
    """A trade after the payout preview makes the resolution refuse; nothing moves until it is re-previewed."""
    market = new_market()
    buy(alice, market, shares_micro=10 * M)
    preview = services.preview_resolution(market=market, outcome="yes")
    buy(bob, market, shares_micro=5 * M)
    before = (balance(alice), balance(bob))
    with pytest.raises(StalePreview, match="1 trade"):
        services.resolve_market(market_slug=market.slug, by=None, outcome="yes", expected_trade_count=preview.trade_count)
    market.refresh_from_db()
    assert market.status == Market.Status.OPEN
    assert (balance(alice), balance(bob)) == before
    fresh = services.preview_resolution(market=market, outcome="yes")
    result = services.resolve_market(market_slug=market.slug, by=None, outcome="yes", expected_trade_count=fresh.trade_count)
    assert result.payouts == {alice.pk: 10 * M, bob.pk: 5 * M}


def test_a_draft_can_be_cancelled_but_not_resolved():
    """Resolving a draft is refused; cancelling it settles it with nothing to pay."""
    market = new_market(status=Market.Status.DRAFT)
    with pytest.raises(InvalidTrade, match="draft market cannot be resolved"):
        services.resolve_market(market_slug=market.slug, by=None, outcome="yes")
    market.refresh_from_db()
    assert market.status == Market.Status.DRAFT
    result = services.resolve_market(market_slug=market.slug, by=None, cancel=True)
    assert result.payouts == {} and result.market.status == Market.Status.CANCELLED
    assert run_audit().problems == []


def test_a_trade_past_32_bits_is_recorded_exactly(settings):
    """Buying 5,000 shares for over 2,147 credits updates q, volume and cash exactly (no 32-bit wrap)."""
    settings.STARTING_BALANCE_MICRO = 10_000_000 * M
    whale = create_user(username="whale")
    market = new_market(liquidity_b_micro=1000 * M)
    body = buy(whale, market, shares_micro=5000 * M)
    market.refresh_from_db()
    yes = market.outcomes.get(slug="yes")
    cost = lmsr.buy_cost_micro([0, 0], 1000 * M, 0, 5000 * M)
    assert cost > 2**31
    assert yes.shares_micro == 5000 * M
    assert market.volume_micro == cost
    assert balance(whale) == 10_000_000 * M - cost
    assert body["trade_id"] > 0
    assert run_audit().problems == []
