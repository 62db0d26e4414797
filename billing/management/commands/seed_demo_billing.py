"""`manage.py seed_demo_billing`: a billing history for the demo (run after `seed_demo_market`).

    manage.py seed_demo_billing --if-empty     # what `make run` calls

Each demo buyer organization gets a few reservations that were served over the last two months
(written as rows, as tests/billing do: marketplace's services only book the future and stamp
segments with the instants they observe), with service segments and an hourly usage rollup, so every
invoice line has device-hour evidence with sampled utilization. Then the REAL billing run
(billing.services.billing_run) invoices every closed local month, and finance's review service
approves most invoices (and sends them for collection), leaving the newest month of some buyers as
drafts in the review queue. The demo buyer login's organization has everything issued.

All in one transaction: it is all there or none of it, so --if-empty after a crash simply runs again.
Deterministic for a given --seed, network and day.

Then, after that commit, payments through the REAL payment services against the localstripe that
`make run` starts first (STRIPE_API_BASE): each demo buyer saves the test card 4242 4242 4242 4242 and
pays its oldest month; the demo buyer login's organization pays every invoice but its newest, then
replaces its card with 4000 0000 0000 0341 (saves fine, declined when charged) and tries the newest,
which stays open with Stripe's decline reason on the invoice page. Payments run once: a database with
any payment attempt is left as it is, so a second `make run` changes nothing, and a run that stopped
before its payments (Stripe not up) makes them the next time. Never against real Stripe.
"""

import random
from datetime import timedelta

import requests
import stripe
from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction
from django.utils import timezone

from accounts.models import Organization, User
from billing.models import Invoice, PaymentAttempt
from billing.payments import invoice_pay, payment_method_save, payment_method_setup_start
from billing.services import billing_run, invoice_approve, invoice_set_status
from config.cli_progress import CommandProgress
from inventory.management.demo_network import DEMO_DOMAIN, DEMO_LOGINS
from inventory.models import Device, Node, Offer, Site
from marketplace.models import Reservation, ReservationSegment, UsageHourly

KEY_PREFIX = "demo-billing:"
# (days ago the service started, hours served, cards): spread over the last two months, the last one
# running into this month (so "spend this month" has something even before beat activates bookings).
PLANS = [(62, 72, 8), (50, 120, 16), (40, 36, 8), (33, 48, 4), (3, 30, 8)]


# Stripe's test cards: one that pays, one that saves but is declined whenever it is charged.
CARD_PAYS = "4242424242424242"
CARD_DECLINED_ON_CHARGE = "4000000000000341"


class DemoStripeUnavailable(Exception):
    """The demo payments need localstripe; real Stripe is never charged by a seed."""


def _card_saved(*, organization: Organization, number: str) -> None:
    """What the payment method page does in the browser, without one: a SetupIntent, confirmed with the
    card at localstripe as Stripe.js does (publishable key, over HTTP), then kept by payment_method_save.
    Real Stripe refuses raw card numbers from a server, hence localstripe only (checked by the caller)."""
    setup = payment_method_setup_start(organization=organization)
    answer = requests.post(
        f"{settings.STRIPE_API_BASE.rstrip('/')}/v1/setup_intents/{setup['setup_intent_id']}/confirm",
        json={"key": settings.STRIPE_PUBLISHABLE_KEY, "client_secret": setup["client_secret"],
              "payment_method_data": {"type": "card", "card": {"number": number, "exp_month": "12", "exp_year": "2031", "cvc": "123"}}},
        timeout=20,
    )
    answer.raise_for_status()
    payment_method_save(organization=organization, setup_intent_id=setup["setup_intent_id"])


