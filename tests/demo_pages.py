"""The demo network and every page of the site, by the role that opens it.

Shared by the checks that walk the pages: axe-core in Chromium (tests/e2e/test_accessibility.py) and
the untranslated-string walk in both languages (tests/i18n/test_pages_translated.py). A page added to
the site must be added here (or to NOT_PAGES with the reason): test_every_page_url_is_walked fails
otherwise.
"""

import zoneinfo
from datetime import timedelta
from io import StringIO

from django.apps import apps
from django.contrib.postgres.fields import ArrayField
from django.core.management import call_command
from django.db import models
from django.utils import timezone

from accounts.models import Job, User
from billing.models import Invoice, InvoiceLine
from inventory.management.demo_network import DEMO_LOGINS
from inventory.models import Node, Offer, Site
from marketplace.models import Reservation

ROLES = (None, "buyer", "provider", "finance", "operator")

# URL names that are not pages a person reads, and why.
NOT_PAGES = {
    "healthz": "a probe for load balancers (plain text)",
    "stripe-webhook": "Stripe posts events here",
    "logout": "POST only: signs out and redirects",
    "switch-organization": "POST only: switches and redirects",
    "member-remove": "POST only", "token-revoke": "POST only", "ssh-key-revoke": "POST only",
    "notification-read": "POST only", "notifications-read-all": "POST only",
    "set_language": "POST only: the language switcher",
    "javascript-catalog": "the scripts' catalog (JavaScript)",
    "provider-site-retire": "POST only", "provider-node-retire": "POST only", "provider-offer-retire": "POST only",
    "provider-maintenance-cancel": "POST only", "provider-agent-keys-bulk": "POST only",
    "provider-node-agent-key-create": "POST only", "provider-node-agent-key-revoke": "POST only",
    "provider-node-mismatch-resolve": "POST only",
    "provider-nodes-import-template": "a CSV file (its column names are the importer's keys)",
    "market-reservation-action": "POST only: release, cancel, extend",
    "billing-payment-method-save": "POST only", "billing-invoice-pay": "POST only",
    "operator-node-fail": "POST only",
    "finance-invoices-csv": "a CSV file", "finance-invoice-approve": "POST only", "finance-invoice-void": "POST only",
    "finance-credit-note": "POST only", "finance-run-billing": "POST only", "finance-run-export": "POST only",
    "job-status": "JSON for the progress bar", "job-download": "the job's file (CSV)",
}


def demo_seed() -> None:
    """The demo network, its bookings and two months of invoices (some approved, some for review).
    Needs the catalog and Stripe settings pointing at the test localstripe (the `stripe_settings` fixture)."""
    call_command("seed_demo", "--seed", "42", "--cards", "400", "--no-progress", stdout=StringIO(), stderr=StringIO())
    call_command("seed_demo_market", stdout=StringIO())
    call_command("seed_demo_billing", verbosity=0, stdout=StringIO())


def demo_user(role: str) -> User:
    return User.objects.get(email=DEMO_LOGINS[role])


def demo_objects() -> dict:
    """Ids of the demo's objects each role can open."""
    buyer = demo_user("buyer").memberships.first().organization
    provider_user = demo_user("provider")
    provider = provider_user.memberships.first().organization
    reservation = Reservation.objects.filter(buyer=buyer).order_by("-pk").first()
    buyer_invoice = Invoice.objects.filter(buyer=buyer).order_by("-pk").first()
    buyer_line = InvoiceLine.objects.filter(invoice=buyer_invoice).order_by("pk").first()
    review_invoice = Invoice.objects.filter(status__in=["draft", "pending_review"]).order_by("pk").first()
    line = InvoiceLine.objects.filter(invoice=review_invoice).order_by("pk").first()
    site = Site.objects.filter(owner=provider).order_by("pk").first()
    node = Node.objects.filter(cluster__site=site).order_by("pk").first()
    cluster = node.cluster if node else None
    offer = Offer.objects.filter(cluster__site__lifecycle="online").order_by("pk").first()
    provider_offer = Offer.objects.filter(cluster__site__owner=provider).order_by("pk").first()
    job = Job.objects.create(owner=provider_user, organization=provider, kind=Job.Kind.NODE_IMPORT,
                             status=Job.Status.DONE, progress_done=3, progress_total=3)
    # finance's billing run, its message worded in English by billing (shown in the reader's language)
    billing_job = Job.objects.create(owner=demo_user("finance"), organization=None, kind=Job.Kind.BILLING_RUN,
                                     status=Job.Status.DONE, progress_done=3, progress_total=3,
                                     message="3 draft invoices created.")
    found = {"billing_job": billing_job, "reservation": reservation, "buyer_invoice": buyer_invoice, "buyer_line": buyer_line,
             "review_invoice": review_invoice, "line": line, "site": site, "cluster": cluster, "node": node,
             "offer": offer, "provider_offer": provider_offer, "job": job}
    missing = [name for name, value in found.items() if value is None]
    assert not missing, f"the demo seed has no {missing}"
    return {name: value.pk for name, value in found.items()}


