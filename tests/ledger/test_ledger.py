"""The double-entry ledger (``bellwether.ledger``) and the money audit.

Services: ``post_transfer`` moves money completely or not at all and writes
one immutable ``Transfer``; ``open_user_account`` grants the starting balance
once. The database backs the rules up with CHECK constraints, tested here
with raw SQL that bypasses the services. The audit
(``bellwether.markets.audit.run_audit`` and ``bellwether audit``) must pass
on a clean ledger and catch each kind of tampering. A Hypothesis property
drives random transfer sequences and checks the ledger's invariants after
every one.
"""

from __future__ import annotations

import io
from datetime import timedelta

import pytest
from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.db import IntegrityError, connection, transaction
from django.utils import timezone
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from bellwether.accounts.services import create_user
from bellwether.ledger.exceptions import InsufficientFunds, InvalidAmount
from bellwether.ledger.models import Account, Transfer
from bellwether.ledger.selectors import account_transfers, audit_ledger
from bellwether.ledger.services import (
    format_micro,
    get_treasury,
    lock_accounts,
    open_pool_account,
    open_user_account,
    post_transfer,
)
from bellwether.markets import services
from bellwether.markets.audit import run_audit
from bellwether.markets.models import Outcome, Position

MICRO = 1_000_000
ACCOUNT = Account._meta.db_table
TRANSFER = Transfer._meta.db_table
OUTCOME = Outcome._meta.db_table


def fresh(account: Account) -> Account:
    return Account.objects.get(pk=account.pk)


def balances() -> dict[int, int]:
    return dict(Account.objects.values_list("pk", "balance_micro"))


def raw(sql: str, params: list | tuple = ()) -> None:
    with connection.cursor() as cursor:
        cursor.execute(sql, params)


def raw_transfer(debit_id: int, credit_id: int, amount_micro: int) -> None:
    """Insert a transfer row behind the services' back (no balance updates)."""
    raw(
        f"INSERT INTO {TRANSFER} (debit_id, credit_id, amount_micro, kind, reference, memo, created_at) "
        "VALUES (%s, %s, %s, %s, %s, %s, %s)",
        [debit_id, credit_id, amount_micro, "grant", "tamper", "", timezone.now()],
    )


@pytest.fixture
def alice(db):
    return create_user(username="alice")


@pytest.fixture
def bob(db):
    return create_user(username="bob")


@pytest.fixture
def market(db):
    return services.create_market(
        question="Will the ledger balance?", liquidity_b_micro=100 * MICRO, close_at=timezone.now() + timedelta(days=1)
    )


# --- post_transfer --------------------------------------------------------


def test_post_transfer_moves_money_and_writes_one_transfer(alice, bob):
    """A transfer debits one account, credits the other by the same amount and writes exactly one row."""
    a, b = open_user_account(user=alice), open_user_account(user=bob)
    before = Transfer.objects.count()
    with transaction.atomic():
        locked = lock_accounts(ids=[a.pk, b.pk])
        transfer = post_transfer(debit=locked[a.pk], credit=locked[b.pk], amount_micro=12_500_000, kind=Transfer.Kind.BUY, reference="test:1", memo="m")
    assert Transfer.objects.count() == before + 1
    assert fresh(a).balance_micro == settings.STARTING_BALANCE_MICRO - 12_500_000
    assert fresh(b).balance_micro == settings.STARTING_BALANCE_MICRO + 12_500_000
    stored = Transfer.objects.get(pk=transfer.pk)
    assert (stored.debit_id, stored.credit_id, stored.amount_micro, stored.kind, stored.reference) == (a.pk, b.pk, 12_500_000, "buy", "test:1")
    # The in-memory accounts follow the database.
    assert locked[a.pk].balance_micro == fresh(a).balance_micro
    assert locked[b.pk].balance_micro == fresh(b).balance_micro
    assert account_transfers(account=a).first() == stored
    assert audit_ledger().problems == []


