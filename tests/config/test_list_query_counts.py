"""Every list endpoint of the API costs the same number of queries for one row as for many: no N+1.

The list endpoints are read from the OpenAPI schema (a GET answering a page or an array), so a new
list endpoint without a row builder here fails test_every_list_endpoint_has_a_query_count_test.
"""

import base64
import os
from dataclasses import dataclass
from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from drf_spectacular.generators import SchemaGenerator
from rest_framework.test import APIClient

from accounts.models import Membership, Organization, User
from accounts.services import api_token_create, ssh_key_add
from inventory.agent_services import node_agent_token_create
from inventory.services import maintenance_window_create
from marketplace.models import LaunchTemplate, LaunchTemplateImage
from marketplace.services import reservation_cancel, reservation_create
from tests.factories import ClusterFactory, NodeFactory, OfferFactory, OrganizationFactory, SiteFactory, member

pytestmark = pytest.mark.django_db

FEW, MANY = 1, 6


@dataclass
class World:
    provider: Organization
    provider_user: User
    buyer: Organization
    buyer_user: User
    key_node: object  # the node whose agent keys are listed
    start: object

    def client(self, *, as_buyer: bool) -> APIClient:
        user, organization = (self.buyer_user, self.buyer) if as_buyer else (self.provider_user, self.provider)
        _, key = api_token_create(user=user, organization=organization, name="query counts")
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Token {key}")
        return client


def _cluster(world: World):
    # every row in its own site and cluster, so a relation read per row shows up as a query per row
    return ClusterFactory(site=SiteFactory(owner=world.provider))


def _offer_with_cards(world: World):
    cluster = _cluster(world)
    NodeFactory(cluster=cluster, card_count=2)
    return OfferFactory(cluster=cluster)


def add_sites(world, n):
    for _ in range(n):
        _cluster(world)


def add_clusters(world, n):
    add_sites(world, n)


def add_nodes(world, n):
    for _ in range(n):
        NodeFactory(cluster=_cluster(world), card_count=2)


def add_offers(world, n):
    for _ in range(n):
        _offer_with_cards(world)


def add_maintenance_windows(world, n):
    for i in range(n):
        node = NodeFactory(cluster=_cluster(world), card_count=2)
        maintenance_window_create(cluster=node.cluster, node=node if i % 2 else None, start=world.start,
                                  end=world.start + timedelta(hours=2), reason="firmware", actor=world.provider_user)


def add_reservations(world, n):
    for i in range(n):
        offer = _offer_with_cards(world)
        reservation, _ = reservation_create(organization=world.buyer, created_by=world.buyer_user, offer=offer,
                                            card_count=1, start=world.start, end=world.start + timedelta(hours=2))
        if i % 2:  # a longer timeline, with an actor
            reservation_cancel(reservation=reservation, actor=world.buyer_user)


def add_launch_templates(world, n):
    for i in range(n):
        template = LaunchTemplate.objects.create(slug=f"qc-{LaunchTemplate.objects.count()}-{i}", name="Query count",
                                                 workload_kind=LaunchTemplate.WorkloadKind.TRAINING)
        for stack in ("cuda", "rocm"):  # several images per row, so an image read per row shows
            LaunchTemplateImage.objects.create(template=template, stack=stack, image=f"example/{stack}:1")


def add_agent_keys(world, n):
    for _ in range(n):
        node_agent_token_create(node=world.key_node)


def add_ssh_keys(world, n):
    for _ in range(n):
        blob = b"".join(len(part).to_bytes(4, "big") + part for part in (b"ssh-ed25519", os.urandom(32)))
        ssh_key_add(user=world.buyer_user, name="", public_key=f"ssh-ed25519 {base64.b64encode(blob).decode()} k@laptop")


def _issued_invoices(world, n):
    """n approved invoices of the buyer, each with a charge line of its own reservation and provider, and a credit note."""
    from datetime import UTC, datetime

    from billing.models import Invoice, InvoiceLine
    from billing.services import credit_note_create, invoice_set_status
    from marketplace.models import Reservation

    invoices = []
    for _ in range(n):
        offer = _offer_with_cards(world)
        start = datetime(2026, 3, 1, tzinfo=UTC) + timedelta(days=Invoice.objects.count())  # one invoice per buyer and period
        reservation = Reservation.objects.create(
            buyer=world.buyer, offer=offer, cluster=offer.cluster, accelerator_model=offer.accelerator_model, card_count=1,
            start=start, end=start + timedelta(days=1), booked_end=start + timedelta(days=1), status="completed",
            price_per_card_hour_minor=100, currency="CNY")
        invoice = Invoice.objects.create(buyer=world.buyer, currency="CNY", period_start=start, period_end=start + timedelta(days=1),
                                         total_minor=2400)
        InvoiceLine.objects.create(invoice=invoice, reservation=reservation, provider=SiteFactory(owner=OrganizationFactory(kind="provider")).owner,
                                   kind="charge", period_start=invoice.period_start, period_end=invoice.period_end, card_seconds=86400,
                                   price_per_card_hour_minor=100, amount_minor=2400)
        invoice_set_status(invoice=invoice, status="pending_review")
        invoices.append(invoice_set_status(invoice=invoice, status="approved"))
        credit_note_create(invoice=invoice, amount_minor=100, reason="query count", actor=None)
    return invoices


def add_invoices(world, n):
    _issued_invoices(world, n)


