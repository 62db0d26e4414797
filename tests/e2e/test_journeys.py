"""The four journeys the marketplace must show, in a real Chromium against a live server, the real Celery
worker and the REAL node agent (`python -m nodeagent --simulate`, tests/marketplace/agent_process.py), each
in English and in Chinese (the browser's Accept-Language), with a screenshot at every step
(tests/e2e/journeys.py: test-results/journeys/<language>/<journey>/NN-<step>.png):

1. a provider onboards: signs up, lists a site, imports its nodes from CSV, starts the agent with the key
   the page shows, and sees a booking arrive on its dashboard;
2. a buyer searches, quotes, books, connects (the ssh command once the agent reports running), watches the
   usage on the dashboard and pays the invoice of the billing run with the test card 4242 (localstripe);
3. finance reviews a draft invoice, drills into its evidence and approves it with a reason;
4. an operator marks a serving node failed and watches its reservation move to other cards, which the
   buyer's page shows.

Chinese runs also check that the pages ARE Chinese (<html lang> and a translated heading per page); the
headings the catalog does not translate yet are listed together when the journey ends.
"""

import zoneinfo
from datetime import timedelta
from unittest import mock

import pytest
from django.utils import timezone

from accounts.models import Organization
from billing.models import Invoice
from billing.services import billing_account_get, billing_run, invoice_approve, next_local_month_start
from inventory.models import AcceleratorModel, Cluster, Node, Province, Site
from marketplace.metering.services import usage_rollup_refresh
from marketplace.models import NodeAssignment, Reservation, UsageHourly, UsageSample
from tests.e2e import test_finance_review as finance_review
from tests.e2e.journeys import LANGUAGES, Journey, reload_until
from tests.e2e.test_provider_inventory import HEADER
from tests.factories import ClusterFactory, NodeFactory, OfferFactory, UserFactory, staff_group
from tests.marketplace import test_operations_e2e as operations
from tests.marketplace.agent_process import AgentProcess

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

# Reused, not copied: the operations tests' world (a buyer with an SSH key and an API key, agent_for(node)
# starting the real agent, every agent stopped at the end) and booking over the API; finance's march draft
# (a buyer's served March, drafted by the billing run) and the card form of localstripe's Stripe.js.
world = operations.world
book_now = operations.book_now
wait_for = operations.wait_for
march_draft = finance_review.march_draft
fill_card = finance_review.fill_card

H100 = "nvidia-h100-sxm5-80gb"


@pytest.fixture(params=LANGUAGES)
def language(request):
    return request.param


@pytest.fixture
def journey(browser, live_server, language):
    """Journey(name) for this test's language; its browser contexts close with the test."""
    started = []

    def start(name: str) -> Journey:
        started.append(Journey(name=name, language=language, browser=browser, base_url=live_server.url))
        return started[-1]

    yield start
    for each in started:
        each.close()


def local_minute(instant, user) -> str:
    """A datetime-local input's value in the signed-in user's time zone (the form reads it there)."""
    return timezone.localtime(instant, zoneinfo.ZoneInfo(user.time_zone)).strftime("%Y-%m-%dT%H:%M")


def select_by_value(page, name: str, value) -> None:
    page.locator(f'[name="{name}"]').select_option(str(value))


def submit(page, form: str = "main form") -> None:
    page.locator(f'{form} button[type="submit"]').first.click()


# --- 1. a provider onboards ------------------------------------------------------------------------------------------


def provider_signs_up(journey, page, email: str) -> None:
    page.goto("/accounts/signup/")
    journey.expect_page_language(page, "Create your account")
    page.fill('[name="full_name"]', "Li Wei")
    page.fill('[name="email"]', email)
    page.fill('[name="password"]', "a long passphrase 2026")
    page.fill('[name="organization_name"]', "Ulanqab Compute")
    select_by_value(page, "kind", Organization.Kind.PROVIDER)
    journey.shot(page, "sign-up")
    submit(page)
    page.wait_for_selector('[data-testid="signed-in-as"]')
    assert page.get_by_test_id("active-organization").inner_text() == "Ulanqab Compute"
    journey.shot(page, "signed-up")