def test_transfers_are_immutable(alice, bob):
    """Saving an existing transfer again or deleting it raises, and the stored row stays as it was."""
    a, b = open_user_account(user=alice), open_user_account(user=bob)
    transfer = post_transfer(debit=a, credit=b, amount_micro=5, kind=Transfer.Kind.BUY)
    transfer.amount_micro = 6
    with pytest.raises(ValueError, match="immutable"):
        transfer.save()
    with pytest.raises(ValueError, match="immutable"):
        Transfer.objects.get(pk=transfer.pk).delete()
    assert Transfer.objects.get(pk=transfer.pk).amount_micro == 5
    assert audit_ledger().problems == []


@pytest.mark.parametrize("amount", [0, -1, -10 * MICRO, 1.5, 1.0, float("nan"), True, False, "5", None])
def test_post_transfer_refuses_non_positive_or_non_integer_amounts(alice, bob, amount):
    """Zero, negative, float, bool and non-number amounts raise InvalidAmount and change nothing."""
    a, b = open_user_account(user=alice), open_user_account(user=bob)
    before, count = balances(), Transfer.objects.count()
    with pytest.raises(InvalidAmount):
        post_transfer(debit=a, credit=b, amount_micro=amount, kind=Transfer.Kind.BUY)
    assert balances() == before
    assert Transfer.objects.count() == count


def test_post_transfer_refuses_the_same_account_on_both_sides(alice):
    """A transfer from an account to itself raises InvalidAmount and writes nothing."""
    a = open_user_account(user=alice)
    before, count = balances(), Transfer.objects.count()
    with pytest.raises(InvalidAmount):
        post_transfer(debit=a, credit=fresh(a), amount_micro=1, kind=Transfer.Kind.BUY)
    assert balances() == before
    assert Transfer.objects.count() == count


def test_overdraft_raises_insufficient_funds_and_changes_nothing(alice, bob):
    """Paying one micro-credit more than the balance raises InsufficientFunds; balances and transfers are untouched."""
    a, b = open_user_account(user=alice), open_user_account(user=bob)
    before, count = balances(), Transfer.objects.count()
    with pytest.raises(InsufficientFunds):
        with transaction.atomic():
            locked = lock_accounts(ids=[a.pk, b.pk])
            post_transfer(debit=locked[a.pk], credit=locked[b.pk], amount_micro=settings.STARTING_BALANCE_MICRO + 1, kind=Transfer.Kind.BUY)
    assert balances() == before
    assert Transfer.objects.count() == count
    # Exactly the whole balance is fine.
    post_transfer(debit=fresh(a), credit=fresh(b), amount_micro=settings.STARTING_BALANCE_MICRO, kind=Transfer.Kind.BUY)
    assert fresh(a).balance_micro == 0


def test_a_stale_account_copy_cannot_overdraw_past_the_database(alice, bob):
    """Handed a stale copy that shows more money than the row holds, post_transfer's write still hits the CHECK constraint.

    The whole transfer (balances and row) is rolled back.
    """
    a, b = open_user_account(user=alice), open_user_account(user=bob)
    stale = fresh(a)
    post_transfer(debit=fresh(a), credit=b, amount_micro=settings.STARTING_BALANCE_MICRO - 10, kind=Transfer.Kind.BUY)
    before, count = balances(), Transfer.objects.count()
    with pytest.raises(IntegrityError):
        with transaction.atomic():
            post_transfer(debit=stale, credit=b, amount_micro=20, kind=Transfer.Kind.BUY)
    assert balances() == before
    assert Transfer.objects.count() == count
    assert audit_ledger().problems == []


