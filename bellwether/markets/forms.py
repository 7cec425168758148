"""Forms for running markets from the Wagtail admin.

They check the shape of the input and turn it into the arguments the
services take (micro-credits, outcome lists, parsed probabilities); the
services still enforce the business rules.
"""

from __future__ import annotations

from decimal import Decimal

from django import forms
from django.core.exceptions import ValidationError
from django.utils import timezone
from wagtail.admin.widgets import AdminDateTimeInput, AdminPageChooser

from bellwether.news.models import ArticlePage

from . import limits, lmsr, services
from .exceptions import MarketError
from .models import Market

MICRO = lmsr.MICRO
ARTICLE_SLOTS = 3
MAX_B_CREDITS = Decimal(10**9)


def _article_field(label: str) -> forms.ModelChoiceField:
    return forms.ModelChoiceField(
        queryset=ArticlePage.objects.all(),
        required=False,
        label=label,
        widget=AdminPageChooser(target_models=[ArticlePage]),
    )


def _future(value):
    if value is not None and value <= timezone.now():
        raise ValidationError("Choose a close time in the future.", code="past")
    return value


class MarketCreateForm(forms.Form):
    """A new market: its question, outcomes, liquidity, close time and articles."""

    KIND_CHOICES = [(Market.Kind.BINARY, "Yes / No"), (Market.Kind.MULTIPLE, "Multiple choice (one winner)")]
    START_CHOICES = [(Market.Status.OPEN, "Open for trading now"), (Market.Status.DRAFT, "Draft (open it later)")]

    question = forms.CharField(max_length=limits.QUESTION_MAX_CHARS, help_text="Phrase it so that the answer will be clear-cut.")
    kind = forms.ChoiceField(choices=KIND_CHOICES, initial=Market.Kind.BINARY, widget=forms.RadioSelect)
    outcomes = forms.CharField(
        required=False,
        widget=forms.Textarea(attrs={"rows": 5}),
        help_text=f"Multiple choice only: one outcome per line, {lmsr.MIN_OUTCOMES} to {lmsr.MAX_OUTCOMES}.",
    )
    liquidity_b = forms.DecimalField(
        label="Liquidity b (credits)",
        initial=Decimal(100),
        max_digits=16,
        decimal_places=6,
        help_text="A larger b moves prices less per trade. The treasury funds the pool with up to b × ln(number of outcomes) credits.",
    )
    close_at = forms.DateTimeField(label="Trading closes at", widget=AdminDateTimeInput())
    description = forms.CharField(required=False, max_length=limits.DESCRIPTION_MAX_CHARS, widget=forms.Textarea(attrs={"rows": 4}))
    resolution_criteria = forms.CharField(
        required=False,
        max_length=limits.CRITERIA_MAX_CHARS,
        widget=forms.Textarea(attrs={"rows": 4}),
        help_text="How the resolver will decide, and from which sources.",
    )
    start = forms.ChoiceField(label="Start as", choices=START_CHOICES, initial=Market.Status.OPEN, widget=forms.RadioSelect)

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        for i in range(1, ARTICLE_SLOTS + 1):
            self.fields[f"article_{i}"] = _article_field("Linked article" if i == 1 else f"Linked article {i}")

    @property
    def article_fields(self):
        return [self[f"article_{i}"] for i in range(1, ARTICLE_SLOTS + 1)]

    @property
    def main_fields(self):
        return [self[name] for name in self.fields if not name.startswith("article_")]

    def clean_close_at(self):
        return _future(self.cleaned_data.get("close_at"))

    def clean_liquidity_b(self):
        b = self.cleaned_data["liquidity_b"]
        if b <= 0:
            raise ValidationError("Liquidity b must be greater than zero.", code="b_positive")
        if b > MAX_B_CREDITS:
            raise ValidationError("Liquidity b can be at most 1,000,000,000 credits.", code="b_large")
        return b

    def clean(self):
        data = super().clean()
        if data.get("kind") == Market.Kind.MULTIPLE:
            names = [" ".join(line.split()) for line in (data.get("outcomes") or "").splitlines()]
            names = [n for n in names if n]
            if not lmsr.MIN_OUTCOMES <= len(names) <= lmsr.MAX_OUTCOMES:
                self.add_error("outcomes", f"Give {lmsr.MIN_OUTCOMES} to {lmsr.MAX_OUTCOMES} outcomes, one per line (got {len(names)}).")
            else:
                problem = services.outcome_names_problem(names)
                if problem:
                    self.add_error("outcomes", problem[0].upper() + problem[1:] + ".")
            data["outcome_names"] = names
        else:
            data["outcome_names"] = None
        articles = []
        for i in range(1, ARTICLE_SLOTS + 1):
            article = data.get(f"article_{i}")
            if article is not None and article not in articles:
                articles.append(article)
        data["articles"] = articles
        return data

    def service_kwargs(self) -> dict:
        """Return the keyword arguments for ``services.create_market``."""
        data = self.cleaned_data
        return dict(
            question=data["question"],
            outcomes=data["outcome_names"],
            liquidity_b_micro=int(data["liquidity_b"] * MICRO),
            close_at=data["close_at"],
            description=data["description"],
            resolution_criteria=data["resolution_criteria"],
            status=data["start"],
            articles=data["articles"],
        )


