"""Where pages find the live streams (``LIVE_BASE``), and the origin the CSP must allow."""

from __future__ import annotations

from urllib.parse import urlsplit

from django.conf import settings
from django.core.exceptions import DisallowedHost
from django.http.request import split_domain_port


def live_base(request) -> str:
    """Return the URL prefix of the live streams for pages answering ``request``.

    ``LIVE_URL`` when set ("" means this same address). Otherwise, when
    `bellwether serve` runs the live server on ``LIVE_PORT``, that port on the
    host name the page was asked for, so a phone on the LAN reaching
    http://192.168.1.5:8000/ streams from http://192.168.1.5:8001. Otherwise ""
    (the server answering the page answers /live/ too).
    """
    if settings.LIVE_URL is not None:
        return settings.LIVE_URL.rstrip("/")
    if not settings.LIVE_PORT:
        return ""
    try:
        host, _port = split_domain_port(request.get_host())
    except DisallowedHost:
        return ""
    return f"{request.scheme}://{host}:{settings.LIVE_PORT}"


def live_origin(request) -> str:
    """Return the origin of ``live_base(request)``, or "" when it is this same origin."""
    base = live_base(request)
    if not base:
        return ""
    parts = urlsplit(base)
    return f"{parts.scheme}://{parts.netloc}"