def provider_lists_a_site(journey, page) -> Cluster:
    """A site (online, in the Inner Mongolia hub), a cluster in it and, once nodes exist, an offer."""
    page.goto("/provider/")
    page.locator('a[href="/provider/sites/new/"]').first.click()
    page.fill('[name="name"]', "Ulanqab DC 1")
    select_by_value(page, "province", Province.objects.filter(hub__isnull=False).order_by("name").first().pk)
    page.fill('[name="city"]', "Ulanqab")
    select_by_value(page, "lifecycle", Site.Lifecycle.ONLINE)
    page.fill('[name="pue"]', "1.15")
    journey.shot(page, "new-site")
    submit(page)
    page.wait_for_url("**/provider/sites/*/")
    journey.expect_page_language(page, "Cards by model and status")
    journey.shot(page, "site-listed")
    page.locator('a[href$="/clusters/new/"]').first.click()
    page.fill('[name="name"]', "roce-a")
    select_by_value(page, "fabric", Cluster.Fabric.ROCE)
    page.fill('[name="fabric_bandwidth_gbps"]', "400")
    submit(page)
    page.wait_for_url("**/provider/clusters/*/")
    return Cluster.objects.get(name="roce-a", site__name="Ulanqab DC 1")


def provider_imports_nodes(journey, page, cluster) -> Node:
    page.goto(f"/provider/nodes/import/?cluster={cluster.pk}")
    journey.expect_page_language(page, "Import nodes from CSV")
    rows = [f"ulq-gpu-{i:02d},{cluster.pk},{H100},8,128,2048,15360,Xeon 8480+" for i in (1, 2)]
    page.locator('input[name="file"]').set_input_files(
        files=[{"name": "nodes.csv", "mimeType": "text/csv", "buffer": ("\n".join([HEADER, *rows]) + "\n").encode()}])
    journey.shot(page, "import-chosen")
    submit(page, "form.pv-form")
    # the import runs on the worker; its job page follows it by itself
    page.wait_for_selector('[data-testid="job"][data-status="done"]', timeout=60_000)
    journey.shot(page, "import-done")
    page.get_by_test_id("job-result-link").click()
    nodes = page.locator('[data-testid="nodes"] tbody tr')
    assert nodes.count() == 2 and "ulq-gpu-02" in nodes.last.inner_text()
    # an offer puts the cluster's cards on the market
    page.locator(f'a[href="/provider/clusters/{cluster.pk}/offers/new/"]').click()
    select_by_value(page, "accelerator_model", AcceleratorModel.objects.get(slug=H100).pk)
    page.fill('[name="price_per_card_hour"]', "22.50")
    select_by_value(page, "currency", "CNY")
    journey.shot(page, "new-offer")
    submit(page)
    page.wait_for_selector('[data-testid="offers"] .badge.ok')
    journey.shot(page, "cluster-on-the-market")
    return Node.objects.get(cluster=cluster, hostname="ulq-gpu-01")


def provider_starts_the_agent(journey, page, node, world) -> AgentProcess:
    """The node page makes a key; the real agent runs with exactly the key the page shows."""
    page.goto(f"/provider/nodes/{node.pk}/")
    journey.expect_page_language(page, "Agent keys")
    page.locator(f'form[action="/provider/nodes/{node.pk}/agent-keys/"] button').click()
    key = page.get_by_test_id("new-agent-key").inner_text().strip()
    journey.shot(page, "agent-key")
    agent = AgentProcess(server=world["url"], key=key, model=node.accelerator_model.name, cards=node.card_count,
                         log_path=world["tmp_path"] / f"agent-{node.hostname}.log")
    world["agents"].append(agent)
    # the agent registers and heartbeats: the node turns online, and the page shows what it reported
    wait_for(lambda: Node.objects.get(pk=node.pk).status == Node.Status.ONLINE, what="node online", agents=[agent])
    reload_until(page, '[data-testid="reported"]', agents=[agent])
    assert page.get_by_test_id("node-status").inner_text() == journey.t(Node.Status.ONLINE.label)
    journey.shot(page, "agent-online")
    return agent