class MarketEditForm(forms.Form):
    """What may change once a market exists: its texts and its close time."""

    description = forms.CharField(required=False, max_length=limits.DESCRIPTION_MAX_CHARS, widget=forms.Textarea(attrs={"rows": 4}))
    resolution_criteria = forms.CharField(required=False, max_length=limits.CRITERIA_MAX_CHARS, widget=forms.Textarea(attrs={"rows": 4}))
    close_at = forms.DateTimeField(
        label="Trading closes at",
        widget=AdminDateTimeInput(),
        help_text="Can be moved, but not into the past. Moving it forward reopens trading on a closed market.",
    )

    def __init__(self, *args, market: Market, **kwargs):
        kwargs.setdefault("initial", {
            "description": market.description,
            "resolution_criteria": market.resolution_criteria,
            "close_at": timezone.localtime(market.close_at),
        })
        super().__init__(*args, **kwargs)
        self.market = market

    def clean_close_at(self):
        value = self.cleaned_data.get("close_at")
        # The widget shows whole minutes: an unchanged minute keeps the stored time.
        current = self.market.close_at
        if value is not None and value.replace(second=0, microsecond=0) == timezone.localtime(current).replace(second=0, microsecond=0):
            return current
        return _future(value)


class LinkArticleForm(forms.Form):
    """Link one more article to a market (from the market's page)."""

    article = forms.ModelChoiceField(
        queryset=ArticlePage.objects.all(),
        label="Article",
        widget=AdminPageChooser(target_models=[ArticlePage]),
        error_messages={"required": "Choose an article to link."},
    )


class LinkMarketForm(forms.Form):
    """Link an existing, unsettled market to an article (from the article's side)."""

    market = forms.ModelChoiceField(
        queryset=Market.objects.none(),
        label="Market",
        empty_label="Choose a market…",
        error_messages={"required": "Choose a market to link.", "invalid_choice": "That market cannot be linked (it is settled or already linked)."},
    )

    def __init__(self, *args, article, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["market"].queryset = (
            Market.objects.filter(status__in=[Market.Status.DRAFT, Market.Status.OPEN])
            .exclude(article_links__article=article)
            .order_by("-created_at", "-id")
        )
        self.fields["market"].label_from_instance = lambda m: f"{m.question} ({m.display_status})"


class ResolveForm(forms.Form):
    """How to settle a market: one winning outcome, probabilities, or cancellation."""

    ACTION_CHOICES = [
        ("outcome", "Resolve to one outcome"),
        ("probabilities", "Resolve to probabilities"),
        ("cancel", "Cancel the market (refund what traders spent)"),
    ]

    action = forms.ChoiceField(choices=ACTION_CHOICES, widget=forms.RadioSelect, label="Resolution")
    outcome = forms.ChoiceField(required=False, widget=forms.RadioSelect, label="Winning outcome")
    note = forms.CharField(
        required=False, max_length=limits.NOTE_MAX_CHARS, widget=forms.Textarea(attrs={"rows": 3}),
        help_text="Why: shown with the resolution.",
    )
    sources = forms.CharField(required=False, widget=forms.Textarea(attrs={"rows": 3}), help_text="One URL per line.")
    trade_count = forms.IntegerField(required=False, widget=forms.HiddenInput)

    def __init__(self, *args, market: Market, outcomes: list, hidden: bool = False, **kwargs):
        super().__init__(*args, **kwargs)
        self.market = market
        self.outcome_list = outcomes
        self.fields["outcome"].choices = [(o.slug, o.name) for o in outcomes]
        for o in outcomes:
            self.fields[f"p_{o.slug}"] = forms.DecimalField(
                required=False, min_value=0, max_value=1, max_digits=7, decimal_places=6,
                label=f"Probability of {o.name}",
            )
        if hidden:
            # The confirmation step carries the choices unchanged to the final POST.
            for name, field in self.fields.items():
                field.widget = forms.Textarea(attrs={"hidden": True}) if name in ("note", "sources") else forms.HiddenInput()

    @property
    def probability_fields(self):
        return [self[f"p_{o.slug}"] for o in self.outcome_list]

    def clean_sources(self):
        lines = (self.cleaned_data.get("sources") or "").splitlines()
        try:
            return services.clean_resolution_sources(lines)
        except MarketError as exc:
            raise ValidationError(str(exc)[0].upper() + str(exc)[1:] + ".", code="bad_source") from None

    def clean(self):
        data = super().clean()
        action = data.get("action")
        if action == "outcome" and not data.get("outcome"):
            self.add_error("outcome", "Choose the winning outcome.")
        if action == "probabilities":
            missing = [o.name for o in self.outcome_list if data.get(f"p_{o.slug}") is None]
            if missing:
                self.add_error(None, "Give a probability for every outcome (missing: " + ", ".join(missing) + ").")
            elif sum(data[f"p_{o.slug}"] for o in self.outcome_list) != 1:
                self.add_error(None, "The probabilities must add up to exactly 1.")
        return data

    def resolution_kwargs(self) -> dict:
        """Return outcome / probabilities / cancel as ``plan_payouts`` and ``resolve_market`` take them."""
        data = self.cleaned_data
        if data["action"] == "outcome":
            return {"outcome": data["outcome"]}
        if data["action"] == "probabilities":
            return {"probabilities": {o.slug: str(data[f"p_{o.slug}"]) for o in self.outcome_list}}
        return {"cancel": True}

    def describe(self) -> str:
        """Return the chosen resolution in words."""
        data = self.cleaned_data
        if data["action"] == "outcome":
            return "Resolve to " + next(o.name for o in self.outcome_list if o.slug == data["outcome"])
        if data["action"] == "probabilities":
            return "Resolve to probabilities: " + ", ".join(f"{o.name} {data[f'p_{o.slug}']}" for o in self.outcome_list)
        return "Cancel the market"
