"""Double-entry money: accounts and immutable transfers, in micro-credits.

Every movement is one ``Transfer`` row plus the two balance updates, in the
same transaction. The database refuses a negative balance on every account
except the treasury, which mints starting grants and market subsidies and so
runs negative by exactly what it has put into circulation.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import F, Q


class Account(models.Model):
    class Kind(models.TextChoices):
        USER = "user", "User cash"
        POOL = "pool", "Market pool"
        TREASURY = "treasury", "Treasury"

    kind = models.CharField(max_length=10, choices=Kind.choices)
    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="ledger_account"
    )
    name = models.CharField(max_length=200)
    balance_micro = models.BigIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=Q(balance_micro__gte=0) | Q(kind="treasury"), name="account_no_overdraft"
            ),
            models.UniqueConstraint(fields=["kind"], condition=Q(kind="treasury"), name="account_one_treasury"),
            models.CheckConstraint(
                condition=Q(kind="user", user__isnull=False) | ~Q(kind="user"), name="account_user_has_owner"
            ),
        ]

    def __str__(self) -> str:
        return self.name


class Transfer(models.Model):
    """Money leaving ``debit`` and arriving in ``credit``; never edited or deleted."""

    class Kind(models.TextChoices):
        GRANT = "grant", "Starting balance"
        SUBSIDY = "subsidy", "Market subsidy"
        BUY = "buy", "Bought shares"
        SELL = "sell", "Sold shares"
        PAYOUT = "payout", "Resolution payout"
        REFUND = "refund", "Cancellation refund"
        POOL_RETURN = "pool_return", "Pool remainder returned"
        COVER = "cover", "Treasury covers a refund"

    debit = models.ForeignKey(Account, on_delete=models.PROTECT, related_name="debits")
    credit = models.ForeignKey(Account, on_delete=models.PROTECT, related_name="credits")
    amount_micro = models.BigIntegerField()
    kind = models.CharField(max_length=12, choices=Kind.choices)
    reference = models.CharField(max_length=100, blank=True, db_index=True, help_text="E.g. trade:42, market:7.")
    memo = models.CharField(max_length=300, blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        constraints = [
            models.CheckConstraint(condition=Q(amount_micro__gt=0), name="transfer_positive"),
            models.CheckConstraint(condition=~Q(debit=F("credit")), name="transfer_two_accounts"),
        ]
        indexes = [models.Index(fields=["debit", "-created_at"]), models.Index(fields=["credit", "-created_at"])]

    def __str__(self) -> str:
        return f"{self.amount_micro} µ {self.debit_id}→{self.credit_id} ({self.kind})"

    def save(self, *args, **kwargs):
        # Immutability is the ledger's core guarantee; corrections are new rows.
        if self.pk is not None and not kwargs.get("force_insert"):
            raise ValueError("transfers are immutable; post a correcting transfer instead")
        super().save(*args, **kwargs)

    def delete(self, *args, **kwargs):
        raise ValueError("transfers are immutable; post a correcting transfer instead")