@pytest.mark.celery
def test_a_provider_signs_up_lists_a_site_imports_nodes_starts_an_agent_and_sees_a_booking_arrive(
        journey, world, celery_worker_process, tmp_path, language):
    trip = journey("provider-onboards")
    world["tmp_path"] = tmp_path
    page = trip.new_page()
    provider_signs_up(trip, page, f"li.wei+{language}@ulanqab.example")
    cluster = provider_lists_a_site(trip, page)
    node = provider_imports_nodes(trip, page, cluster)
    agent = provider_starts_the_agent(trip, page, node, world)

    # When a buyer books 4 of the cards over the API, starting now
    booked = book_now(world, cluster.offers.get(), cards=4, hours=2)
    # Then the booking arrives on the provider's dashboard calendar, and turns active once the agent runs it
    page.goto("/provider/dashboard/")
    trip.expect_page_language(page, "Per site and model")
    booking = page.locator(f'[data-testid="calendar-booking"][data-reservation="{booked["id"]}"]')
    assert booking.count() == 1 and "H100" in booking.inner_text()
    trip.shot(page, "booking-arrived")
    wait_for(lambda: Reservation.objects.get(pk=booked["id"]).status == Reservation.Status.ACTIVE,
               what="the booking active", agents=[agent])
    page.reload()
    assert trip.t(Reservation.Status.ACTIVE.label) in booking.inner_text()
    trip.shot(page, "booking-active")
    trip.assert_translated()


# --- 2. a buyer ------------------------------------------------------------------------------------------------------


@pytest.fixture
def market_with_agent(world, catalog, tmp_path):
    """One online 8-card H100 node, on the market at 25.00 CNY per card-hour, its real agent running."""
    node = NodeFactory(cluster=ClusterFactory(name="gz-ib-j"), hostname="gz-j-01", card_count=8)
    offer = OfferFactory(cluster=node.cluster, price_per_card_hour_minor=2500)
    agent = world["agent_for"](node)
    wait_for(lambda: Node.objects.get(pk=node.pk).last_heartbeat_at, what="the agent's first heartbeat", agents=[agent])
    return offer, agent


def buyer_searches_and_quotes(trip, page, user) -> None:
    page.goto("/market/")
    trip.expect_page_language(page, "Find accelerator capacity")
    page.fill('[name="min_free_cards"]', "4")
    submit(page, '[data-testid="search-form"]')
    rows = page.locator('[data-testid="offers"] tbody tr')
    assert rows.count() == 1 and "H100" in rows.first.inner_text()
    assert "min_free_cards=4" in page.url
    trip.shot(page, "search")

    page.goto("/market/quote/")
    trip.expect_page_language(page, "What does your job need?")
    page.fill('[name="cards"]', "4")
    page.fill('[name="start"]', local_minute(timezone.now(), user))  # now: the agent starts it at once
    page.fill('[name="duration_hours"]', "2")
    submit(page, '[data-testid="quote-form"]')
    placements = page.locator('[data-testid="placements"] tbody tr')
    assert placements.count() == 1 and trip.money(4 * 2 * 2500, "CNY") in placements.first.inner_text()  # 4 cards, 2 h
    trip.shot(page, "quote")


def buyer_books_and_connects(trip, page, agent) -> Reservation:
    page.locator('[data-testid="placements"] tbody tr').first.locator('button[type="submit"]').click()
    page.wait_for_selector('[data-testid="booking-confirmed"]')
    reservation = Reservation.objects.get()
    trip.expect_page_language(page, "Timeline")
    trip.shot(page, "booked")
    # the worker provisions it, the agent boots it and reports running: the login command appears
    command = reload_until(page, '[data-testid="connection-command"]', what="the ssh command", agents=[agent])
    assignment = NodeAssignment.objects.get(reservation_id=reservation.pk)
    assert command.inner_text() == f"ssh -p {assignment.ssh_port} root@gz-j-01"
    assert page.get_by_test_id("reservation-status").inner_text() == trip.t(Reservation.Status.ACTIVE.label)
    trip.shot(page, "connect")
    return reservation


def busy_cards(reservation) -> int:
    """Cards with at least 36 busy seconds (0.01 card-hour, what the dashboard shows) in the hourly rollup,
    refreshed first as beat's task does."""
    usage_rollup_refresh()
    return UsageHourly.objects.filter(reservation_id=reservation.pk, busy_seconds__gte=36).values("device").distinct().count()


def buyer_watches_usage(trip, page, reservation, agent) -> None:
    wait_for(lambda: UsageSample.objects.filter(reservation_id=reservation.pk).values("device").distinct().count() == 4,
               what="usage samples of the 4 cards", agents=[agent])
    wait_for(lambda: busy_cards(reservation) == 4, timeout=120, what="a busy minute on the 4 cards", agents=[agent])
    # The dashboard counts the hours that have ended (to the last full hour), and this hour has just begun:
    # the buyer looks again an hour later - the live server's clock only, for this one page (the agent and
    # the worker keep the real time; the reservation, booked for 2 hours, still holds its cards then).
    an_hour_later = timezone.now() + timedelta(hours=1)
    with mock.patch("django.utils.timezone.now", return_value=an_hour_later):
        page.goto("/market/dashboard/")
    trip.expect_page_language(page, "Upcoming bookings")
    row = page.locator('[data-testid="active-table"] tbody tr',
                       has=page.locator(f'a[href="/market/reservations/{reservation.pk}/"]'))
    cells = row.locator("td")
    assert float(cells.nth(2).inner_text()) >= 0.04  # busy card-hours: 4 cards, each 0.01 h or more
    assert cells.nth(3).inner_text().endswith("%")  # utilization, of the 24 hours' card-hours
    trip.shot(page, "usage")


