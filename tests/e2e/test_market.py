"""In a real browser: a buyer filters offers, gets a quote, books and sees the reservation; a second
buyer who was about to book the same cards gets a clear conflict message instead of a double booking."""

import zoneinfo
from datetime import timedelta

import pytest
from django.utils import timezone

from accounts.models import Organization
from inventory.models import DeviceAllocation
from marketplace.models import Reservation
from tests.factories import (
    DEFAULT_PASSWORD,
    ClusterFactory,
    NodeFactory,
    OfferFactory,
    OrganizationFactory,
    accelerator,
    catalog_loaded,
    member,
)

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def sign_in(page, user):
    page.goto("/accounts/login/")
    page.get_by_label("Email").fill(user.email)
    page.get_by_label("Password").fill(DEFAULT_PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_selector('[data-testid="signed-in-as"]')


@pytest.fixture
def market():
    catalog_loaded()
    h100_cluster = ClusterFactory(name="gz-ib-1")
    NodeFactory(cluster=h100_cluster, hostname="gz-h100-01")
    h100 = OfferFactory(cluster=h100_cluster, price_per_card_hour_minor=2500)
    ascend = accelerator("huawei-ascend-910b-generic-atlas-800t-a2")
    ascend_cluster = ClusterFactory(name="gz-roce-1")
    NodeFactory(cluster=ascend_cluster, hostname="gz-910b-01", accelerator_model=ascend)
    OfferFactory(cluster=ascend_cluster, accelerator_model=ascend, price_per_card_hour_minor=900)
    first = member(organization=OrganizationFactory(name="Moonshot Labs", kind=Organization.Kind.BUYER))
    second = member(organization=OrganizationFactory(name="Second Startup", kind=Organization.Kind.BUYER))
    return h100, first, second


def test_a_buyer_filters_quotes_and_books_and_a_second_buyer_gets_a_conflict(page, browser, live_server, market):
    h100, first, second = market
    shanghai = zoneinfo.ZoneInfo("Asia/Shanghai")  # the buyers' time zone (the users' default)
    start = timezone.localtime(timezone.now().replace(minute=0, second=0, microsecond=0) + timedelta(days=2), shanghai)
    start_local = start.strftime("%Y-%m-%dT%H:%M")
    end_local = (start + timedelta(hours=24)).strftime("%Y-%m-%dT%H:%M")

    # Given a second buyer who has the booking form for the same 8 H100 cards open
    other_context = browser.new_context(base_url=live_server.url)
    other = other_context.new_page()
    sign_in(other, second)
    other.goto(f"/market/offers/{h100.pk}/?start={start_local}&end={end_local}&cards=8")
    other.wait_for_selector('[data-testid="booking-form"]')

    # When the first buyer filters the market by software stack and a window
    sign_in(page, first)
    page.get_by_role("link", name="Search").click()
    page.get_by_label("Software stack").select_option("cuda")
    page.get_by_label("Window start").fill(start_local)
    page.get_by_label("Window end").fill(end_local)
    page.get_by_label("Min free cards").fill("8")
    page.get_by_role("button", name="Search").click()
    rows = page.locator('[data-testid="offers"] tbody tr')
    assert rows.count() == 1
    assert "H100" in rows.first.inner_text() and "8 / 8" in rows.first.inner_text()
    assert "stack=cuda" in page.url  # the filters live in the address, so the search can be shared

    # and asks for a quote: 8 cards of >= 64 GB, CUDA or CANN, for 24 hours
    page.get_by_role("link", name="Quote").click()
    page.get_by_label("Cards").fill("8")
    page.get_by_label("Min memory per card (GB)").fill("64")
    page.get_by_label("Acceptable software stacks").select_option(["cuda", "cann"])
    page.get_by_label("Start").fill(start_local)
    page.get_by_label("Duration (hours)").fill("24")
    page.get_by_role("button", name="Get quote").click()
    placements = page.locator('[data-testid="placements"] tbody tr')
    assert placements.count() == 2
    assert "H100" in placements.first.inner_text()  # cheaper per ECU-hour than the 910B
    assert "CNY 4,800.00" in placements.first.inner_text()  # 25 CNY x 8 cards x 24 h

    # and books the first placement
    placements.first.get_by_role("button", name="Book").click()

    # Then the confirmation shows the reservation with its locked price and timeline
    page.wait_for_selector('[data-testid="booking-confirmed"]')
    assert page.get_by_test_id("reservation-status").inner_text() == "Requested"
    assert page.get_by_test_id("reservation-total").inner_text() == "CNY 4,800.00"
    assert "Requested" in page.get_by_test_id("timeline").inner_text()
    page.get_by_role("link", name="My reservations").click()
    assert page.locator('[data-testid="reservations"] tbody tr').count() == 1

    # When the second buyer now submits the form for the same cards
    other.get_by_role("button", name="Book").click()

    # Then they are told, next to the card count, that none of those cards is free any more (the first
    # booking had committed before theirs picked cards: too few free, not a race), and nothing was double-booked
    alert = other.locator('.field-error[data-field="card_count"]')
    alert.wait_for()
    assert "None of the 8 cards you asked for is free in that window" in alert.inner_text()
    assert Reservation.objects.count() == 1
    assert DeviceAllocation.objects.filter(is_active=True).count() == 8
    # and the second buyer does not see the first buyer's reservation
    other.goto("/market/reservations/")
    assert other.locator('[data-testid="reservations"] tbody tr').first.inner_text().startswith("No reservations")
    other_context.close()