def demo_payments() -> dict[str, int] | None:
    """Pay the demo's open invoices through billing.payments (see the module docstring); None when
    payments were made before (any attempt exists). Raises DemoStripeUnavailable when STRIPE_API_BASE
    is real Stripe, and stripe/requests errors when localstripe does not answer (nothing recorded then
    but what the services committed, so the next run picks up from there)."""
    if PaymentAttempt.objects.exists():
        return None
    if "api.stripe.com" in settings.STRIPE_API_BASE:
        raise DemoStripeUnavailable("STRIPE_API_BASE is real Stripe: the demo pays only through localstripe.")
    demo_buyer = Organization.objects.filter(memberships__user__email=DEMO_LOGINS["buyer"]).first()
    counts = {"paid": 0, "declined": 0}
    open_invoices = Invoice.objects.filter(status=Invoice.Status.OPEN, buyer__memberships__user__email__endswith=DEMO_DOMAIN).distinct()
    for buyer_id in sorted(set(open_invoices.values_list("buyer_id", flat=True))):
        buyer = Organization.objects.get(pk=buyer_id)
        invoices = list(open_invoices.filter(buyer=buyer).order_by("period_start", "currency", "pk"))
        if buyer == demo_buyer:
            to_pay, to_decline = invoices[:-1], invoices[-1:]
        else:  # the oldest month paid; the rest stays open (receivables aging has something to show)
            to_pay, to_decline = [i for i in invoices if i.period_start == invoices[0].period_start], []
        _card_saved(organization=buyer, number=CARD_PAYS)
        for invoice in to_pay:
            attempt = invoice_pay(invoice_id=invoice.pk)
            counts["paid"] += attempt is None or attempt.status == PaymentAttempt.Status.SUCCEEDED
        if to_decline:
            _card_saved(organization=buyer, number=CARD_DECLINED_ON_CHARGE)
            for invoice in to_decline:
                attempt = invoice_pay(invoice_id=invoice.pk)
                counts["declined"] += attempt is not None and attempt.status == PaymentAttempt.Status.FAILED
    return counts