def buyer_pays(trip, page, reservation, agent) -> None:
    # released from its page (billing bills service until then) ...
    page.goto(f"/market/reservations/{reservation.pk}/")
    page.on("dialog", lambda dialog: dialog.accept())
    page.locator(f'form[action="/market/reservations/{reservation.pk}/release/"] button').click()
    wait_for(lambda: Reservation.objects.get(pk=reservation.pk).status == Reservation.Status.COMPLETED,
               what="released", agents=[agent])
    trip.shot(page, "released")
    # ... invoiced by the month's billing run (run here, an hour into next month) and approved by finance
    buyer = reservation.buyer
    month_end = next_local_month_start(instant=timezone.now(), time_zone=billing_account_get(organization_id=buyer.pk).time_zone)
    assert billing_run(now=month_end + timedelta(hours=1), organization_ids=[buyer.pk]) == 1
    invoice = invoice_approve(invoice=Invoice.objects.get(buyer=buyer), actor=None, reason="journey: usage checked")
    assert invoice.total_minor > 0

    page.goto("/market/billing/payment/")
    fill_card(page, "4242424242424242")
    trip.shot(page, "card-saved")
    page.goto("/market/invoices/")
    page.locator(f'a[href="/market/invoices/{invoice.pk}/"]').first.click()
    trip.expect_page_language(page, "Payment")
    trip.shot(page, "invoice")
    page.get_by_test_id("pay-now").click()
    page.wait_for_selector('[data-testid="payment-status"] .badge.ok')
    assert page.get_by_test_id("pay-now").count() == 0
    assert Invoice.objects.get(pk=invoice.pk).status == Invoice.Status.PAID
    trip.shot(page, "paid")


@pytest.mark.celery
def test_a_buyer_searches_quotes_books_connects_watches_usage_and_pays(
        journey, world, market_with_agent, stripe_settings, celery_worker_process):
    _offer, agent = market_with_agent
    trip = journey("buyer")
    page = trip.new_page()
    trip.sign_in(page, world["user"])
    buyer_searches_and_quotes(trip, page, world["user"])
    reservation = buyer_books_and_connects(trip, page, agent)
    buyer_watches_usage(trip, page, reservation, agent)
    buyer_pays(trip, page, reservation, agent)
    trip.assert_translated()


# --- 3. finance ------------------------------------------------------------------------------------------------------


def test_finance_reviews_the_evidence_and_approves_an_invoice_with_a_reason(journey, march_draft):
    invoice, reservation = march_draft
    finance = UserFactory(email="finance-journey@example.test")
    finance.groups.add(staff_group("finance"))
    trip = journey("finance")
    page = trip.new_page()
    trip.sign_in(page, finance)

    # the review queue lists the draft
    page.goto("/finance/")
    trip.expect_page_language(page, "Invoices to review")
    queue = page.get_by_test_id("review-queue")
    assert "Gamma Robotics" in queue.inner_text()
    trip.shot(page, "queue")
    queue.locator(f'a[href="/finance/invoices/{invoice.pk}/"]').first.click()
    trip.expect_page_language(page, "Audit trail")
    assert page.get_by_test_id("invoice-status").inner_text() == trip.t(Invoice.Status.DRAFT.label)
    trip.shot(page, "draft")
    invoice_url = page.url

    # drill-down: each device-hour of the charge (8 devices x 3 hours)
    page.get_by_test_id("evidence-link").first.click()
    assert page.locator('[data-testid="evidence"] tbody tr').count() == 24
    assert page.get_by_test_id("evidence-seconds-total").inner_text() == str(8 * 9000)
    trip.shot(page, "evidence")

    # approve with a reason: numbered, and the audit trail says who and why
    page.goto(invoice_url)
    reason = {"en": "Evidence matches the service segments.", "zh-hans": "证据与服务时段一致。"}[trip.language]
    page.locator('[data-testid="approve-form"] [name="reason"]').fill(reason)
    trip.shot(page, "approving")
    page.locator('[data-testid="approve-form"] button[type="submit"]').click()
    page.wait_for_function(f"() => document.querySelector('[data-testid=invoice-status]').innerText.trim() === "
                           f"{trip.t(Invoice.Status.APPROVED.label)!r}")
    invoice.refresh_from_db()
    assert invoice.status == Invoice.Status.APPROVED and invoice.number is not None
    trail = page.get_by_test_id("audit-trail").inner_text()
    assert "finance-journey@example.test" in trail and reason in trail
    trip.shot(page, "approved")
    trip.assert_translated()


