"""Template tags for account pages: flash messages and form fields."""

from __future__ import annotations

from django import template
from django.conf import settings

from bellwether.accounts.formatting import format_whole_credits

register = template.Library()
_SHOWN = "_bellwether_messages_shown"


@register.inclusion_tag("accounts/_messages.html", takes_context=True)
def site_messages(context) -> dict:
    """Render the pending flash messages, once per request however many templates ask."""
    request = context.get("request")
    if request is None or getattr(request, _SHOWN, False):
        return {"messages": ()}
    setattr(request, _SHOWN, True)
    return {"messages": context.get("messages", ())}


@register.inclusion_tag("accounts/_field.html")
def form_field(field, label: str = "", help_text: str | None = None) -> dict:
    """Render one form field with its label, help and errors, the same way on every account page."""
    return {
        "field": field,
        "label": label or field.label,
        "help_text": field.help_text if help_text is None else help_text,
        "is_check": getattr(field.field.widget, "input_type", "") == "checkbox",
    }


@register.filter
def has_error_code(form, code: str) -> bool:
    """Return True when ``form`` failed with the error ``code`` (e.g. too_many_login_attempts)."""
    if form is None or not form.is_bound:
        return False
    return any(error.code == code for errors in form.errors.as_data().values() for error in errors)


@register.simple_tag
def starting_credits() -> str:
    """Return the credits a new reader starts with, e.g. "1,000"."""
    return format_whole_credits(settings.STARTING_BALANCE_MICRO)
