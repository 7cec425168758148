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
    weekly_highlights = forms.BooleanField(
        required=False, label="Weekly highlights", help_text="The week’s top stories and the markets that moved, every week."
    )
    market_resolutions = forms.BooleanField(
        required=False, label="Market results", help_text="A note when a market you hold shares in is resolved."
    )
