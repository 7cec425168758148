from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from bellwether.accounts import services
from bellwether.accounts.exceptions import AccountError
from bellwether.ledger.services import format_micro, open_user_account


class Command(BaseCommand):
    help = "Manage users. `bellwether user create NAME [--role editor|resolver] [--email E] [--password P]`."

    def add_arguments(self, parser):
        sub = parser.add_subparsers(dest="action", required=True)
        create = sub.add_parser("create", help="create a user with the starting balance")
        create.add_argument("username")
        create.add_argument("--role", action="append", default=[], choices=sorted(services.ROLE_GROUPS), help="editor creates markets, resolver resolves them; repeat for both")
        create.add_argument("--email", default="")
        create.add_argument("--password", default=None, help="omit for an API-only user without a password")

    def handle(self, *args, action, username, role, email, password, **options):
        try:
            user = services.create_user(username=username, email=email, password=password, roles=tuple(role))
        except AccountError as exc:
            raise CommandError(str(exc)) from None
        balance = open_user_account(user=user).balance_micro
        roles = ", ".join(role) or "trader"
        self.stdout.write(self.style.SUCCESS(f"created {username} ({roles}) with {format_micro(balance)} credits"))