def test_pool_overdraft_raises_insufficient_funds(db):
    """A pool cannot pay out more than it holds either."""
    pool, other = open_pool_account(name="p"), open_pool_account(name="q")
    treasury = get_treasury()
    post_transfer(debit=treasury, credit=pool, amount_micro=10, kind=Transfer.Kind.SUBSIDY)
    with pytest.raises(InsufficientFunds):
        post_transfer(debit=fresh(pool), credit=other, amount_micro=11, kind=Transfer.Kind.PAYOUT)
    assert fresh(pool).balance_micro == 10
    assert fresh(other).balance_micro == 0


def test_treasury_may_go_negative(db):
    """The treasury mints money: paying out beyond its balance is allowed and leaves it negative."""
    treasury = get_treasury()
    pool = open_pool_account(name="p")
    start = fresh(treasury).balance_micro
    post_transfer(debit=fresh(treasury), credit=pool, amount_micro=abs(start) + 7 * MICRO, kind=Transfer.Kind.SUBSIDY)
    assert fresh(treasury).balance_micro < 0
    assert audit_ledger().problems == []


# --- the database's own constraints -------------------------------------


@pytest.mark.parametrize("kind", ["user", "pool"])
def test_database_refuses_an_overdraft(alice, kind):
    """A raw UPDATE that takes a user account or a pool below zero violates the CHECK constraint."""
    if kind == "user":
        account = open_user_account(user=alice)
    else:
        account = open_pool_account(name="p")
        post_transfer(debit=get_treasury(), credit=account, amount_micro=3 * MICRO, kind=Transfer.Kind.SUBSIDY)
    held = fresh(account).balance_micro
    with pytest.raises(IntegrityError):
        with transaction.atomic():
            raw(f"UPDATE {ACCOUNT} SET balance_micro = balance_micro - %s WHERE id = %s", [held + 1, account.pk])
    assert fresh(account).balance_micro == held
    # Down to exactly zero is allowed.
    with transaction.atomic():
        raw(f"UPDATE {ACCOUNT} SET balance_micro = balance_micro - %s WHERE id = %s", [held, account.pk])
    assert fresh(account).balance_micro == 0


def test_database_lets_the_treasury_go_negative(db):
    """The CHECK constraint exempts the treasury."""
    treasury = get_treasury()
    with transaction.atomic():
        raw(f"UPDATE {ACCOUNT} SET balance_micro = %s WHERE id = %s", [-(10**15), treasury.pk])
    assert fresh(treasury).balance_micro == -(10**15)


@pytest.mark.parametrize("amount", [0, -1])
def test_database_refuses_a_non_positive_transfer(alice, bob, amount):
    """A raw INSERT of a transfer with amount <= 0 violates the CHECK constraint."""
    a, b = open_user_account(user=alice), open_user_account(user=bob)
    count = Transfer.objects.count()
    with pytest.raises(IntegrityError):
        with transaction.atomic():
            raw_transfer(a.pk, b.pk, amount)
    assert Transfer.objects.count() == count


def test_database_refuses_a_transfer_to_the_same_account(alice):
    """A raw INSERT of a transfer whose debit and credit are one account violates the CHECK constraint."""
    a = open_user_account(user=alice)
    with pytest.raises(IntegrityError):
        with transaction.atomic():
            raw_transfer(a.pk, a.pk, 1)


def test_database_allows_one_treasury_only(db):
    """A second treasury row violates the partial unique constraint."""
    get_treasury()
    with pytest.raises(IntegrityError):
        with transaction.atomic():
            Account.objects.create(kind=Account.Kind.TREASURY, name="Second treasury")


# --- opening accounts -----------------------------------------------------


def test_open_user_account_grants_the_starting_balance_once(db):
    """The first call opens the account with STARTING_BALANCE_MICRO from the treasury; later calls return it unchanged."""
    user = get_user_model().objects.create_user(username="carol")
    first = open_user_account(user=user)
    second = open_user_account(user=user)
    assert first.pk == second.pk
    assert Account.objects.filter(user=user).count() == 1
    grants = Transfer.objects.filter(credit=first, kind=Transfer.Kind.GRANT)
    assert grants.count() == 1
    assert grants.get().amount_micro == settings.STARTING_BALANCE_MICRO
    assert grants.get().debit_id == get_treasury().pk
    assert fresh(first).balance_micro == settings.STARTING_BALANCE_MICRO
    assert fresh(get_treasury()).balance_micro == -settings.STARTING_BALANCE_MICRO
    assert audit_ledger().problems == []


