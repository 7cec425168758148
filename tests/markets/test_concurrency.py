"""Trading under real concurrency: threads, each with its own connection.

These tests run against the real database (``transaction=True``), so the
locks the services take are the ones production takes: IMMEDIATE
transactions on SQLite, row locks (``select_for_update``) on PostgreSQL.
Every thread closes its connection when it finishes. Set-up (users,
markets) happens in the test's thread before any worker starts, and the
test's own connection is closed before the workers start, so PostgreSQL's
connection pool has a connection for every worker.
"""

from __future__ import annotations

import random
import threading
import time
from collections import Counter
from collections.abc import Callable
from datetime import timedelta

import pytest
from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.sql import emit_post_migrate_signal
from django.db import DEFAULT_DB_ALIAS, connection
from django.db.models import Sum
from django.utils import timezone

from bellwether.accounts.services import create_user
from bellwether.ledger.models import Account, Transfer
from bellwether.markets import services
from bellwether.markets.audit import run_audit
from bellwether.markets.exceptions import InsufficientFunds, InvalidTrade, MarketClosed
from bellwether.markets.models import IdempotencyKey, Market, Outcome, Position, Trade

# Only the apps these tests write to are flushed after each test: on PostgreSQL,
# truncating every Wagtail table after each test took seconds.
AVAILABLE_APPS = [
    "bellwether.ledger",
    "bellwether.markets",
    "bellwether.accounts",
    "django.contrib.auth",
    "django.contrib.contenttypes",
]
pytestmark = pytest.mark.django_db(transaction=True, available_apps=AVAILABLE_APPS)


@pytest.fixture(scope="module", autouse=True)
def _recreate_content_types_and_permissions(django_db_setup, django_db_blocker):
    """After the module, recreate every app's content types and permissions.

    A flush limited to AVAILABLE_APPS re-emits post_migrate for those apps
    only; this leaves the database as a full flush would for the tests after.
    """
    yield
    with django_db_blocker.unblock():
        emit_post_migrate_signal(verbosity=0, interactive=False, db=DEFAULT_DB_ALIAS)
        connection.close()


MICRO = 1_000_000
START = settings.STARTING_BALANCE_MICRO
IS_POSTGRES = settings.DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql"
Req = services.TradeRequest


def new_market(question: str, outcomes: list[str] | None = None) -> Market:
    return services.create_market(
        question=question, outcomes=outcomes, liquidity_b_micro=100 * MICRO, close_at=timezone.now() + timedelta(days=1)
    )


