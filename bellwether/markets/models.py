"""Prediction markets priced by LMSR, their trades, positions and resolutions.

Quantities are integer micro-shares, money integer micro-credits; a winning
share pays 1 credit (1,000,000 micro-credits per 1,000,000 micro-shares).
"""

from __future__ import annotations

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models
from django.db.models import Q
from django.urls import reverse
from django.utils import timezone
from wagtail.admin.forms import WagtailAdminModelForm
from wagtail.admin.panels import FieldPanel
from wagtail.snippets.models import register_snippet

from bellwether.ledger.models import Account


class Market(models.Model):
    class Kind(models.TextChoices):
        BINARY = "binary", "Yes / No"
        MULTIPLE = "multiple", "Multiple choice"

    class Status(models.TextChoices):
        DRAFT = "draft", "Draft"
        OPEN = "open", "Open"
        RESOLVED = "resolved", "Resolved"
        CANCELLED = "cancelled", "Cancelled"

    slug = models.SlugField(max_length=120, unique=True)
    question = models.CharField(max_length=300)
    description = models.TextField(blank=True)
    resolution_criteria = models.TextField(blank=True)
    kind = models.CharField(max_length=10, choices=Kind.choices, default=Kind.BINARY)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.OPEN, db_index=True)
    liquidity_b_micro = models.BigIntegerField()
    close_at = models.DateTimeField(db_index=True)
    pool = models.OneToOneField(Account, on_delete=models.PROTECT, related_name="market")
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    volume_micro = models.BigIntegerField(default=0)
    trade_count = models.PositiveIntegerField(default=0)
    resolved_at = models.DateTimeField(null=True, blank=True)
    resolved_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    resolution = models.JSONField(null=True, blank=True, help_text='{"outcome": "yes"}, {"probabilities": {...}} or {"cancel": true}')
    resolution_note = models.TextField(blank=True)
    resolution_sources = models.JSONField(default=list, blank=True)
    articles = models.ManyToManyField("news.ArticlePage", through="MarketArticle", related_name="markets", blank=True)

    class Meta:
        constraints = [models.CheckConstraint(condition=Q(liquidity_b_micro__gt=0), name="market_positive_liquidity")]

    def __str__(self) -> str:
        return self.question

    def get_absolute_url(self) -> str:
        return reverse("markets:detail", args=[self.slug])

    @property
    def is_trading(self) -> bool:
        """Return True while trades are accepted: open and before close_at."""
        return self.status == self.Status.OPEN and timezone.now() < self.close_at

    @property
    def display_status(self) -> str:
        """Return the lifecycle state including the derived 'closed'."""
        if self.status == self.Status.OPEN and timezone.now() >= self.close_at:
            return "closed"
        return self.status

    @property
    def source_links(self) -> list[dict[str, str]]:
        """Return the resolution sources as {"text", "url"}; only http(s) addresses get a url to link.

        The services accept web addresses only; this also keeps rows stored
        before that rule from becoming "javascript:" links.
        """
        return [
            {"text": str(s), "url": str(s) if str(s).lower().startswith(("http://", "https://")) else ""}
            for s in self.resolution_sources or []
        ]


class Outcome(models.Model):
    market = models.ForeignKey(Market, on_delete=models.CASCADE, related_name="outcomes")
    slug = models.SlugField(max_length=60)
    name = models.CharField(max_length=200)
    position = models.PositiveSmallIntegerField()
    shares_micro = models.BigIntegerField(default=0, help_text="q_i: shares sold and not bought back")
    payout_per_share_micro = models.BigIntegerField(null=True, blank=True, help_text="Set at resolution.")

    class Meta:
        ordering = ["market", "position"]
        constraints = [
            models.UniqueConstraint(fields=["market", "slug"], name="outcome_unique_slug"),
            models.UniqueConstraint(fields=["market", "position"], name="outcome_unique_position"),
            models.CheckConstraint(condition=Q(shares_micro__gte=0), name="outcome_shares_non_negative"),
        ]

    def __str__(self) -> str:
        return f"{self.market.slug}:{self.slug}"