def test_create_user_opens_the_account_and_a_second_open_grants_nothing(db):
    """accounts.services.create_user opens the funded account; calling open_user_account again adds no grant."""
    user = create_user(username="dave")
    account = open_user_account(user=user)
    assert fresh(account).balance_micro == settings.STARTING_BALANCE_MICRO
    assert Transfer.objects.filter(credit=account, kind=Transfer.Kind.GRANT).count() == 1
    assert account.kind == Account.Kind.USER


def test_open_user_account_without_a_starting_balance_writes_no_transfer(db, settings):
    """With STARTING_BALANCE_MICRO = 0 the account opens empty and no zero-amount transfer is attempted."""
    settings.STARTING_BALANCE_MICRO = 0
    user = get_user_model().objects.create_user(username="erin")
    account = open_user_account(user=user)
    assert fresh(account).balance_micro == 0
    assert not Transfer.objects.filter(credit=account).exists()


def test_get_treasury_is_created_once(db):
    """get_treasury returns the same single row every time."""
    assert get_treasury().pk == get_treasury().pk
    assert Account.objects.filter(kind=Account.Kind.TREASURY).count() == 1


@pytest.mark.parametrize(
    ("micro", "text"),
    [(0, "0.000000"), (1, "0.000001"), (-1, "-0.000001"), (12_500_000, "12.500000"), (-12_500_000, "-12.500000"),
     (1_000_000, "1.000000"), (999_999, "0.999999"), (10**15 + 7, "1000000000.000007")],
)
def test_format_micro(micro, text):
    """format_micro renders micro-credits as a decimal string with six places and a sign."""
    assert format_micro(micro) == text


# --- the audit -------------------------------------------------------------


def _trade_a_little(market, alice, bob):
    services.place_trade(user=alice, market_slug=market.slug, request=services.TradeRequest(outcome="yes", side="buy", shares_micro=30 * MICRO))
    services.place_trade(user=bob, market_slug=market.slug, request=services.TradeRequest(outcome="no", side="buy", amount_micro=10 * MICRO))
    services.place_trade(user=alice, market_slug=market.slug, request=services.TradeRequest(outcome="yes", side="sell", shares_micro=5 * MICRO))


def _audit_command() -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = 0
    try:
        call_command("audit", stdout=out, stderr=err)
    except SystemExit as exc:
        code = exc.code
    return code, out.getvalue(), err.getvalue()


def test_audit_passes_on_a_clean_ledger(market, alice, bob):
    """After grants, a subsidy and trades, the audit finds nothing and the command exits 0 saying so."""
    _trade_a_little(market, alice, bob)
    report = run_audit()
    assert report.problems == []
    assert report.total_micro == 0
    assert report.transfers == Transfer.objects.count()
    assert report.accounts == Account.objects.count()
    code, out, err = _audit_command()
    assert code == 0
    assert "audit passed" in out
    assert err == ""


def test_audit_passes_after_resolution(market, alice, bob):
    """A resolved market's emptied pool and the payouts keep the audit clean."""
    _trade_a_little(market, alice, bob)
    services.resolve_market(market_slug=market.slug, by=alice, outcome="yes")
    assert run_audit().problems == []


def _assert_audit_fails(fragment: str) -> None:
    problems = run_audit().problems
    assert any(fragment in p for p in problems), problems
    code, _out, err = _audit_command()
    assert code == 1
    assert "audit failed" in err
    assert fragment in err


