"""Every money movement: post a transfer, open an account."""

from __future__ import annotations

from django.conf import settings
from django.db import IntegrityError, transaction
from collections.abc import Iterable

from django.db.models import BigIntegerField, F, Q, Value

from .exceptions import InsufficientFunds, InvalidAmount
from .models import Account, Transfer


def get_treasury() -> Account:
    """Return the treasury account, creating it once."""
    treasury = Account.objects.filter(kind=Account.Kind.TREASURY).first()
    if treasury is None:
        try:
            with transaction.atomic():
                treasury = Account.objects.create(kind=Account.Kind.TREASURY, name="Treasury")
        except IntegrityError:
            treasury = Account.objects.get(kind=Account.Kind.TREASURY)
    return treasury


def lock_accounts(*, ids: Iterable[int] = (), user=None) -> dict[int, Account]:
    """Lock the accounts with ``ids``, and ``user``'s cash account, in id order; return them by id.

    Call inside a transaction, after locking any market row (the global lock
    order is market, then accounts by id, so two trades cannot deadlock).
    One query whatever the number of accounts.
    """
    condition = Q(pk__in=list(ids))
    if user is not None:
        condition |= Q(user_id=user.pk)
    return {a.pk: a for a in Account.objects.select_for_update().filter(condition).order_by("pk")}


def bigint(value: int) -> Value:
    """Return ``value`` as a BIGINT for arithmetic with F() on micro-unit columns.

    Django types a bare Python int in ``F("x") + n`` as an IntegerField, and
    with server-side binding on PostgreSQL it is sent as a 32-bit integer:
    2,147,483,648 micro-credits (about 2,147 credits) arrived as a negative
    number. Declaring the type keeps every amount exact.
    """
    return Value(value, output_field=BigIntegerField())


def post_transfer(
    *, debit: Account, credit: Account, amount_micro: int, kind: str, reference: str = "", memo: str = ""
) -> Transfer:
    """Move ``amount_micro`` from ``debit`` to ``credit`` and record it.

    Call inside a transaction holding both accounts' row locks, with
    ``debit.balance_micro`` read under that lock; the balance is checked
    here and, as a backstop, by the database's no-overdraft constraint.
    """
    if isinstance(amount_micro, bool) or not isinstance(amount_micro, int) or amount_micro <= 0:
        raise InvalidAmount(f"amount must be a positive whole number of micro-credits, not {amount_micro!r}")
    if debit.pk == credit.pk:
        raise InvalidAmount("a transfer needs two different accounts")
    if debit.kind != Account.Kind.TREASURY and debit.balance_micro < amount_micro:
        raise InsufficientFunds(
            f"{debit.name} holds {format_micro(debit.balance_micro)} credits, {format_micro(amount_micro)} needed"
        )
    Account.objects.filter(pk=debit.pk).update(balance_micro=F("balance_micro") - bigint(amount_micro))
    Account.objects.filter(pk=credit.pk).update(balance_micro=F("balance_micro") + bigint(amount_micro))
    debit.balance_micro -= amount_micro
    credit.balance_micro += amount_micro
    return Transfer.objects.create(
        debit=debit, credit=credit, amount_micro=amount_micro, kind=kind, reference=reference[:100], memo=memo[:300]
    )


def open_user_account(*, user) -> Account:
    """Return the user's cash account, opening it with the starting grant the first time."""
    account = next(iter(Account.objects.filter(user=user)[:1]), None)
    if account is not None:
        return account
    treasury = get_treasury()
    with transaction.atomic():
        try:
            with transaction.atomic():
                account = Account.objects.create(kind=Account.Kind.USER, user=user, name=f"@{user.get_username()}")
        except IntegrityError:
            return Account.objects.get(user=user)
        grant = settings.STARTING_BALANCE_MICRO
        if grant > 0:
            post_transfer(debit=treasury, credit=account, amount_micro=grant, kind=Transfer.Kind.GRANT, reference=f"user:{user.pk}", memo="Welcome grant")
    return account


def open_pool_account(*, name: str) -> Account:
    """Create a market's pool account (empty; the subsidy is a transfer)."""
    return Account.objects.create(kind=Account.Kind.POOL, name=name[:200])


def format_micro(amount_micro: int) -> str:
    """Return micro-credits as a decimal string with six places.

    >>> format_micro(12_500_000), format_micro(-1), format_micro(0)
    ('12.500000', '-0.000001', '0.000000')
    """
    sign = "-" if amount_micro < 0 else ""
    whole, frac = divmod(abs(amount_micro), 1_000_000)
    return f"{sign}{whole}.{frac:06d}"