# --- 4. an operator --------------------------------------------------------------------------------------------------


@pytest.mark.celery
def test_an_operator_marks_a_node_failed_and_watches_its_reservation_move(journey, world, catalog, celery_worker_process):
    # Given a reservation active through the real agents on one of two 8-card nodes
    cluster = ClusterFactory(name="hz-ib-j")
    nodes = [NodeFactory(cluster=cluster, hostname=f"hz-j-0{i}", card_count=8) for i in (1, 2)]
    offer = OfferFactory(cluster=cluster)
    agents = [world["agent_for"](node) for node in nodes]
    booked = book_now(world, offer, cards=4, hours=2)
    wait_for(lambda: Reservation.objects.get(pk=booked["id"]).status == Reservation.Status.ACTIVE, what="active", agents=agents)
    failing = NodeAssignment.objects.get(reservation_id=booked["id"]).node
    other = next(node for node in nodes if node.pk != failing.pk)

    trip = journey("operator")
    buyer_page = trip.new_page()
    trip.sign_in(buyer_page, world["user"])
    buyer_page.goto(f"/market/reservations/{booked['id']}/")
    assert failing.hostname in buyer_page.get_by_test_id("connection-command").inner_text()
    trip.shot(buyer_page, "buyer-before")

    operator = UserFactory(email="operator-journey@example.test")
    operator.groups.add(staff_group("operator"))
    page = trip.new_page()
    trip.sign_in(page, operator)
    page.goto("/operator/")
    trip.expect_page_language(page, "Mark a node failed")
    assert page.locator(f'[data-testid="serving-nodes"] tr[data-node="{failing.pk}"]').count() == 1
    trip.shot(page, "serving")

    # When the operator marks the serving node failed (the page asks to confirm)
    form = page.get_by_test_id("mark-failed-form")
    form.locator('[name="node"]').fill(str(failing.pk))
    form.locator('[name="cause"]').select_option("host_fault")
    form.locator('[name="reason"]').fill("PSU fault: journey drill")
    form.locator('[name="confirm"]').check()
    trip.shot(page, "marking-failed")
    page.once("dialog", lambda dialog: dialog.accept())
    form.locator('button[type="submit"]').click()
    page.wait_for_selector(f'[data-testid="failed-nodes"] tr[data-node="{failing.pk}"]')
    trip.shot(page, "node-failed")

    # Then the reservation moves (migrating) and is active again on the other node's cards
    wait_for(lambda: NodeAssignment.objects.filter(reservation_id=booked["id"], node=other, state="running").exists(),
               what="running on the other node", agents=agents)
    wait_for(lambda: Reservation.objects.get(pk=booked["id"]).status == Reservation.Status.ACTIVE, what="active again", agents=agents)
    moves = list(Reservation.objects.get(pk=booked["id"]).status_changes.order_by("pk").values_list("to_status", flat=True))
    assert Reservation.Status.MIGRATING in moves[moves.index(Reservation.Status.ACTIVE):] and moves[-1] == Reservation.Status.ACTIVE
    page.reload()
    assert page.locator(f'[data-testid="migrating"] tr[data-reservation="{booked["id"]}"]').count() == 0
    trip.shot(page, "moved")

    # and the buyer's page shows the move: the node failure, the downtime, the new login command
    buyer_page.reload()
    assert buyer_page.get_by_test_id("failover-news").count() == 1
    assert failing.hostname in buyer_page.get_by_test_id("downtime").inner_text()
    assert other.hostname in buyer_page.get_by_test_id("connection-command").inner_text()
    assert buyer_page.get_by_test_id("reservation-status").inner_text() == trip.t(Reservation.Status.ACTIVE.label)
    trip.expect_page_language(buyer_page, "Downtime")
    trip.shot(buyer_page, "buyer-after")
    trip.assert_translated()
