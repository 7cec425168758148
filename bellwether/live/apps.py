from django.apps import AppConfig


class LiveConfig(AppConfig):
    name = "bellwether.live"
    label = "live"
    verbose_name = "Live streams"

    def ready(self) -> None:
        from bellwether.markets.events import trade_committed

        from .publisher import publish_trade

        trade_committed.connect(publish_trade, dispatch_uid="bellwether.live.publish_trade")
