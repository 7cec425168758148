from django.apps import AppConfig


class AccountsConfig(AppConfig):
    name = "bellwether.accounts"
    label = "accounts"
    verbose_name = "Accounts"

    def ready(self) -> None:
        # Connects the sign-up receiver, which opens the new reader's ledger account.
        from . import signals  # noqa: F401
