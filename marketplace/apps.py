from django.apps import AppConfig


class MarketplaceConfig(AppConfig):
    name = "marketplace"
    verbose_name = "Marketplace"

    def ready(self):
        from inventory.signals import capacity_lost
        from marketplace.receivers import on_capacity_lost

        capacity_lost.connect(on_capacity_lost, dispatch_uid="marketplace.on_capacity_lost")
