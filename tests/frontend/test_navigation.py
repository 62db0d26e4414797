"""The navigation shows only links the viewer can use, and every time on a page names its zone."""

import re
from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import call_command
from django.utils import timezone

from accounts.models import User
from inventory.management.demo_network import DEMO_LOGINS
from tests.factories import UserFactory, staff_group

pytestmark = pytest.mark.django_db


def header_links(body: str) -> list[str]:
    header = body.split('<header class="topbar">')[1].split("</header>")[0]
    return sorted(set(re.findall(r'<a [^>]*href="([^"]+)"', header)))


@pytest.fixture
def demo_network(catalog):
    call_command("seed_demo", "--seed", "42", "--cards", "400", "--no-progress", stdout=StringIO(), stderr=StringIO())


@pytest.mark.parametrize("role", [None, *DEMO_LOGINS])
def test_every_navigation_link_of_every_demo_role_answers_200(client, demo_network, role):
    # given a demo login (or an anonymous visitor)
    if role is not None:
        client.force_login(User.objects.get(email=DEMO_LOGINS[role]))
    # when they look at the navigation of the landing page and of the search page
    links = set(header_links(client.get("/").content.decode())) | set(header_links(client.get("/market/").content.decode()))
    assert links
    # then every link in it opens (no 404 / 403 / redirect to a sign-in they cannot pass)
    answers = {link: client.get(link).status_code for link in links}
    assert answers == dict.fromkeys(links, 200)


@pytest.mark.parametrize("role", ["finance", "operator"])
def test_platform_staff_without_an_organization_see_no_members_or_api_keys(client, demo_network, role):
    client.force_login(User.objects.get(email=DEMO_LOGINS[role]))
    links = header_links(client.get("/").content.decode())
    assert "/accounts/members/" not in links and "/accounts/tokens/" not in links


def test_an_operator_who_is_not_staff_gets_no_admin_link(client):
    # the admin needs staff status; a link that only leads to the admin's sign-in page is dead
    user = UserFactory()
    user.groups.add(staff_group("operator"))
    client.force_login(user)
    assert "/admin/" not in header_links(client.get("/").content.decode())


def test_anonymous_pages_say_their_times_are_utc(client, small_offer_for_pages):
    start = (timezone.now() + timedelta(days=2)).replace(minute=0, second=0, microsecond=0)
    # given an anonymous visitor searching a window typed as 09:00 (read as UTC: they have no zone)
    body = client.get("/market/", {"start": f"{start:%Y-%m-%dT%H:%M}",
                                   "end": f"{start + timedelta(hours=4):%Y-%m-%dT%H:%M}"}).content.decode()
    count = body.split('data-testid="result-count"')[1].split("</p>")[0]
    # then the window is shown with its zone, and the page says which zone that is
    assert f"{start:%Y-%m-%d %H:%M} UTC" in count
    assert "Times are shown in UTC" in body
    # and the window inputs say which zone a typed time is read in
    assert body.count('data-testid="input-zone">(UTC)') == 2


def test_a_signed_in_users_pages_show_their_zone(client, small_offer_for_pages):
    user = UserFactory(time_zone="Asia/Shanghai")
    client.force_login(user)
    start = (timezone.now() + timedelta(days=2)).replace(minute=0, second=0, microsecond=0)
    body = client.get("/market/", {"start": f"{start:%Y-%m-%dT%H:%M}",
                                   "end": f"{start + timedelta(hours=4):%Y-%m-%dT%H:%M}"}).content.decode()
    count = body.split('data-testid="result-count"')[1].split("</p>")[0]
    assert f"{start:%Y-%m-%d %H:%M} CST" in count  # typed in their zone, shown in their zone, named
    assert "Times are shown in Asia/Shanghai" in body
    assert body.count('data-testid="input-zone">(Asia/Shanghai)') == 2


@pytest.fixture
def small_offer_for_pages(catalog):
    from tests.factories import ClusterFactory, NodeFactory, OfferFactory

    cluster = ClusterFactory()
    NodeFactory(cluster=cluster)
    return OfferFactory(cluster=cluster)


def test_billing_links_only_for_roles_that_may_read_finances(client):
    from accounts.models import Membership, Organization
    from tests.factories import member

    # a buyer's member books but may not read invoices; its finance viewer may; neither sees Finance
    client.force_login(member(kind=Organization.Kind.BUYER, role=Membership.Role.MEMBER))
    links = header_links(client.get("/").content.decode())
    assert "/market/reservations/" in links and "/market/invoices/" not in links and "/finance/" not in links
    client.force_login(member(kind=Organization.Kind.BUYER, role=Membership.Role.FINANCE_VIEWER))
    links = header_links(client.get("/").content.decode())
    assert "/market/invoices/" in links and "/finance/" not in links
    # a provider's member manages inventory but does not see earnings; its owner does
    client.force_login(member(kind=Organization.Kind.PROVIDER, role=Membership.Role.MEMBER))
    assert "/provider/earnings/" not in header_links(client.get("/").content.decode())
    client.force_login(member(kind=Organization.Kind.PROVIDER, role=Membership.Role.OWNER))
    assert "/provider/earnings/" in header_links(client.get("/").content.decode())
    # platform finance staff get the finance pages
    staff = UserFactory()
    staff.groups.add(staff_group("finance"))
    client.force_login(staff)
    assert "/finance/" in header_links(client.get("/").content.decode())


def test_the_payment_method_link_is_there_for_those_who_can_pay_and_opens(client, demo_network, settings):
    from accounts.models import Membership
    from tests.factories import OrganizationFactory, member

    # Stripe not reachable here: the page must still open (without its card form)
    settings.STRIPE_API_BASE = "http://127.0.0.1:9"
    client.force_login(User.objects.get(email=DEMO_LOGINS["buyer"]))
    links = header_links(client.get("/market/").content.decode())
    assert "/market/billing/payment/" in links and client.get("/market/billing/payment/").status_code == 200
    # a finance viewer reads invoices but does not pay, a member pays nothing: no link, and the page is a 404
    buyer = OrganizationFactory(kind="buyer")
    for role in (Membership.Role.FINANCE_VIEWER, Membership.Role.MEMBER):
        client.force_login(member(organization=buyer, role=role))
        assert "/market/billing/payment/" not in header_links(client.get("/market/").content.decode())
        assert client.get("/market/billing/payment/").status_code == 404
    # providers, finance staff and operators have no such link
    for role in ("provider", "finance", "operator"):
        client.force_login(User.objects.get(email=DEMO_LOGINS[role]))
        assert "/market/billing/payment/" not in header_links(client.get("/").content.decode())