class Command(BaseCommand):
    help = "Invoice a billing history for the demo buyers (after seed_demo_market)."

    def add_arguments(self, parser):
        parser.add_argument("--seed", type=int, default=42)
        parser.add_argument("--if-empty", action="store_true", help="do nothing when any invoice or demo billing history exists")
        parser.add_argument("--no-progress", action="store_true", help="no progress bars")

    def handle(self, *args, seed: int, if_empty: bool, no_progress: bool = False, verbosity: int = 1, **options):
        if Invoice.objects.exists() or Reservation.objects.filter(idempotency_key__startswith=KEY_PREFIX).exists():
            if not if_empty:
                raise CommandError("Invoices exist already; the demo billing history goes into a fresh database only.")
            self.stdout.write("Invoices exist already: the demo billing history is left as it is.")
        else:
            disable = no_progress or verbosity == 0
            with transaction.atomic():
                with CommandProgress(desc="past reservations", unit="reservation", disable=disable) as progress:
                    buyers, served = self._serve(seed=seed, progress=progress)
                with CommandProgress(desc="billing run", unit="org", disable=disable) as progress:
                    created = billing_run(organization_ids=[buyer.pk for buyer in buyers], progress=progress)
                opened = self._review(buyers=buyers)
            drafts = Invoice.objects.filter(status=Invoice.Status.DRAFT).count()
            self.stdout.write(self.style.SUCCESS(
                f"Demo billing: {served} past reservations served, {created} invoices from the billing run, "
                f"{len(opened)} approved and open, {drafts} drafts left for finance to review."
            ))
        # Outside the transaction: the payment services call Stripe between their own commits.
        try:
            counts = demo_payments()
        except (DemoStripeUnavailable, stripe.StripeError, requests.RequestException) as exc:
            self.stderr.write(f"Demo payments not made ({exc}); the invoices stay open. The next run makes them.")
            return
        if counts is None:
            self.stdout.write("Demo payments were made before: left as they are.")
        else:
            self.stdout.write(self.style.SUCCESS(
                f"Demo payments through Stripe ({settings.STRIPE_API_BASE}): {counts['paid']} invoices paid, {counts['declined']} declined."
            ))

    def _serve(self, *, seed: int, progress=None) -> tuple[list[Organization], int]:
        buyers = list(Organization.objects.filter(kind__in=[Organization.Kind.BUYER, Organization.Kind.BOTH],
                                                  memberships__user__email__endswith=DEMO_DOMAIN).distinct().order_by("name"))
        offers = list(Offer.objects.filter(is_active=True, cluster__site__lifecycle=Site.Lifecycle.ONLINE)
                      .select_related("cluster__site__owner", "accelerator_model").order_by("id"))
        if not buyers or not offers:
            raise CommandError("No demo buyers or offers: run `manage.py seed_demo` first.")
        rng = random.Random(seed)
        now = timezone.now().replace(minute=0, second=0, microsecond=0)
        used_nodes: set[int] = set()
        served = 0
        planned = len(buyers) * len(PLANS)
        for buyer_index, buyer in enumerate(buyers):
            member = buyer.memberships.select_related("user").order_by("id").first().user
            for index, (days_ago, hours, cards) in enumerate(PLANS):
                if progress is not None:
                    progress(done=buyer_index * len(PLANS) + index, total=planned)
                start = now - timedelta(days=days_ago) + timedelta(hours=rng.randint(0, 12))
                end = start + timedelta(hours=hours)
                for offer in rng.sample(offers, k=min(len(offers), 40)):
                    node = (Node.objects.filter(cluster=offer.cluster, accelerator_model=offer.accelerator_model, card_count__gte=cards)
                            .exclude(pk__in=used_nodes).order_by("pk").first())
                    if node is not None:
                        break
                else:
                    continue
                used_nodes.add(node.pk)
                self._reservation(buyer=buyer, member=member, offer=offer, node=node, cards=cards, start=start, end=end,
                                  key=f"{KEY_PREFIX}{buyer.pk}:{index}", rng=rng)
                served += 1
        if progress is not None:
            progress(done=planned, total=planned)
        return buyers, served

    @staticmethod
    def _reservation(*, buyer, member: User, offer: Offer, node: Node, cards: int, start, end, key: str, rng: random.Random) -> None:
        reservation = Reservation.objects.create(
            buyer=buyer, created_by=member, offer=offer, cluster=offer.cluster, accelerator_model=offer.accelerator_model,
            card_count=cards, start=start, end=end, booked_end=end, status=Reservation.Status.COMPLETED,
            price_per_card_hour_minor=offer.price_per_card_hour_minor, currency=offer.currency,
            ecu_per_card=offer.accelerator_model.ecu_per_card, idempotency_key=key, active_from=start,
        )
        devices = list(Device.objects.filter(node=node).order_by("index").values_list("pk", flat=True)[:cards])
        ReservationSegment.objects.create(
            reservation=reservation, node=node, device_ids=devices, provider=offer.cluster.site.owner, offer=offer,
            started_at=start, ended_at=end, price_per_card_hour_minor=offer.price_per_card_hour_minor, currency=offer.currency,
        )
        # The hourly rollup the node's agent would have produced (one sample a minute), so each invoice
        # line's evidence shows measured utilization beside the billed seconds. One hour in a while has
        # no sample (an agent that missed an upload): the evidence says so; billing does not change.
        rows = []
        hour = start
        while hour < end:
            for device_id in devices:
                if rng.random() < 0.02:
                    continue
                utilization = rng.uniform(55, 98)
                rows.append(UsageHourly(hour=hour, device_id=device_id, node_id=node.pk, reservation=reservation, samples=60,
                                        busy_seconds=36 * utilization, utilization_mean=utilization,
                                        memory_max_mib=rng.randint(40_000, 78_000), energy_wh=rng.uniform(450, 700), computed_at=hour + timedelta(hours=1)))
            hour += timedelta(hours=1)
        UsageHourly.objects.bulk_create(rows, batch_size=5000)

    @staticmethod
    def _review(*, buyers: list[Organization]) -> list[Invoice]:
        """Finance's review of the run's drafts: every month but the newest approved and opened; the
        newest month too for the demo buyer login and every other buyer, the rest left in the queue."""
        finance = User.objects.filter(email=DEMO_LOGINS["finance"]).first()
        demo_buyer = Organization.objects.filter(memberships__user__email=DEMO_LOGINS["buyer"]).first()
        opened = []
        for index, buyer in enumerate(buyers):
            invoices = list(Invoice.objects.filter(buyer=buyer, status=Invoice.Status.DRAFT).order_by("period_start", "currency", "pk"))
            newest = max((invoice.period_start for invoice in invoices), default=None)
            for invoice in invoices:
                if invoice.period_start == newest and buyer != demo_buyer and index % 2:
                    continue  # left for finance to review in the demo
                invoice = invoice_approve(invoice=invoice, actor=finance, reason="Demo: lines checked against their evidence.")
                opened.append(invoice_set_status(invoice=invoice, status=Invoice.Status.OPEN, actor=finance,
                                                 reason="Demo: sent to the buyer for collection."))
        return opened
