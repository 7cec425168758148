from django.apps import AppConfig


class LedgerConfig(AppConfig):
    name = "bellwether.ledger"
    label = "ledger"
    verbose_name = "Ledger"
