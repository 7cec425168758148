"""ASGI entry point: the live streams (docs/live.md).

`bellwether serve` runs this application on the live port beside the WSGI
server for pages (docs/decisions/0001 and 0006). Requests under /live/ go to
a lean handler made for long-lived streams; anything else is answered by the
full Django stack, which works but runs three to ten times slower than WSGI
here, so route only /live/ to this server.
"""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "bellwether.settings.base")
pages = get_asgi_application()  # sets Django up first

from bellwether.live.handler import LiveStreamsHandler  # noqa: E402
from bellwether.live.hub import stop_hub  # noqa: E402

LIVE_PREFIX = "/live/"
streams = LiveStreamsHandler()


async def application(scope, receive, send):
    """Send /live/ to the streams handler, other HTTP to Django, and handle the server's lifespan."""
    if scope["type"] == "lifespan":
        await lifespan(receive, send)
    elif scope["type"] == "http" and scope["path"].startswith(LIVE_PREFIX):
        await streams(scope, receive, send)
    else:
        await pages(scope, receive, send)


async def lifespan(receive, send):
    """Start with nothing to do; on shutdown stop the hub, which ends every open stream."""
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await stop_hub()
            await send({"type": "lifespan.shutdown.complete"})
            return
