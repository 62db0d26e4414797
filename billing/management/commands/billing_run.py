from django.core.management.base import BaseCommand, CommandError

from accounts.models import Organization
from billing.services import billing_run, billing_run_organization


class Command(BaseCommand):
    help = "Invoice every whole local month that has ended and is not invoiced yet (all buyers, or one organization)."

    def add_arguments(self, parser):
        parser.add_argument("--organization", help="slug of one buyer organization (on-demand run)")

    def handle(self, *args, organization=None, **options):
        if organization:
            org = Organization.objects.filter(slug=organization).first()
            if org is None:
                raise CommandError(f"No organization with slug {organization!r}.")
            created = len(billing_run_organization(organization_id=org.pk))
        else:
            created = billing_run()
        self.stdout.write(f"{created} draft invoice(s) created")
