"""The market services as a state machine, driven by Hypothesis.

Hypothesis signs users up, opens binary and 3-outcome markets, buys (by
shares and by amount), sells (some and all), replays Idempotency-Keys,
resolves (to an outcome or to probabilities), cancels and tries to trade on
settled markets, in random order. Each rule checks its own effect against a
quote or a recomputation; after every step the money audit must pass, the
balances must sum to zero, no user may be overdrawn and every open market's
pool must cover its largest possible payout.

Each example starts from an empty set of market and ledger rows (deleted in
the machine's ``__init__``, inside the test's transaction, which is rolled
back at the end).
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from django.db.models import Max, Sum
from django.utils import timezone
from hypothesis import HealthCheck
from hypothesis import settings as hsettings
from hypothesis import strategies as st
from hypothesis.stateful import Bundle, RuleBasedStateMachine, initialize, invariant, precondition, rule, run_state_machine_as_test

from bellwether.accounts.models import ApiToken
from bellwether.accounts.services import create_user
from bellwether.ledger.models import Account, Transfer
from bellwether.ledger.services import format_micro
from bellwether.markets import services
from bellwether.markets.audit import run_audit
from bellwether.markets.exceptions import IdempotencyConflict, InsufficientFunds, InvalidTrade, MarketClosed, ResolutionConflict
from bellwether.markets.models import IdempotencyKey, Market, MarketArticle, Outcome, Position, Trade

MICRO = 1_000_000
Req = services.TradeRequest

SHARES = st.one_of(st.integers(1, 60 * MICRO), st.integers(1, 3_000 * MICRO))
AMOUNTS = st.one_of(st.integers(MICRO // 100, 40 * MICRO), st.integers(1, 1_500 * MICRO))
OUTCOME_PICK = st.integers(0, 2)


def wipe() -> None:
    """Delete every row the services create, children before parents."""
    for model in (IdempotencyKey, Trade, Position, MarketArticle, Outcome, Market, Transfer, Account, ApiToken):
        model.objects.all().delete()
    get_user_model().objects.all().delete()


def snapshot() -> tuple:
    """What a refused request must leave untouched."""
    return (
        tuple(Account.objects.order_by("pk").values_list("pk", "balance_micro")),
        Transfer.objects.count(),
        tuple(Trade.objects.order_by("pk").values_list("pk", flat=True)),
        tuple(Outcome.objects.order_by("pk").values_list("pk", "shares_micro")),
        tuple(Position.objects.order_by("pk").values_list("pk", "shares_micro", "spent_micro", "received_micro", "payout_micro")),
        tuple(Market.objects.order_by("pk").values_list("pk", "status", "trade_count", "volume_micro")),
        IdempotencyKey.objects.count(),
    )


def balance(user) -> int:
    return Account.objects.get(user=user).balance_micro


class MarketServices(RuleBasedStateMachine):
    users = Bundle("users")

    def __init__(self):
        super().__init__()
        wipe()
        self.n_users = 0
        self.n_markets = 0
        self.n_keys = 0
        self.keyed: list[tuple[object, str, str, services.TradeRequest, dict]] = []
        self.open: list[str] = []
        # slug -> the keyword arguments it was settled with
        self.settled: dict[str, dict] = {}

    # --- set-up rules -------------------------------------------------------

    def _sign_up(self):
        self.n_users += 1
        return create_user(username=f"user{self.n_users}")

    def _open(self, three: bool, b_credits: int) -> None:
        self.n_markets += 1
        market = services.create_market(
            question=f"Question number {self.n_markets}?",
            outcomes=["Red", "Green", "Blue"] if three else None,
            liquidity_b_micro=b_credits * MICRO,
            close_at=timezone.now() + timedelta(days=1),
        )
        assert Account.objects.get(pk=market.pool_id).balance_micro >= 0
        self.open.append(market.slug)

    @initialize(target=users)
    def first_user(self):
        return self._sign_up()

    @initialize(three=st.booleans())
    def first_market(self, three):
        self._open(three, 100)

    @rule(target=users)
    def sign_up(self):
        return self._sign_up()

    @rule(three=st.booleans(), b_credits=st.sampled_from([1, 10, 100, 1000]))
    def create_market(self, three, b_credits):
        self._open(three, b_credits)

    # --- trading ------------------------------------------------------------

    @staticmethod
    def _outcome(slug: str, pick: int) -> str:
        slugs = list(Outcome.objects.filter(market__slug=slug).order_by("position").values_list("slug", flat=True))
        return slugs[pick % len(slugs)]

    def _trade(self, user, slug: str, request: services.TradeRequest, key: str | None = None) -> dict | None:
        """Place ``request`` and check it did what a quote said, or failed for the reason it should, changing nothing."""
        market = Market.objects.get(slug=slug)
        before = snapshot()
        cash = balance(user)

        def refused(error):
            with pytest.raises(error):
                services.place_trade(user=user, market_slug=slug, request=request, idempotency_key=key)
            assert snapshot() == before
            return None

        if not market.is_trading:
            return refused(MarketClosed)
        try:
            fill = services.quote(market=market, request=request, user=user)
        except InvalidTrade:
            return refused(InvalidTrade)
        if request.side == "buy" and fill.amount_micro > cash:
            return refused(InsufficientFunds)
        body = services.place_trade(user=user, market_slug=slug, request=request, idempotency_key=key)
        trade = Trade.objects.get(pk=body["trade_id"])
        assert (trade.shares_micro, trade.amount_micro, trade.side) == (fill.shares_micro, fill.amount_micro, request.side)
        assert Trade.objects.count() == len(before[2]) + 1
        sign = -1 if request.side == "buy" else 1
        assert balance(user) == cash + sign * fill.amount_micro
        if request.side == "buy" and request.amount_micro is not None:
            assert 0 < fill.amount_micro <= request.amount_micro
        return body

    def _open_market(self, data) -> str:
        return data.draw(st.sampled_from(self.open), label="market")

    def _holding(self, data) -> tuple[object, str, str]:
        """Draw (user, market slug, outcome slug) of a position with shares in an open market."""
        held = list(
            Position.objects.filter(shares_micro__gt=0, market__status=Market.Status.OPEN)
            .order_by("pk")
            .values_list("user_id", "market__slug", "outcome__slug")
        )
        user_id, slug, outcome = data.draw(st.sampled_from(held), label="holding")
        return get_user_model().objects.get(pk=user_id), slug, outcome

    def _has_holdings(self) -> bool:
        return Position.objects.filter(shares_micro__gt=0, market__status=Market.Status.OPEN).exists()

    @precondition(lambda self: self.open)
    @rule(user=users, data=st.data(), pick=OUTCOME_PICK, shares=SHARES)
    def buy_shares(self, user, data, pick, shares):
        slug = self._open_market(data)
        self._trade(user, slug, Req(outcome=self._outcome(slug, pick), side="buy", shares_micro=shares))

    @precondition(lambda self: self.open)
    @rule(user=users, data=st.data(), pick=OUTCOME_PICK, amount=AMOUNTS)
    def buy_amount(self, user, data, pick, amount):
        slug = self._open_market(data)
        self._trade(user, slug, Req(outcome=self._outcome(slug, pick), side="buy", amount_micro=amount))

    @precondition(lambda self: self._has_holdings())
    @rule(data=st.data(), percent=st.integers(1, 100))
    def sell_some(self, data, percent):
        user, slug, outcome = self._holding(data)
        held = Position.objects.get(user=user, market__slug=slug, outcome__slug=outcome).shares_micro
        body = self._trade(user, slug, Req(outcome=outcome, side="sell", shares_micro=max(1, held * percent // 100)))
        assert body is not None

    @precondition(lambda self: self._has_holdings())
    @rule(data=st.data())
    def sell_all(self, data):
        user, slug, outcome = self._holding(data)
        body = self._trade(user, slug, Req(outcome=outcome, side="sell", sell_all=True))
        assert body is not None
        assert Position.objects.get(user=user, market__slug=slug, outcome__slug=outcome).shares_micro == 0

    @precondition(lambda self: self.open)
    @rule(user=users, data=st.data(), pick=OUTCOME_PICK, extra=st.integers(1, 10 * MICRO))
    def sell_more_than_held(self, user, data, pick, extra):
        """Selling more than the position holds (or selling with none) is refused as InvalidTrade and changes nothing."""
        slug = self._open_market(data)
        outcome = self._outcome(slug, pick)
        held = Position.objects.filter(user=user, market__slug=slug, outcome__slug=outcome).values_list("shares_micro", flat=True).first() or 0
        assert self._trade(user, slug, Req(outcome=outcome, side="sell", shares_micro=held + extra)) is None

    @precondition(lambda self: self.open)
    @rule(user=users, data=st.data(), pick=OUTCOME_PICK, shares=SHARES)
    def buy_with_idempotency_key(self, user, data, pick, shares):
        slug = self._open_market(data)
        self.n_keys += 1
        key = f"key-{self.n_keys}"
        request = Req(outcome=self._outcome(slug, pick), side="buy", shares_micro=shares)
        body = self._trade(user, slug, request, key=key)
        if body is not None:
            self.keyed.append((user, slug, key, request, body))
        else:
            assert not IdempotencyKey.objects.filter(key=key).exists()

    @precondition(lambda self: self.keyed)
    @rule(data=st.data())
    def replay_same_request(self, data):
        """The same key and request returns the stored response and trades nothing, even after the market settled."""
        user, slug, key, request, body = data.draw(st.sampled_from(self.keyed))
        before = snapshot()
        again = services.place_trade(user=user, market_slug=slug, request=request, idempotency_key=key)
        assert again == {**body, "replayed": True}
        assert snapshot() == before

    @precondition(lambda self: self.keyed)
    @rule(data=st.data(), extra=st.integers(1, 5 * MICRO))
    def replay_key_with_another_request(self, data, extra):
        """The same key with a different request is an IdempotencyConflict and changes nothing."""
        user, slug, key, request, _ = data.draw(st.sampled_from(self.keyed))
        other = Req(outcome=request.outcome, side="buy", shares_micro=request.shares_micro + extra)
        before = snapshot()
        with pytest.raises(IdempotencyConflict):
            services.place_trade(user=user, market_slug=slug, request=other, idempotency_key=key)
        assert snapshot() == before

    @precondition(lambda self: self.settled)
    @rule(user=users, data=st.data(), pick=OUTCOME_PICK, side=st.sampled_from(["buy", "sell"]), how=st.sampled_from(["outcome", "cancel"]))
    def use_a_settled_market(self, user, data, pick, side, how):
        """A settled market refuses every trade with MarketClosed; settling it the same way again pays nothing, another way is a ResolutionConflict."""
        slug = data.draw(st.sampled_from(sorted(self.settled)), label="settled market")
        before = snapshot()
        request = Req(outcome=self._outcome(slug, pick), side=side, shares_micro=MICRO)
        with pytest.raises(MarketClosed):
            services.place_trade(user=user, market_slug=slug, request=request)
        again = {"outcome": self._outcome(slug, pick)} if how == "outcome" else {"cancel": True}
        if again == self.settled[slug]:
            assert services.resolve_market(market_slug=slug, by=user, **again).already_done
        else:
            with pytest.raises(ResolutionConflict):
                services.resolve_market(market_slug=slug, by=user, **again)
        assert services.resolve_market(market_slug=slug, by=user, **self.settled[slug]).already_done
        assert snapshot() == before

    # --- settling -----------------------------------------------------------

    def _settle(self, slug: str, by, expected_per_user, **how) -> None:
        """Resolve ``slug``; check payouts, balances and the emptied pool; a second resolve pays nothing."""
        market = Market.objects.get(slug=slug)
        assert market.status == Market.Status.OPEN
        users = {a.user_id: a.balance_micro for a in Account.objects.filter(kind=Account.Kind.USER)}
        expected = expected_per_user(market)
        resolution = services.resolve_market(market_slug=slug, by=by, note="state machine", sources=["https://example.org"], **how)
        assert not resolution.already_done
        assert resolution.payouts == expected
        for user_id, cash in users.items():
            assert Account.objects.get(user_id=user_id).balance_micro == cash + expected.get(user_id, 0)
        market.refresh_from_db()
        assert market.status == (Market.Status.CANCELLED if how.get("cancel") else Market.Status.RESOLVED)
        assert market.resolved_by_id == getattr(by, "pk", None)
        assert Account.objects.get(pk=market.pool_id).balance_micro == 0
        before = snapshot()
        assert services.resolve_market(market_slug=slug, by=by, **how).already_done
        assert snapshot() == before
        self.open.remove(slug)
        self.settled[slug] = how

    @staticmethod
    def _expected_payouts(market: Market, per_share: dict[str, int]) -> dict[int, int]:
        expected: dict[int, int] = {}
        for position in Position.objects.filter(market=market).select_related("outcome"):
            amount = position.shares_micro * per_share[position.outcome.slug] // MICRO
            if amount:
                expected[position.user_id] = expected.get(position.user_id, 0) + amount
        return expected

    @precondition(lambda self: self.open)
    @rule(data=st.data(), pick=OUTCOME_PICK, by=users)
    def resolve_to_outcome(self, data, pick, by):
        slug = self._open_market(data)
        winner = self._outcome(slug, pick)
        self._settle(
            slug, by,
            lambda market: self._expected_payouts(market, {o.slug: MICRO if o.slug == winner else 0 for o in market.outcomes.all()}),
            outcome=winner,
        )

    @precondition(lambda self: self.open)
    @rule(data=st.data(), weights=st.lists(st.integers(0, 1000), min_size=3, max_size=3), by=users)
    def resolve_to_probabilities(self, data, weights, by):
        slug = self._open_market(data)
        slugs = list(Outcome.objects.filter(market__slug=slug).order_by("position").values_list("slug", flat=True))
        weights = weights[: len(slugs)]
        total = sum(weights) or 1
        micro = [w * MICRO // total for w in weights]
        micro[0] += MICRO - sum(micro)
        per_share = dict(zip(slugs, micro))
        self._settle(
            slug, by,
            lambda market: self._expected_payouts(market, per_share),
            probabilities={s: format_micro(p) for s, p in per_share.items()},
        )

    @precondition(lambda self: self.open)
    @rule(data=st.data(), by=users)
    def cancel(self, data, by):
        slug = self._open_market(data)
        def refunds(market):
            net: dict[int, int] = {}
            for position in Position.objects.filter(market=market):
                net[position.user_id] = net.get(position.user_id, 0) + position.spent_micro - position.received_micro
            return {user_id: amount for user_id, amount in net.items() if amount > 0}

        self._settle(slug, by, refunds, cancel=True)

    # --- after every step -----------------------------------------------------

    @invariant()
    def money_is_consistent(self):
        """The audit passes; balances sum to zero; nobody but the treasury is negative; open pools cover max q_i."""
        assert run_audit().problems == []
        assert (Account.objects.aggregate(total=Sum("balance_micro"))["total"] or 0) == 0
        assert not Account.objects.exclude(kind=Account.Kind.TREASURY).filter(balance_micro__lt=0).exists()
        for market in Market.objects.filter(status=Market.Status.OPEN).annotate(biggest=Max("outcomes__shares_micro")):
            assert Account.objects.get(pk=market.pool_id).balance_micro >= market.biggest


def test_market_services_state_machine(db):
    """Random sequences of sign-ups, market creation, trades, replays and settlements keep every money invariant."""
    run_state_machine_as_test(
        MarketServices,
        settings=hsettings(
            max_examples=25, stateful_step_count=30, deadline=None, suppress_health_check=[HealthCheck.too_slow]
        ),
    )