def main_pages(ids: dict) -> dict[str | None, list[str]]:
    """The main pages by the role that uses them (None: signed out): what axe-core checks."""
    tomorrow = (timezone.localtime(timezone.now(), zoneinfo.ZoneInfo("Asia/Shanghai")) + timedelta(days=1)).strftime("%Y-%m-%dT%H:00")
    return {
        None: ["/", "/accounts/login/", "/accounts/signup/", "/catalog/"],
        "buyer": [
            "/market/", "/market/?min_free_cards=8", f"/market/offers/{ids['offer']}/", f"/market/quote/?cards=8&start={tomorrow}&duration_hours=24&currency=CNY",
            "/market/reservations/", f"/market/reservations/{ids['reservation']}/", "/market/dashboard/",
            "/market/invoices/", f"/market/invoices/{ids['buyer_invoice']}/", "/market/billing/payment/",
            "/accounts/ssh-keys/", "/accounts/notifications/", "/accounts/notifications/preferences/",
            "/accounts/members/", "/accounts/tokens/",
        ],
        "provider": [
            "/provider/", f"/provider/sites/{ids['site']}/", f"/provider/clusters/{ids['cluster']}/",
            f"/provider/clusters/{ids['cluster']}/maintenance/", f"/provider/nodes/{ids['node']}/",
            "/provider/nodes/import/", "/provider/earnings/", "/provider/dashboard/",
        ],
        "finance": [
            "/finance/", f"/finance/invoices/{ids['review_invoice']}/",
            f"/finance/invoices/{ids['review_invoice']}/lines/{ids['line']}/",
            "/finance/invoices/", "/finance/aging/", "/finance/revenue/", "/finance/reconciliation/",
        ],
        "operator": ["/operator/", "/network/"],
    }


def all_pages(ids: dict) -> dict[str | None, list[str]]:
    """Every page of the site: the main pages, the forms, the printable invoices and the job page."""
    pages = main_pages(ids)
    pages[None] += ["/market/"]
    pages["buyer"] += [
        f"/market/invoices/{ids['buyer_invoice']}/print/",
        f"/market/invoices/{ids['buyer_invoice']}/lines/{ids['buyer_line']}/",
    ]
    pages["provider"] += [
        "/provider/sites/new/", f"/provider/sites/{ids['site']}/edit/", f"/provider/sites/{ids['site']}/clusters/new/",
        f"/provider/clusters/{ids['cluster']}/edit/", f"/provider/clusters/{ids['cluster']}/nodes/new/",
        f"/provider/clusters/{ids['cluster']}/offers/new/", f"/provider/nodes/{ids['node']}/edit/",
        f"/provider/offers/{ids['provider_offer']}/edit/", f"/jobs/{ids['job']}/",
    ]
    pages["finance"] += [f"/finance/invoices/{ids['review_invoice']}/print/", "/finance/payouts/", "/finance/runs/",
                         f"/jobs/{ids['billing_job']}/"]
    return pages


def page_url_names() -> set[str]:
    """The names of every URL outside the admin and the API."""
    from django.urls import URLResolver, get_resolver

    def walk(patterns, prefix=""):
        for pattern in patterns:
            if isinstance(pattern, URLResolver):
                yield from walk(pattern.url_patterns, prefix + str(pattern.pattern))
            else:
                yield prefix + str(pattern.pattern), pattern.name

    return {name for route, name in walk(get_resolver().url_patterns) if not route.startswith(("admin/", "api/"))}


# Text the code writes (not what people typed) that the pages show in the reader's language: not data,
# so an English leftover there is reported.
WORDED_BY_US = {"accounts.Notification.title", "accounts.Notification.body", "accounts.Job.message",
                "inventory.Node.mismatch_reason"}


def data_values(min_length: int = 3) -> set[str]:
    """Every free-text value in the database (names, hostnames, notes, emails; not choice fields, whose
    labels are interface text): what a page may show untranslated because it is data, not interface."""
    values: set[str] = set()

    def add(value) -> None:
        if isinstance(value, str):
            if len(value) >= min_length:
                values.add(value)
        elif isinstance(value, (list, tuple)):
            for item in value:
                add(item)
        elif isinstance(value, dict):
            for item in value.values():
                add(item)

    for model in apps.get_models():
        if model._meta.app_label not in {"accounts", "inventory", "marketplace", "billing"}:
            continue
        text_fields = [f.name for f in model._meta.concrete_fields
                       if isinstance(f, (models.CharField, models.TextField)) and not f.choices
                       and f"{model._meta.label}.{f.name}" not in WORDED_BY_US]
        # lists and documents of strings too: a site's certifications, a node's driver versions
        other_fields = [f.name for f in model._meta.concrete_fields if isinstance(f, (ArrayField, models.JSONField))]
        for field in text_fields + other_fields:
            for value in model.objects.values_list(field, flat=True).distinct()[:20000]:
                add(value)
    return values


