"""`manage.py seed_demo_market`: demo bookings on the demo network (run after `seed_demo`).

    manage.py seed_demo_market --if-empty     # what `make run` and the compose `migrate` service call

Each demo buyer organization books a few placements through marketplace.services, exactly as the
booking page does: some start within minutes (Celery then provisions them, and they turn active when
the node agents report the workload running - see marketplace/provisioning - so "my reservations" and
the providers' utilization panels show live bookings), some next week, one is
extended and one cancelled. Deterministic for a given --seed and network.
"""

import random
from datetime import timedelta

from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from accounts.models import Organization
from inventory.allocations import devices_free
from inventory.management.demo_network import DEMO_DOMAIN
from inventory.models import Offer, Site
from marketplace.launch import DEFAULT_LAUNCH_TEMPLATE, launch_template_get, launch_template_stacks
from marketplace.models import Reservation
from marketplace.services import BookingConflict, reservation_cancel, reservation_create, reservation_extend


class Command(BaseCommand):
    help = "Book demo reservations for the demo buyers (after seed_demo)."

    def add_arguments(self, parser):
        parser.add_argument("--seed", type=int, default=42)
        parser.add_argument("--if-empty", action="store_true", help="do nothing when any reservation exists")

    def handle(self, *args, seed: int, if_empty: bool, **options):
        if Reservation.objects.exists():
            if if_empty:
                self.stdout.write("Reservations exist already: demo bookings left as they are.")
                return
            raise CommandError("Reservations exist already; demo bookings go into a fresh network only.")
        buyers = list(
            Organization.objects.filter(
                kind__in=[Organization.Kind.BUYER, Organization.Kind.BOTH],
                memberships__user__email__endswith=DEMO_DOMAIN,
            ).distinct().order_by("name")
        )
        offers = list(
            Offer.objects.filter(is_active=True, cluster__site__lifecycle=Site.Lifecycle.ONLINE, currency="CNY")
            .select_related("cluster__site__owner", "accelerator_model").order_by("id")
        )
        if not buyers or not offers:
            raise CommandError("No demo buyers or offers: run `manage.py seed_demo` first.")
        rng = random.Random(seed)
        now = timezone.now().replace(second=0, microsecond=0)
        # (starts in, hours, cards): two start within minutes, the rest over the coming two weeks.
        plans = [(timedelta(minutes=2), 72, 8), (timedelta(minutes=3), 24 * 7, 16), (timedelta(days=2), 48, 8),
                 (timedelta(days=6), 24 * 5, 16), (timedelta(days=9), 36, 4)]
        # The demo provider's sites get the first booking of every buyer, so its utilization panel shows them.
        demo_provider_offers = [o for o in offers if o.cluster.site.owner.memberships.filter(user__email=f"provider@{DEMO_DOMAIN}").exists()]
        # Demo bookings run the default workload: skip hardware it has no image for (e.g. Biren, TPUs).
        default_template = launch_template_get(slug=DEFAULT_LAUNCH_TEMPLATE)
        runnable = launch_template_stacks(template=default_template) if default_template else set()
        offers = [o for o in offers if o.accelerator_model.stack in runnable]
        demo_provider_offers = [o for o in demo_provider_offers if o.accelerator_model.stack in runnable]
        booked = []
        for buyer in buyers:
            member = buyer.memberships.select_related("user").order_by("id").first().user
            for index, (starts_in, hours, cards) in enumerate(plans):
                start, end = now + starts_in, now + starts_in + timedelta(hours=hours)
                candidates = rng.sample(offers, k=len(offers))
                if index == 0:
                    candidates = rng.sample(demo_provider_offers, k=len(demo_provider_offers)) + candidates
                for offer in candidates:
                    if hours < offer.min_duration_hours or hours > offer.max_duration_hours:
                        continue
                    free = devices_free(start=start, end=end).filter(
                        node__cluster=offer.cluster, node__accelerator_model=offer.accelerator_model
                    ).count()
                    if free < cards:
                        continue
                    try:
                        reservation, _ = reservation_create(
                            organization=buyer, created_by=member, offer=offer, card_count=cards, start=start, end=end
                        )
                    except BookingConflict:
                        continue
                    booked.append(reservation)
                    break
        if len(booked) >= 3:
            reservation_extend(reservation=booked[2], end=booked[2].end + timedelta(hours=24), actor=booked[2].created_by)
            reservation_cancel(reservation=booked[-1], actor=booked[-1].created_by, reason="Plans changed (demo).")
        self.stdout.write(self.style.SUCCESS(
            f"Booked {len(booked)} demo reservations for {len(buyers)} buyer organizations "
            "(two per buyer start within minutes; Celery provisions them, the node agents' reports make them active)."
        ))