class Position(models.Model):
    """What one user holds of one outcome, and what it cost them."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="positions")
    outcome = models.ForeignKey(Outcome, on_delete=models.PROTECT, related_name="positions")
    market = models.ForeignKey(Market, on_delete=models.PROTECT, related_name="positions")
    shares_micro = models.BigIntegerField(default=0)
    cost_basis_micro = models.BigIntegerField(default=0, help_text="What the shares still held cost.")
    spent_micro = models.BigIntegerField(default=0, help_text="Total paid for buys.")
    received_micro = models.BigIntegerField(default=0, help_text="Total received from sells.")
    payout_micro = models.BigIntegerField(null=True, blank=True, help_text="Paid at resolution or cancellation.")

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["user", "outcome"], name="position_unique"),
            models.CheckConstraint(condition=Q(shares_micro__gte=0), name="position_shares_non_negative"),
        ]

    def __str__(self) -> str:
        return f"{self.user_id} {self.outcome}: {self.shares_micro}"


class Trade(models.Model):
    class Side(models.TextChoices):
        BUY = "buy", "Buy"
        SELL = "sell", "Sell"

    market = models.ForeignKey(Market, on_delete=models.PROTECT, related_name="trades")
    outcome = models.ForeignKey(Outcome, on_delete=models.PROTECT, related_name="trades")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="trades")
    side = models.CharField(max_length=4, choices=Side.choices)
    shares_micro = models.BigIntegerField()
    amount_micro = models.BigIntegerField(help_text="Paid for a buy, received for a sell.")
    probability_before = models.FloatField(help_text="The traded outcome's price before the trade.")
    probabilities_after = models.JSONField(help_text="Every outcome's price after the trade, by position.")
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        constraints = [
            models.CheckConstraint(condition=Q(shares_micro__gt=0), name="trade_positive_shares"),
            models.CheckConstraint(condition=Q(amount_micro__gte=0), name="trade_non_negative_amount"),
        ]
        indexes = [models.Index(fields=["market", "created_at"])]


class IdempotencyKey(models.Model):
    """A trade request already answered, so a retry gets the same answer."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    key = models.CharField(max_length=200)
    fingerprint = models.CharField(max_length=64)
    # The first answer's JSON as text: PostgreSQL's jsonb would reorder its
    # keys, and a replay must be the same body, byte for byte.
    response = models.TextField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["user", "key"], name="idempotency_unique_key")]
        # The worker's sweep deletes by age (services.sweep_idempotency_keys).
        indexes = [models.Index(fields=["created_at"], name="idempotency_created_at")]


class MarketArticle(models.Model):
    """A market linked to an article, with its odds when the article appeared."""

    market = models.ForeignKey(Market, on_delete=models.CASCADE, related_name="article_links")
    article = models.ForeignKey("news.ArticlePage", on_delete=models.CASCADE, related_name="market_links")
    probabilities_at_publish = models.JSONField(help_text="Outcome slug -> probability when the article was published.")
    linked_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["market", "article"], name="market_article_unique")]


class ExpertForecastForm(WagtailAdminModelForm):
    """The admin form: the service's rules, with the expert and time defaulting from the insight."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["expert"].required = False
        self.fields["expert"].help_text = "Leave empty for the insight's expert."
        self.fields["stated_at"].required = False
        self.fields["stated_at"].help_text = "Leave empty for the insight's publication time."

    def clean(self):
        from .exceptions import InvalidForecast
        from .services import check_expert_forecast, forecast_time

        data = super().clean()
        article, market, outcome = data.get("article"), data.get("market"), data.get("outcome")
        if article is None or market is None or outcome is None or data.get("probability") is None:
            return data
        try:
            _, expert, _ = check_expert_forecast(
                article=article, market=market, outcome=outcome, probability=data["probability"], expert=data.get("expert")
            )
        except InvalidForecast as exc:
            raise ValidationError(str(exc)) from None
        data["expert"] = expert
        self.instance.expert = expert
        if not data.get("stated_at"):
            data["stated_at"] = forecast_time(article=article)
            self.instance.stated_at = data["stated_at"]
        return data


@register_snippet
class ExpertForecast(models.Model):
    """A probability an expert stated for one outcome, in an insight linked to the market.

    Written through ``services.record_expert_forecast`` (or the admin form,
    which applies the same checks): the market must be linked to the
    article and the outcome must belong to the market.
    """

    expert = models.ForeignKey("news.Person", on_delete=models.CASCADE, related_name="forecasts")
    market = models.ForeignKey(Market, on_delete=models.CASCADE, related_name="expert_forecasts")
    outcome = models.ForeignKey(Outcome, on_delete=models.CASCADE, related_name="expert_forecasts")
    probability = models.FloatField(help_text="Between 0 and 1, exclusive: 0.3 for '30%'.")
    stated_at = models.DateTimeField(help_text="When the expert said it: the insight's publication time unless given.")
    article = models.ForeignKey("news.ArticlePage", on_delete=models.CASCADE, related_name="expert_forecasts")
    created_at = models.DateTimeField(auto_now_add=True)

    base_form_class = ExpertForecastForm
    panels = [
        FieldPanel("article"),
        FieldPanel("market"),
        FieldPanel("outcome"),
        FieldPanel("probability"),
        FieldPanel("expert"),
        FieldPanel("stated_at"),
    ]

    class Meta:
        ordering = ["-stated_at", "-id"]
        constraints = [
            models.UniqueConstraint(fields=["article", "market", "outcome"], name="expert_forecast_unique"),
            models.CheckConstraint(
                condition=Q(probability__gt=0) & Q(probability__lt=1), name="expert_forecast_probability_open_unit"
            ),
        ]
        indexes = [models.Index(fields=["market", "-stated_at"], name="expert_forecast_market_recent")]

    def __str__(self) -> str:
        return f"{self.expert}: {self.outcome} at {self.probability:.0%}"
