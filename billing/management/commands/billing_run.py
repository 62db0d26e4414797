from django.core.management.base import BaseCommand, CommandError

from accounts.models import Organization
from billing.services import billing_run, billing_run_organization
from config.cli_progress import CommandProgress


class Command(BaseCommand):
    help = "Invoice every whole local month that has ended and is not invoiced yet (all buyers, or one organization)."

    def add_arguments(self, parser):
        parser.add_argument("--organization", help="slug of one buyer organization (on-demand run)")
        parser.add_argument("--no-progress", action="store_true", help="no progress bar")

    def handle(self, *args, organization=None, no_progress=False, verbosity=1, **options):
        disable = no_progress or verbosity == 0
        if organization:
            org = Organization.objects.filter(slug=organization).first()
            if org is None:
                raise CommandError(f"No organization with slug {organization!r}.")
            with CommandProgress(desc=f"billing {org.slug}", unit="month", disable=disable) as progress:
                created = len(billing_run_organization(organization_id=org.pk, progress=progress))
        else:
            with CommandProgress(desc="billing run", unit="org", disable=disable) as progress:
                created = billing_run(progress=progress)
        self.stdout.write(f"{created} draft invoice(s) created")
