from django.core.management.base import BaseCommand, CommandError

from billing.services import billing_usage_drift, ledger_reconcile


class Command(BaseCommand):
    help = ("Compare the ledger's balances with invoices and credit notes, and invoiced lines with today's service segments; "
            "print every difference (exit 1 if any).")

    def handle(self, *args, **options):
        problems = ledger_reconcile()
        drift = billing_usage_drift()
        for problem in [*problems, *drift]:
            self.stdout.write(problem)
        if problems or drift:
            raise CommandError(f"{len(problems)} difference(s) between the ledger and the documents, "
                               f"{len(drift)} invoiced line(s) whose usage changed since")
        self.stdout.write("ledger reconciles with invoices and credit notes; invoiced lines match their segments")
