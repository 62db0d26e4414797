from django.core.management.base import BaseCommand, CommandError

from billing.services import ledger_reconcile


class Command(BaseCommand):
    help = "Compare the ledger's balances with invoices and credit notes; print every difference (exit 1 if any)."

    def handle(self, *args, **options):
        problems = ledger_reconcile()
        for problem in problems:
            self.stdout.write(problem)
        if problems:
            raise CommandError(f"{len(problems)} difference(s) between the ledger and the documents")
        self.stdout.write("ledger reconciles with invoices and credit notes")