def add_invoice_evidence(world, n):
    from billing.models import InvoiceLine, InvoiceLineEvidence

    for invoice in _issued_invoices(world, n):
        line = InvoiceLine.objects.get(invoice=invoice)
        InvoiceLineEvidence.objects.create(line=line, device_id=1, hour=line.period_start, billable_seconds=3600, samples=60,
                                           busy_seconds=3000.0, utilization_mean=80.0)


def add_credit_notes(world, n):
    _issued_invoices(world, n)


def add_payment_attempts(world, n):
    """n invoices of the buyer, each with a failed and a succeeded attempt (rows as billing.payments writes them)."""
    from billing.models import PaymentAttempt

    for invoice in _issued_invoices(world, n):
        PaymentAttempt.objects.create(invoice=invoice, attempt=1, idempotency_key=f"invoice-{invoice.pk}-attempt-1", amount_minor=100,
                                      currency="CNY", status="failed", decline_code="card_declined", failure_reason="Your card was declined.")


def add_payouts(world, n):
    """n payouts to the provider, each of its own invoice."""
    from billing.models import Payout

    for invoice in _issued_invoices(world, n):
        Payout.objects.create(provider=world.provider, invoice=invoice, currency="CNY", amount_minor=85, destination="acct_query_counts",
                              idempotency_key=f"payout-invoice-{invoice.pk}-provider-{world.provider.pk}-1", status="in_transit")


def add_notifications(world, n):
    from accounts.models import NotificationKind
    from accounts.notifications import notify

    for _ in range(n):
        key = f"query-count:{os.urandom(6).hex()}"
        notify(users=[world.buyer_user], kind=NotificationKind.RESERVATION_ACTIVE, title="Query count", dedupe_key=key,
               link="/market/reservations/1/")


# schema path -> (rows builder, asked as the buyer?)
LIST_ENDPOINTS = {
    "/api/sites/": (add_sites, False),
    "/api/clusters/": (add_clusters, False),
    "/api/nodes/": (add_nodes, False),
    "/api/offers/": (add_offers, False),
    "/api/maintenance-windows/": (add_maintenance_windows, False),
    "/api/agent/nodes/{node_id}/keys/": (add_agent_keys, False),
    "/api/market/offers/": (add_offers, True),
    "/api/reservations/": (add_reservations, True),
    "/api/ssh-keys/": (add_ssh_keys, True),
    "/api/notifications/": (add_notifications, True),
    "/api/launch-templates/": (add_launch_templates, True),
    "/api/invoices/": (add_invoices, True),
    "/api/credit-notes/": (add_credit_notes, True),
    "/api/invoice-evidence/": (add_invoice_evidence, True),
    "/api/payment-attempts/": (add_payment_attempts, True),
    "/api/payouts/": (add_payouts, False),
}


def list_endpoints_in_schema() -> set[str]:
    """GET operations whose answer is a page (count/next/previous/results) or a bare array."""
    schema = SchemaGenerator().get_schema(request=None, public=True)
    found = set()
    for path, operations in schema["paths"].items():
        answer = operations.get("get", {}).get("responses", {}).get("200", {})
        body = answer.get("content", {}).get("application/json", {}).get("schema", {})
        if body.get("type") == "array":
            found.add(path)
        elif "$ref" in body:
            component = schema["components"]["schemas"][body["$ref"].rsplit("/", 1)[1]]
            if "results" in component.get("properties", {}):
                found.add(path)
    return found


def test_every_list_endpoint_has_a_query_count_test():
    # given the API's list endpoints, as the schema documents them
    # then each has a row builder below (a new list endpoint must come with its query-count test)
    assert list_endpoints_in_schema() == set(LIST_ENDPOINTS)


@pytest.fixture
def world(catalog):
    provider = OrganizationFactory(kind=Organization.Kind.PROVIDER)
    buyer = OrganizationFactory(kind=Organization.Kind.BUYER)
    key_node = NodeFactory(cluster=ClusterFactory(site=SiteFactory(owner=provider)), card_count=1)
    start = timezone.now().replace(minute=0, second=0, microsecond=0) + timedelta(days=2)
    return World(provider=provider, provider_user=member(organization=provider, role=Membership.Role.OWNER),
                 buyer=buyer, buyer_user=member(organization=buyer, role=Membership.Role.OWNER),
                 key_node=key_node, start=start)


def _rows(body) -> list:
    return body["results"] if isinstance(body, dict) else body


@pytest.mark.parametrize("path", sorted(LIST_ENDPOINTS))
def test_a_list_costs_as_many_queries_for_six_rows_as_for_one(world, path):
    add_rows, as_buyer = LIST_ENDPOINTS[path]
    client = world.client(as_buyer=as_buyer)
    url = path.format(node_id=world.key_node.pk)
    baseline = len(_rows(client.get(url, {"page_size": 200}).json()))

    def measured():
        with CaptureQueriesContext(connection) as queries:
            response = client.get(url, {"page_size": 200})
        assert response.status_code == 200, response.content
        return len(_rows(response.json())) - baseline, [query["sql"] for query in queries.captured_queries]

    # given one row
    add_rows(world, FEW)
    # when the list is read
    few_rows, few_queries = measured()
    # and given five more, read again
    add_rows(world, MANY - FEW)
    many_rows, many_queries = measured()

    # then both answers list the new rows, and the second cost no more queries than the first
    assert (few_rows, many_rows) == (FEW, MANY)
    assert len(many_queries) == len(few_queries), "\n".join(many_queries)
