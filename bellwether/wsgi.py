"""WSGI entry point: pages and the API are served here (docs/decisions/0001)."""

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "bellwether.settings.base")
application = get_wsgi_application()
