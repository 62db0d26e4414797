from django.core.management.base import BaseCommand

from billing.payments import payout_run


class Command(BaseCommand):
    help = ("Pay providers their share of paid invoices as Stripe Connect transfers (one per provider and invoice, "
            "transfer_group = the invoice), resume pending ones with their own idempotency keys, settle those in transit. "
            "Safe to run any number of times (the hourly beat runs it too).")

    def handle(self, *args, **options):
        counts = payout_run()
        self.stdout.write(f"payouts: {counts['created']} created, {counts['sent']} sent, {counts['settled']} settled")
