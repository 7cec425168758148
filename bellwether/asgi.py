"""ASGI entry point, for the live streams (see docs/decisions/0001)."""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "bellwether.settings.base")
application = get_asgi_application()
