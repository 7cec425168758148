"""The Content Security Policy sent with every public page.

Pages load scripts and styles from this site only: no inline scripts, no
inline styles, no eval. A script injected into an article or a market
description therefore cannot run. Wagtail's admin and the API docs bring
inline scripts of their own and are left to their own protections.

Pages may also connect to the live streams' origin when they are served
from another port (bellwether.live.origin), so the policy is built per
request; with the streams on this same origin it is ``POLICY``.
"""

from __future__ import annotations

from bellwether.live.origin import live_origin


def build_policy(*, connect_origin: str = "") -> str:
    """Return the policy, letting scripts also connect to ``connect_origin`` when given."""
    connect = f"connect-src 'self' {connect_origin}" if connect_origin else "connect-src 'self'"
    return "; ".join(
        [
            "default-src 'self'",
            "script-src 'self'",
            "style-src 'self'",
            "img-src 'self' data:",
            "font-src 'self'",
            connect,
            "object-src 'none'",
            "base-uri 'self'",
            "form-action 'self'",
            "frame-ancestors 'none'",
        ]
    )


POLICY = build_policy()

# Wagtail's admin renders a few inline scripts (date pickers, inline panels)
# and style attributes, so it needs 'unsafe-inline'; it still loads nothing
# from elsewhere, posts nowhere else, connects only here and may be framed
# only by itself (the live preview panel). docs/decisions/0005.
ADMIN_POLICY = "; ".join(
    [
        "default-src 'self'",
        "script-src 'self' 'unsafe-inline'",
        "style-src 'self' 'unsafe-inline'",
        "img-src 'self' data: blob:",
        "font-src 'self' data:",
        "connect-src 'self'",
        "object-src 'none'",
        "base-uri 'self'",
        "form-action 'self'",
        "frame-ancestors 'self'",
    ]
)
ADMIN_PREFIXES = ("/admin/", "/django-admin/")
# The API's interactive docs page ships its own inline bootstrap script.
EXEMPT_PREFIXES = ("/api/v1/docs",)


class ContentSecurityPolicyMiddleware:
    """Add the Content-Security-Policy header: the strict one on public pages, the admin's in the admin."""

    def __init__(self, get_response) -> None:
        self.get_response = get_response

    def __call__(self, request):
        response = self.get_response(request)
        if request.path.startswith(ADMIN_PREFIXES):
            response.headers.setdefault("Content-Security-Policy", ADMIN_POLICY)
        elif not request.path.startswith(EXEMPT_PREFIXES):
            origin = live_origin(request)
            response.headers.setdefault("Content-Security-Policy", build_policy(connect_origin=origin) if origin else POLICY)
        return response
