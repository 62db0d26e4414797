"""Billing fixtures: providers' offers and buyers' reservations that were served in the past.

Reservations and their segments are written as rows here (marketplace's services only book in the
future and stamp segments with the instants they observe); billing only reads them.
"""

from datetime import UTC, datetime, timedelta

import pytest

from accounts.models import Organization
from inventory.models import Device
from marketplace.models import Reservation, ReservationSegment
from tests.factories import ClusterFactory, NodeFactory, OfferFactory, OrganizationFactory, UserFactory, staff_group

MARCH = datetime(2026, 2, 28, 16, tzinfo=UTC)  # 1 March 00:00 in Asia/Shanghai (the default billing zone)
APRIL = datetime(2026, 3, 31, 16, tzinfo=UTC)
MAY = datetime(2026, 4, 30, 16, tzinfo=UTC)
H = timedelta(hours=1)


@pytest.fixture
def offer(catalog):
    """A CNY offer on a 2-node (16-card) cluster at 25.00 per card-hour."""
    cluster = ClusterFactory()
    NodeFactory(cluster=cluster)
    NodeFactory(cluster=cluster)
    return OfferFactory(cluster=cluster)


@pytest.fixture
def usd_offer(catalog):
    cluster = ClusterFactory()
    NodeFactory(cluster=cluster)
    return OfferFactory(cluster=cluster, currency="USD", price_per_card_hour_minor=399)


@pytest.fixture
def buyer_org(db):
    return OrganizationFactory(kind=Organization.Kind.BUYER)


# --- the finance pages' world (test_billing_pages.py, test_billing_pages_zh.py) ------------------------------------------


@pytest.fixture
def finance_user():
    user = UserFactory()
    user.groups.add(staff_group("finance"))
    return user


@pytest.fixture
def moved_to():
    """Another provider's CNY offer, on a site of its own, where one of B's reservations was moved."""
    cluster = ClusterFactory(site__name="Ningxia Zhongwei DC")
    NodeFactory(cluster=cluster)
    return OfferFactory(cluster=cluster)


@pytest.fixture
def invoiced(offer, usd_offer, moved_to):
    """Two buyers invoiced for March and April: buyer A on `offer` (CNY), buyer B on both offers and one
    reservation booked on `offer` but served on another provider's cards (`moved_to`); A's March is
    approved, everything else is a draft."""
    a, b = OrganizationFactory(name="Alpha Labs"), OrganizationFactory(name="Beta AI")
    served(buyer=b, offer=offer, cards=2, periods=[(MARCH + 20 * H, MARCH + 23 * H)], offer_for_segments=moved_to)
    # 10:30-13:00 on 8 cards: partial first hour, so the evidence has 1800s and 3600s hours
    served(buyer=a, offer=offer, periods=[(MARCH + 2 * H + timedelta(minutes=30), MARCH + 5 * H)])
    served(buyer=a, offer=offer, cards=4, periods=[(APRIL + H, APRIL + 7 * H)], node_index=1)
    served(buyer=b, offer=offer, cards=2, periods=[(MARCH + 10 * H, MARCH + 12 * H)], node_index=1)
    served(buyer=b, offer=usd_offer, cards=1, periods=[(APRIL + H, APRIL + 4 * H)])
    from billing.models import Invoice
    from billing.services import billing_run, invoice_approve

    billing_run(now=MAY + H)
    march_a = Invoice.objects.get(buyer=a, period_start=MARCH)
    invoice_approve(invoice=march_a, actor=None, reason="fixture")
    return {"a": a, "b": b, "march_a": Invoice.objects.get(pk=march_a.pk)}


def served(*, buyer, offer, periods, cards=8, status=Reservation.Status.COMPLETED, node_index=0, offer_for_segments=None, price=None):
    """A reservation of `buyer` on `offer` that was served in each (start, end|None) of `periods` on
    the `node_index`-th node of the offer's cluster (first `cards` devices)."""
    price = offer.price_per_card_hour_minor if price is None else price
    start = periods[0][0]
    end = max((p[1] or p[0] + H) for p in periods)
    reservation = Reservation.objects.create(
        buyer=buyer, offer=offer, cluster=offer.cluster, accelerator_model=offer.accelerator_model, card_count=cards,
        start=start, end=end, booked_end=end, status=status, price_per_card_hour_minor=price,
        currency=offer.currency, active_from=start,
    )
    seg_offer = offer_for_segments or offer
    node = seg_offer.cluster.nodes.order_by("pk")[node_index]
    devices = list(Device.objects.filter(node=node).order_by("index").values_list("pk", flat=True)[:cards])
    for a, b in periods:
        ReservationSegment.objects.create(
            reservation=reservation, node=node, device_ids=devices, provider=seg_offer.cluster.site.owner, offer=seg_offer,
            started_at=a, ended_at=b, price_per_card_hour_minor=price, currency=offer.currency,
        )
    return reservation


# --- Stripe: localstripe over HTTP, and the Connect fake ------------------------------------------------------------


def open_invoice(*, buyer, offer, total_hours=10, cards=8):
    """A served reservation of `buyer`, invoiced (March), approved and open."""
    from billing.models import Invoice
    from billing.services import billing_run, invoice_set_status

    served(buyer=buyer, offer=offer, periods=[(MARCH + H, MARCH + (1 + total_hours) * H)], cards=cards)
    billing_run(organization_ids=[buyer.pk], now=APRIL + H)
    invoice = Invoice.objects.filter(buyer=buyer).order_by("pk").last()
    for status in ("pending_review", "approved", "open"):
        invoice = invoice_set_status(invoice=invoice, status=status)
    return invoice


def card_saved(*, organization, number: str):
    """Save a card the way the page does: a SetupIntent confirmed with the card (as Stripe.js does, with
    the publishable key, over HTTP), then payment_method_save. Returns the profile."""
    import requests
    from django.conf import settings as django_settings

    from billing.payments import payment_method_save, payment_method_setup_start

    setup = payment_method_setup_start(organization=organization)
    answer = requests.post(
        f"{django_settings.STRIPE_API_BASE}/v1/setup_intents/{setup['setup_intent_id']}/confirm",
        json={"key": "pk_test_x", "client_secret": setup["client_secret"],
              "payment_method_data": {"type": "card", "card": {"number": number, "exp_month": "12", "exp_year": "2031", "cvc": "123"}}},
        timeout=10,
    )
    answer.raise_for_status()
    return payment_method_save(organization=organization, setup_intent_id=setup["setup_intent_id"])