def run_threads(workers: list[Callable[[], object]], timeout: float = 60) -> list[tuple[object, BaseException | None]]:
    """Start every worker at once (behind a barrier); return (result, exception) per worker, in order.

    Each worker closes its database connection when it ends, whatever happens.
    """
    barrier = threading.Barrier(len(workers))
    results: list[tuple[object, BaseException | None]] = [(None, None)] * len(workers)

    def run(i: int, work: Callable[[], object]) -> None:
        try:
            barrier.wait(timeout=timeout)
            results[i] = (work(), None)
        except BaseException as exc:  # noqa: BLE001 - reported to the test
            results[i] = (None, exc)
        finally:
            connection.close()

    connection.close()  # hand the test thread's connection back before the workers need theirs
    threads = [threading.Thread(target=run, args=(i, w), daemon=True) for i, w in enumerate(workers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout)
        assert not t.is_alive(), "a worker thread hung"
    return results


def assert_money_consistent() -> None:
    """The audit passes and no account but the treasury is negative."""
    assert run_audit().problems == []
    assert not Account.objects.exclude(kind=Account.Kind.TREASURY).filter(balance_micro__lt=0).exists()
    assert Account.objects.aggregate(total=Sum("balance_micro"))["total"] == 0


def assert_market_consistent(market: Market, trades: int) -> None:
    """The market's counters and quantities agree with its trades and positions."""
    market.refresh_from_db()
    assert Trade.objects.filter(market=market).count() == trades
    assert market.trade_count == trades
    assert market.volume_micro == (Trade.objects.filter(market=market).aggregate(v=Sum("amount_micro"))["v"] or 0)
    for outcome in Outcome.objects.filter(market=market):
        held = Position.objects.filter(outcome=outcome).aggregate(s=Sum("shares_micro"))["s"] or 0
        assert outcome.shares_micro == held
    biggest = max(market.outcomes.values_list("shares_micro", flat=True))
    assert Account.objects.get(pk=market.pool_id).balance_micro >= biggest


def assert_users_balances_follow_their_positions(users) -> None:
    """Each user's cash is the grant, minus what they spent, plus what they received and were paid."""
    for user in users:
        totals = Position.objects.filter(user=user).aggregate(
            spent=Sum("spent_micro"), received=Sum("received_micro"), paid=Sum("payout_micro")
        )
        expected = START - (totals["spent"] or 0) + (totals["received"] or 0) + (totals["paid"] or 0)
        assert Account.objects.get(user=user).balance_micro == expected, user.username


def trader(user, markets: list[Market], n_trades: int, seed: int):
    """Return a worker making ``n_trades`` random small trades; it sells only what it holds.

    ``markets`` come from ``_with_outcome_slugs`` (read before the threads start).
    The user trades in this worker only, so its own tally of holdings is exact.
    Returns (successes, Counter of exception types, successes per market slug).
    """

    def work():
        rng = random.Random(seed)
        held: dict[tuple[str, str], int] = {}
        successes, errors, per_market = 0, Counter(), Counter()
        for _ in range(n_trades):
            market = rng.choice(markets)
            outcome = rng.choice(market.outcome_slugs)
            have = held.get((market.slug, outcome), 0)
            roll = rng.random()
            if have and roll < 0.25:
                request, sold = Req(outcome=outcome, side="sell", shares_micro=rng.randint(1, have)), True
            elif have and roll < 0.35:
                request, sold = Req(outcome=outcome, side="sell", sell_all=True), True
            elif roll < 0.7:
                request, sold = Req(outcome=outcome, side="buy", shares_micro=rng.randint(1, 5 * MICRO)), False
            else:
                request, sold = Req(outcome=outcome, side="buy", amount_micro=rng.randint(MICRO // 10, 3 * MICRO)), False
            try:
                services.place_trade(user=user, market_slug=market.slug, request=request)
            except Exception as exc:  # noqa: BLE001 - counted by type
                errors[type(exc).__name__] += 1
                continue
            successes += 1
            per_market[market.slug] += 1
            # Recompute the holding from the database: exact, since only this thread trades for this user.
            held[(market.slug, outcome)] = (
                Position.objects.filter(user=user, market__slug=market.slug, outcome__slug=outcome).values_list("shares_micro", flat=True).first() or 0
            )
            assert not sold or held[(market.slug, outcome)] < have
        return successes, errors, per_market

    return work


def _with_outcome_slugs(market: Market) -> Market:
    """Remember the market's outcome slugs on the instance, for the workers."""
    market.outcome_slugs = list(market.outcomes.values_list("slug", flat=True))
    return market


def _collect(results):
    successes, errors, per_market = 0, Counter(), Counter()
    for value, exc in results:
        assert exc is None, repr(exc)
        s, e, p = value
        successes += s
        errors += e
        per_market += p
    return successes, errors, per_market


def test_many_users_trading_one_market_at_once():
    """8 users x 15 buys and sells on one market at once: no errors at all, every trade recorded, the money balances.

    No "database is locked" (SQLite) and no unretried deadlock (PostgreSQL):
    nothing in this scenario should fail, so any exception fails the test.
    """
    market = _with_outcome_slugs(new_market("Will eight traders agree?"))
    users = [create_user(username=f"one{i}") for i in range(8)]
    results = run_threads([trader(u, [market], 15, seed=i) for i, u in enumerate(users)])
    successes, errors, _ = _collect(results)
    assert errors == Counter(), errors
    assert successes == 8 * 15
    assert Trade.objects.count() == successes
    assert_market_consistent(market, successes)
    assert_money_consistent()
    assert_users_balances_follow_their_positions(users)


def test_many_users_trading_several_markets_at_once():
    """8 users x 15 trades spread over 4 markets (binary and 3-outcome) at once: every market and the ledger stay consistent."""
    markets = [
        _with_outcome_slugs(new_market(f"Binary question {i}?")) for i in range(2)
    ] + [_with_outcome_slugs(new_market(f"Three-way question {i}?", outcomes=["Red", "Green", "Blue"])) for i in range(2)]
    users = [create_user(username=f"many{i}") for i in range(8)]
    results = run_threads([trader(u, markets, 15, seed=100 + i) for i, u in enumerate(users)])
    successes, errors, per_market = _collect(results)
    assert errors == Counter(), errors
    assert successes == 8 * 15
    assert Trade.objects.count() == successes
    assert sum(per_market.values()) == successes
    for market in markets:
        assert_market_consistent(market, per_market[market.slug])
    assert_money_consistent()
    assert_users_balances_follow_their_positions(users)


def test_concurrent_duplicates_of_one_idempotency_key_trade_once():
    """6 identical requests with one Idempotency-Key, started together: one trade, one debit, the same trade_id for all."""
    market = new_market("Will the retry storm trade once?")
    user = create_user(username="retrier")
    request = Req(outcome="yes", side="buy", shares_micro=10 * MICRO)

    def call():
        return services.place_trade(user=user, market_slug=market.slug, request=request, idempotency_key="key-1")

    results = run_threads([call] * 6)
    assert [exc for _, exc in results] == [None] * 6
    bodies = [body for body, _ in results]
    trade = Trade.objects.get()
    assert {b["trade_id"] for b in bodies} == {trade.pk}
    assert sum(1 for b in bodies if not b.get("replayed")) == 1
    assert IdempotencyKey.objects.filter(user=user, key="key-1").count() == 1
    assert Account.objects.get(user=user).balance_micro == START - trade.amount_micro
    assert Transfer.objects.filter(kind=Transfer.Kind.BUY).count() == 1
    assert_market_consistent(market, 1)
    assert_money_consistent()


def test_concurrent_duplicates_of_a_large_idempotent_buy_all_get_the_stored_response():
    """Duplicates of a buy the balance can pay only once still all receive the one trade's response, not InsufficientFunds.

    The key decides: once one duplicate has traded, the others are replays,
    whatever the trade would cost now.
    """
    market = new_market("Will the big retry replay?")
    user = create_user(username="bigretrier")
    request = Req(outcome="yes", side="buy", amount_micro=START * 6 // 10)

    def call():
        return services.place_trade(user=user, market_slug=market.slug, request=request, idempotency_key="big")

    results = run_threads([call] * 6)
    errors = Counter(type(exc).__name__ for _, exc in results if exc is not None)
    trade = Trade.objects.get()
    assert Account.objects.get(user=user).balance_micro == START - trade.amount_micro
    assert_money_consistent()
    assert errors == Counter(), errors
    assert {body["trade_id"] for body, _ in results} == {trade.pk}


@pytest.mark.parametrize("n_markets", [1, 4])
def test_racing_buys_cannot_overdraw_a_balance(n_markets):
    """One user fires 16 buys of 30% of the starting balance at once (on one market, or spread over 4).

    At most three can be paid for; the rest fail with InsufficientFunds,
    the balance never goes negative and the audit passes. Spread over
    several markets, only the account's own row lock stands between the
    buys and an overdraft.
    """
    markets = [new_market(f"Race question {i}?") for i in range(n_markets)]
    user = create_user(username="racer")
    budget = START * 3 // 10

    def buyer(i):
        def work():
            outcome = Counter()
            for _ in range(2):
                try:
                    services.place_trade(user=user, market_slug=markets[i % n_markets].slug, request=Req(outcome="yes", side="buy", amount_micro=budget))
                    outcome["ok"] += 1
                except Exception as exc:  # noqa: BLE001 - counted by type
                    outcome[type(exc).__name__] += 1
            return outcome

        return work

    results = run_threads([buyer(i) for i in range(8)])
    assert [exc for _, exc in results] == [None] * 8
    tally = sum((value for value, _ in results), Counter())
    assert set(tally) <= {"ok", InsufficientFunds.__name__}, tally
    spent = Trade.objects.filter(user=user).aggregate(s=Sum("amount_micro"))["s"]
    assert tally["ok"] == Trade.objects.filter(user=user).count()
    assert tally["ok"] * budget >= spent  # each buy costs at most its budget
    assert spent <= START
    assert tally["ok"] == 3  # each costs within a micro-share's price of the budget, so a 4th never fits
    assert tally[InsufficientFunds.__name__] == 16 - 3
    balance = Account.objects.get(user=user).balance_micro
    assert balance == START - spent >= 0
    for market in markets:
        assert_market_consistent(market, Trade.objects.filter(market=market).count())
    assert_money_consistent()


def test_markets_with_the_same_question_created_at_once_get_distinct_slugs():
    """8 markets with the same question created at once all open, each with its own slug and funded pool."""

    def create():
        return new_market("Will two editors ask the same thing?")

    results = run_threads([create] * 8)
    errors = Counter(type(exc).__name__ for _, exc in results if exc is not None)
    assert errors == Counter(), errors
    assert len({market.slug for market, _ in results}) == 8
    assert_money_consistent()


def test_first_trades_of_a_new_user_racing_open_one_account_with_one_grant():
    """6 first trades of a user who has no cash account yet, at once: one account, one starting grant, 6 trades."""
    market = new_market("Will the newcomer be paid twice?")
    user = get_user_model().objects.create_user(username="newcomer")
    assert not Account.objects.filter(user=user).exists()

    def buy():
        return services.place_trade(user=user, market_slug=market.slug, request=Req(outcome="yes", side="buy", shares_micro=MICRO))

    results = run_threads([buy] * 6)
    assert [exc for _, exc in results] == [None] * 6
    account = Account.objects.get(user=user)
    assert Transfer.objects.filter(credit=account, kind=Transfer.Kind.GRANT).count() == 1
    assert_market_consistent(market, 6)
    assert_users_balances_follow_their_positions([user])
    assert_money_consistent()


def test_racing_sells_cannot_sell_a_share_twice():
    """One user holding 10 shares fires 6 sells of 4 shares at once: exactly two succeed, the rest are InvalidTrade.

    The position is read under the market's lock, so no two sells can both
    see the same shares.
    """
    market = new_market("Will the seller double-dip?")
    user = create_user(username="seller")
    services.place_trade(user=user, market_slug=market.slug, request=Req(outcome="no", side="buy", shares_micro=10 * MICRO))

    def sell():
        return services.place_trade(user=user, market_slug=market.slug, request=Req(outcome="no", side="sell", shares_micro=4 * MICRO))

    results = run_threads([sell] * 6)
    errors = Counter(type(exc).__name__ for _, exc in results if exc is not None)
    assert errors == Counter({InvalidTrade.__name__: 4}), errors
    assert Trade.objects.filter(side=Trade.Side.SELL).count() == 2
    assert Position.objects.get(user=user).shares_micro == 2 * MICRO
    assert_market_consistent(market, 3)
    assert_users_balances_follow_their_positions([user])
    assert_money_consistent()


def test_resolution_racing_trades():
    """A resolver resolves while 6 traders keep buying: each trade either lands before resolution and is paid, or fails with MarketClosed.

    Every trader stops at its first MarketClosed; no other error occurs.
    Every share bought is paid 1 credit (YES wins), the pool is emptied and
    the audit passes.
    """
    market = new_market("Will resolution wait for nobody?")
    traders = [create_user(username=f"rt{i}") for i in range(6)]
    resolver = create_user(username="resolver", roles=("resolver",))

    def keep_buying(user, seed):
        def work():
            rng = random.Random(seed)
            done, deadline = 0, time.monotonic() + 30
            while time.monotonic() < deadline:
                try:
                    services.place_trade(
                        user=user, market_slug=market.slug, request=Req(outcome=rng.choice(["yes", "no"]), side="buy", amount_micro=MICRO // 5)
                    )
                except MarketClosed:
                    return done, "closed"
                done += 1
                time.sleep(rng.random() / 500)  # a little air between a reader's clicks
            return done, "never closed"

        return work

    def resolve():
        time.sleep(0.1)
        return services.resolve_market(market_slug=market.slug, by=resolver, outcome="yes", note="race")

    results = run_threads([keep_buying(u, i) for i, u in enumerate(traders)] + [resolve])
    assert [exc for _, exc in results] == [None] * 7
    resolution = results[-1][0]
    assert not resolution.already_done
    counts = [value for value, _ in results[:-1]]
    assert all(state == "closed" for _, state in counts), counts
    done = sum(n for n, _ in counts)
    assert done > 0, "no trade landed before the resolution: the race was not exercised"
    assert Trade.objects.count() == done
    market.refresh_from_db()
    assert market.status == Market.Status.RESOLVED
    assert not Trade.objects.filter(created_at__gt=market.resolved_at).exists()
    for user in traders:
        yes = Position.objects.filter(user=user, outcome__slug="yes").values_list("shares_micro", flat=True).first() or 0
        assert resolution.payouts.get(user.pk, 0) == yes
        for position in Position.objects.filter(user=user):
            assert position.payout_micro == (position.shares_micro if position.outcome.slug == "yes" else 0)
    assert Account.objects.get(pk=market.pool_id).balance_micro == 0
    assert_users_balances_follow_their_positions(traders)
    assert_money_consistent()


@pytest.mark.parametrize("how", [{"outcome": "no"}, {"probabilities": {"yes": "0.3", "no": "0.7"}}, {"cancel": True}])
def test_concurrent_resolutions_pay_once(how):
    """4 resolvers resolve (or cancel) the same market at once: exactly one pays, the others report already_done."""
    market = new_market("Will two resolvers pay twice?")
    users = [create_user(username=f"holder{i}") for i in range(4)]
    for i, user in enumerate(users):
        services.place_trade(user=user, market_slug=market.slug, request=Req(outcome=["yes", "no"][i % 2], side="buy", shares_micro=(i + 1) * 7 * MICRO))
    services.place_trade(user=users[0], market_slug=market.slug, request=Req(outcome="yes", side="sell", shares_micro=3 * MICRO))
    resolver = create_user(username="resolver", roles=("resolver",))

    def resolve():
        return services.resolve_market(market_slug=market.slug, by=resolver, **how)

    results = run_threads([resolve] * 4)
    assert [exc for _, exc in results] == [None] * 4
    done = [r.already_done for r, _ in results]
    assert sorted(done) == [False, True, True, True]
    winner = next(r for r, _ in results if not r.already_done)
    kind = Transfer.Kind.REFUND if how.get("cancel") else Transfer.Kind.PAYOUT
    paid = Transfer.objects.filter(kind=kind, reference=f"market:{market.pk}")
    assert paid.count() == len(winner.payouts) > 0
    assert paid.aggregate(s=Sum("amount_micro"))["s"] == sum(winner.payouts.values())
    assert Transfer.objects.filter(kind=Transfer.Kind.POOL_RETURN).count() <= 1
    assert_users_balances_follow_their_positions(users)
    assert_money_consistent()
