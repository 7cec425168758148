from __future__ import annotations

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from bellwether.accounts import services


class Command(BaseCommand):
    help = "Create an API token: `bellwether token create USERNAME [--name NAME]`. The token is printed once."

    def add_arguments(self, parser):
        sub = parser.add_subparsers(dest="action", required=True)
        create = sub.add_parser("create", help="create a token and print it")
        create.add_argument("username")
        create.add_argument("--name", default="cli")

    def handle(self, *args, action, username, name, **options):
        user = get_user_model().objects.filter(username=username).first()
        if user is None:
            raise CommandError(f"no user {username!r}")
        _, raw = services.create_token(user=user, name=name)
        self.stdout.write(raw)
