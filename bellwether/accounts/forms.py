"""Forms of the account page: shape checks only; the services do the writing."""

from __future__ import annotations

from django import forms


class TokenCreateForm(forms.Form):
    name = forms.CharField(
        label="Token name",
        max_length=100,
        strip=True,
        help_text="Something to recognise it by, such as “laptop” or “trading bot”.",
        widget=forms.TextInput(attrs={"placeholder": "e.g. trading bot", "autocomplete": "off"}),
        error_messages={"required": "Give the token a name so you can tell it apart later."},
    )


class EmailPreferencesForm(forms.Form):
    # The weekly highlights are not here: their one source of truth is the
    # highlights Subscriber row, switched from the sign-up box on this page.
    market_resolutions = forms.BooleanField(
        required=False, label="Market results", help_text="A note when a market you hold shares in is resolved."
    )