def test_audit_catches_a_balance_changed_without_a_transfer(market, alice, bob):
    """A balance edited with raw SQL no longer matches its transfers, and the sum is no longer zero."""
    _trade_a_little(market, alice, bob)
    account = open_user_account(user=alice)
    raw(f"UPDATE {ACCOUNT} SET balance_micro = balance_micro + 1 WHERE id = %s", [account.pk])
    _assert_audit_fails(f"account {account.pk} ")
    assert any("not 0" in p for p in run_audit().problems)


def test_audit_catches_a_transfer_without_balance_updates(market, alice, bob):
    """A transfer row inserted with raw SQL, without moving the balances, shows up on both accounts."""
    _trade_a_little(market, alice, bob)
    a, b = open_user_account(user=alice), open_user_account(user=bob)
    raw_transfer(a.pk, b.pk, 3 * MICRO)
    problems = run_audit().problems
    assert any(f"account {a.pk} " in p for p in problems)
    assert any(f"account {b.pk} " in p for p in problems)
    _assert_audit_fails("transfers say")


def test_audit_catches_a_changed_outcome_quantity(market, alice, bob):
    """An outcome's q_i edited with raw SQL no longer equals what its holders hold."""
    _trade_a_little(market, alice, bob)
    outcome = market.outcomes.get(slug="yes")
    raw(f"UPDATE {OUTCOME} SET shares_micro = shares_micro + 1 WHERE id = %s", [outcome.pk])
    _assert_audit_fails(f"outcome {outcome.pk}:")


def test_audit_catches_a_position_that_disagrees_with_its_trades(market, alice, bob):
    """A position edited with raw SQL no longer equals the sum of its fills."""
    _trade_a_little(market, alice, bob)
    position = Position.objects.get(user=alice, market=market)
    raw(f"UPDATE {Position._meta.db_table} SET shares_micro = shares_micro + 1 WHERE id = %s", [position.pk])
    _assert_audit_fails(f"position of user {alice.pk}")


def test_audit_catches_a_pool_drained_below_its_largest_payout(market, alice, bob):
    """A pool drained (with a matching, balanced transfer) below max q_i of its open market fails the pool check alone."""
    _trade_a_little(market, alice, bob)
    pool, treasury = fresh(market.pool), get_treasury()
    biggest = max(market.outcomes.values_list("shares_micro", flat=True))
    drain = pool.balance_micro - (biggest - 1)
    assert drain > 0
    raw(f"UPDATE {ACCOUNT} SET balance_micro = balance_micro - %s WHERE id = %s", [drain, pool.pk])
    raw(f"UPDATE {ACCOUNT} SET balance_micro = balance_micro + %s WHERE id = %s", [drain, treasury.pk])
    raw_transfer(pool.pk, treasury.pk, drain)
    problems = run_audit().problems
    assert len(problems) == 1, problems  # the ledger itself still balances
    _assert_audit_fails(f"market {market.slug}: pool holds {biggest - 1}")


def test_audit_catches_a_settled_market_whose_pool_still_holds_money(market, alice, bob):
    """A resolved market's pool must be empty; money moved back in (balanced) is reported."""
    _trade_a_little(market, alice, bob)
    services.resolve_market(market_slug=market.slug, by=alice, outcome="no")
    treasury = get_treasury()
    raw(f"UPDATE {ACCOUNT} SET balance_micro = balance_micro - 5 WHERE id = %s", [treasury.pk])
    raw(f"UPDATE {ACCOUNT} SET balance_micro = balance_micro + 5 WHERE id = %s", [market.pool_id])
    raw_transfer(treasury.pk, market.pool_id, 5)
    _assert_audit_fails("is settled but its pool still holds 5")


# --- property: random transfer sequences ----------------------------------

N_ACCOUNTS = 4  # index 0 is the treasury, 1-2 users, 3 a pool

instructions = st.lists(
    st.tuples(
        st.integers(0, N_ACCOUNTS - 1),
        st.integers(0, N_ACCOUNTS - 1),
        # Small and huge amounts: many of the huge ones must fail for insufficient funds.
        st.one_of(st.integers(1, 5 * MICRO), st.integers(1, 3 * settings.STARTING_BALANCE_MICRO), st.sampled_from([0, -1])),
    ),
    min_size=1,
    max_size=25,
)


class _Rollback(Exception):
    pass


@pytest.mark.django_db
@hsettings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(steps=instructions)
def test_random_transfers_keep_the_ledger_consistent(steps):
    """After every transfer attempt: balances equal the recomputed transfers, they sum to 0, and only the treasury is negative.

    Failed attempts (insufficient funds, same account, non-positive amount)
    change nothing. Each example runs in its own savepoint, rolled back.
    """
    try:
        with transaction.atomic():
            User = get_user_model()
            users = [User.objects.create_user(username=f"prop{i}") for i in range(2)]
            accounts = [get_treasury(), *(open_user_account(user=u) for u in users), open_pool_account(name="pool")]
            assert len(accounts) == N_ACCOUNTS
            ids = [a.pk for a in accounts]
            model = {pk: fresh_balance for pk, fresh_balance in Account.objects.filter(pk__in=ids).values_list("pk", "balance_micro")}
            for debit_i, credit_i, amount in steps:
                debit_id, credit_id = ids[debit_i], ids[credit_i]
                expect_ok = amount > 0 and debit_id != credit_id and (debit_i == 0 or model[debit_id] >= amount)
                try:
                    with transaction.atomic():
                        locked = lock_accounts(ids=[debit_id, credit_id])
                        post_transfer(debit=locked[debit_id], credit=locked[credit_id], amount_micro=amount, kind=Transfer.Kind.BUY)
                except InsufficientFunds:
                    assert not expect_ok and amount > 0 and debit_id != credit_id and debit_i != 0
                except InvalidAmount:
                    assert not expect_ok and (amount <= 0 or debit_id == credit_id)
                else:
                    assert expect_ok
                    model[debit_id] -= amount
                    model[credit_id] += amount
                stored = dict(Account.objects.filter(pk__in=ids).values_list("pk", "balance_micro"))
                assert stored == model
                report = audit_ledger()
                assert report.problems == []
                assert report.total_micro == 0
                assert sum(stored.values()) == 0
                assert all(v >= 0 for pk, v in stored.items() if pk != ids[0])
            raise _Rollback
    except _Rollback:
        pass
    assert not get_user_model().objects.filter(username__startswith="prop").exists()


@pytest.mark.django_db
@pytest.mark.parametrize("amount", [2**31 - 1, 2**31, 2**32 + 7, 10**15])
def test_amounts_past_32_bits_move_exactly(amount):
    """A transfer of more than 2,147 credits (2**31 micro-credits) lands exactly, on either database.

    With server-side binding, PostgreSQL once received such amounts as 32-bit
    integers and wrapped them to negative numbers.
    """
    user = get_user_model().objects.create_user(username="big")
    account = open_user_account(user=user)
    treasury = get_treasury()
    before = {a.pk: a.balance_micro for a in Account.objects.filter(pk__in=[account.pk, treasury.pk])}
    for debit, credit in ((treasury, account), (account, treasury)):
        with transaction.atomic():
            locked = lock_accounts(ids=[debit.pk, credit.pk])
            post_transfer(debit=locked[debit.pk], credit=locked[credit.pk], amount_micro=amount, kind=Transfer.Kind.BUY)
        middle = dict(Account.objects.filter(pk__in=[account.pk, treasury.pk]).values_list("pk", "balance_micro"))
        if debit == treasury:
            assert middle == {account.pk: before[account.pk] + amount, treasury.pk: before[treasury.pk] - amount}
    assert dict(Account.objects.filter(pk__in=[account.pk, treasury.pk]).values_list("pk", "balance_micro")) == before
