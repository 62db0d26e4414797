"""`manage.py seed_demo`: a deterministic demo network and the four demo logins."""

from datetime import timedelta
from io import StringIO

import pytest
from django.contrib.auth import authenticate
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db.models import Count, Sum
from django.utils import timezone

from accounts.models import Membership, Organization, User
from accounts.selectors import user_can, user_is_finance_staff, user_is_operator
from inventory.management.demo_network import DEMO_LOGINS, DEMO_PASSWORD
from inventory.models import (
    AcceleratorModel,
    Cluster,
    Device,
    DeviceAllocation,
    MaintenanceWindow,
    Node,
    NodeStatusChange,
    Offer,
    Site,
    SiteLifecycleChange,
)

SMALL = 400  # cards: the smallest network the command accepts, to keep these tests quick

pytestmark = pytest.mark.django_db


def seed(*args: str) -> str:
    out = StringIO()
    call_command("seed_demo", *args, "--no-progress", stdout=out, stderr=StringIO())
    return out.getvalue()


def network_fingerprint() -> dict:
    """Everything that must not change between two runs with the same seed (not ids, not timestamps)."""
    return {
        "organizations": sorted(Organization.objects.values_list("name", "kind", "slug")),
        "users": sorted(User.objects.values_list("email", "full_name", "time_zone", "is_staff", "is_superuser")),
        "memberships": sorted(Membership.objects.values_list("user__email", "organization__name", "role")),
        "groups": sorted(User.groups.through.objects.values_list("user__email", "group__name")),
        "sites": sorted(
            Site.objects.values_list("owner__name", "name", "province__code", "city", "lifecycle", "pue", "power_capacity_mw", "certifications")
        ),
        "clusters": sorted(Cluster.objects.values_list("site__name", "name", "fabric", "fabric_bandwidth_gbps")),
        "nodes": sorted(
            Node.objects.values_list(
                "cluster__site__name", "cluster__name", "hostname", "accelerator_model__name", "card_count", "status",
                "cpu_model", "cpu_cores", "ram_gb", "disk_gb", "mismatch_reason",
            )
        ),
        "devices": sorted(Device.objects.values_list("node__hostname", "index", "serial")),
        "offers": sorted(
            Offer.objects.values_list(
                "cluster__site__name", "cluster__name", "accelerator_model__name", "price_per_card_hour_minor", "currency",
                "min_duration_hours", "max_duration_hours", "is_active",
            )
        ),
        "maintenance": sorted(MaintenanceWindow.objects.values_list("cluster__site__name", "node__hostname", "reason")),
    }


def test_the_same_seed_gives_the_same_network_and_another_seed_a_different_one(catalog):
    # Given a network seeded with seed 42
    seed("--seed", "42", "--cards", str(SMALL))
    first = network_fingerprint()
    # When it is replaced by a network from the same seed
    seed("--seed", "42", "--cards", str(SMALL), "--reset")
    again = network_fingerprint()
    # Then names, counts, models per cluster and prices are identical
    assert first["devices"], "the fingerprint must cover a non-empty network"
    assert again == first
    # And another seed gives another network (names and prices both differ)
    seed("--seed", "7", "--cards", str(SMALL), "--reset")
    other = network_fingerprint()
    assert other["organizations"] != first["organizations"]
    assert other["offers"] != first["offers"]


def test_the_default_network_is_a_national_network_of_many_chips_owners_and_regions(catalog):
    # When the default network is seeded (seed 42, about 2,000 cards)
    output = seed()

    # Then there are ~10 providers with 53 sites, weighted towards the national hubs
    providers = Organization.objects.filter(kind=Organization.Kind.PROVIDER)
    assert providers.count() == 10
    assert Site.objects.count() == 53
    assert Site.objects.filter(owner__in=providers).count() == 53
    in_hub_provinces = Site.objects.filter(province__hub__isnull=False).count()
    assert in_hub_provinces > 53 * 0.6  # the hub provinces are 14 of 33
    lifecycles = dict(Site.objects.values_list("lifecycle").annotate(n=Count("id")))
    assert lifecycles[Site.Lifecycle.ONLINE] >= 40
    assert lifecycles[Site.Lifecycle.PLANNED] >= 1 and lifecycles[Site.Lifecycle.UNDER_CONSTRUCTION] >= 1
    assert 1 <= lifecycles[Site.Lifecycle.RETIRED] <= 2
    # Each site reached its lifecycle through the audited service (planned -> ... -> online)
    online_site = Site.objects.filter(lifecycle=Site.Lifecycle.ONLINE).first()
    assert list(SiteLifecycleChange.objects.filter(site=online_site).values_list("to_lifecycle", flat=True)) == [
        "under_construction", "online",
    ]

    # And about 2,000 cards of at least 15 architectures, one device per card
    cards = Node.objects.aggregate(cards=Sum("card_count"))["cards"]
    assert 1990 <= cards <= 2000
    assert Device.objects.count() == cards
    architectures = Node.objects.values("accelerator_model__architecture").distinct().count()
    assert architectures >= 15
    assert Node.objects.values("accelerator_model__vendor").distinct().count() >= 10
    # Nodes of a model carry that model's cards per server, and only online sites have nodes
    mismatched = [
        node.hostname for node in Node.objects.select_related("accelerator_model")
        if node.card_count != node.accelerator_model.cards_per_server
    ]
    assert mismatched == []
    assert not Node.objects.exclude(cluster__site__lifecycle=Site.Lifecycle.ONLINE).exists()
    fabrics = set(Cluster.objects.values_list("fabric", flat=True))
    assert fabrics == {Cluster.Fabric.INFINIBAND, Cluster.Fabric.ROCE, Cluster.Fabric.ETHERNET}

    # Mostly online with a recent heartbeat; some in maintenance or offline; each move audited
    statuses = dict(Node.objects.values_list("status").annotate(n=Count("id")))
    total_nodes = sum(statuses.values())
    assert statuses[Node.Status.ONLINE] >= total_nodes * 0.8
    assert statuses.get(Node.Status.MAINTENANCE, 0) + statuses.get(Node.Status.OFFLINE, 0) >= 1
    stale = Node.objects.filter(status=Node.Status.ONLINE).exclude(last_heartbeat_at__gte=timezone.now() - timedelta(minutes=5))
    assert not stale.exists()
    not_registered = Node.objects.exclude(status=Node.Status.REGISTERED)
    assert NodeStatusChange.objects.filter(from_status=Node.Status.REGISTERED).count() == not_registered.count()

    # And one offer per (cluster, model) that has nodes, priced in integer minor units, mostly CNY
    pools = set(Node.objects.values_list("cluster_id", "accelerator_model_id").distinct())
    offers = set(Offer.objects.values_list("cluster_id", "accelerator_model_id"))
    assert offers == pools
    currencies = dict(Offer.objects.values_list("currency").annotate(n=Count("id")))
    assert currencies["CNY"] > currencies["USD"] >= 1
    h100 = AcceleratorModel.objects.get(name="H100 SXM5 80GB")
    h100_prices = Offer.objects.filter(accelerator_model=h100, currency="CNY").values_list("price_per_card_hour_minor", flat=True)
    assert all(1500 <= price <= 3000 for price in h100_prices)  # 15-30 CNY per card-hour
    assert Offer.objects.filter(price_per_card_hour_minor__lte=0).count() == 0

    # And a few maintenance windows that black out their node's devices
    window = MaintenanceWindow.objects.first()
    assert window is not None
    assert DeviceAllocation.objects.filter(maintenance_window=window, is_active=True).count() == window.node.card_count
    assert "53 sites" in output and "2,000 cards" in output


def test_the_four_demo_logins_sign_in_with_their_roles(catalog, client):
    # Given the demo network
    seed("--cards", str(SMALL))

    # Then each demo login authenticates with the documented password
    users = {role: authenticate(username=email, password=DEMO_PASSWORD) for role, email in DEMO_LOGINS.items()}
    assert all(users.values()), users
    assert authenticate(username=DEMO_LOGINS["buyer"], password="wrong-password") is None

    # The buyer owns a buyer organization with colleagues and may book
    buyer_membership = Membership.objects.select_related("organization").get(user=users["buyer"])
    assert buyer_membership.role == Membership.Role.OWNER
    assert buyer_membership.organization.kind == Organization.Kind.BUYER
    assert buyer_membership.organization.memberships.count() >= 2
    assert user_can(user=users["buyer"], organization=buyer_membership.organization, action="book")
    assert Organization.objects.filter(kind=Organization.Kind.BUYER).count() in (3, 4)

    # The provider owns a provider organization with several sites, some online
    provider_org = Membership.objects.get(user=users["provider"]).organization
    assert provider_org.kind == Organization.Kind.PROVIDER
    assert provider_org.sites.count() >= 5
    assert provider_org.sites.filter(lifecycle=Site.Lifecycle.ONLINE, clusters__nodes__isnull=False).exists()
    assert user_can(user=users["provider"], organization=provider_org, action="manage_inventory")

    # Finance and operator are platform staff by group; only the operator is a Django admin
    assert user_is_finance_staff(user=users["finance"]) and not user_is_operator(user=users["finance"])
    assert not users["finance"].is_staff
    assert user_is_operator(user=users["operator"])
    assert users["operator"].groups.filter(name="operator").exists()
    assert users["operator"].is_staff and users["operator"].is_superuser
    client.force_login(users["operator"])
    assert client.get("/admin/").status_code == 200

    # And everyone has a real time zone (the buyers' follows where their company works)
    assert set(User.objects.values_list("time_zone", flat=True)) <= {
        "Asia/Shanghai", "Asia/Singapore", "Asia/Hong_Kong", "Europe/Berlin",
    }


def test_if_empty_keeps_an_existing_network(catalog):
    # Given a seeded network
    seed("--seed", "42", "--cards", str(SMALL))
    before = network_fingerprint()
    site_ids = sorted(Site.objects.values_list("id", flat=True))
    # When `make run` seeds again with --if-empty (even with another seed)
    output = seed("--if-empty", "--seed", "7", "--cards", str(SMALL))
    # Then nothing changed, and it says so
    assert "leaving it" in output
    assert sorted(Site.objects.values_list("id", flat=True)) == site_ids
    assert network_fingerprint() == before


def test_if_empty_seeds_an_empty_database(catalog):
    seed("--if-empty", "--cards", str(SMALL))
    assert Site.objects.count() == 53


def test_seeding_a_non_empty_database_is_refused_without_reset(catalog):
    # Given a seeded network
    seed("--cards", str(SMALL))
    before = network_fingerprint()
    # When seeding again without --reset, then it refuses and names the way out
    with pytest.raises(CommandError, match="--reset"):
        seed("--seed", "7", "--cards", str(SMALL))
    assert network_fingerprint() == before


def test_a_site_that_is_not_demo_data_also_blocks_seeding(catalog):
    # Given a database where someone listed a site by hand (no demo accounts)
    from tests.factories import SiteFactory

    SiteFactory()
    # Then seeding refuses; --if-empty leaves it alone
    with pytest.raises(CommandError, match="already has 1 site"):
        seed("--cards", str(SMALL))
    seed("--if-empty", "--cards", str(SMALL))
    assert Site.objects.count() == 1


def test_reset_replaces_the_network_and_the_demo_accounts(catalog):
    # Given a network from seed 42 and a user who signed up on their own
    seed("--seed", "42", "--cards", str(SMALL))
    outsider = User.objects.create_user(email="someone@example.test", password="x" * 12)
    # When it is reset with seed 7
    seed("--seed", "7", "--cards", str(SMALL), "--reset")
    fresh = network_fingerprint()
    # Then only seed 7's accounts and network are there, and the outsider is kept
    seed("--seed", "7", "--cards", str(SMALL), "--reset")
    assert network_fingerprint() == fresh
    assert User.objects.filter(pk=outsider.pk).exists()
    assert Site.objects.count() == 53
    # (10 providers + 4 buyers: none of seed 42's organizations is left over)
    assert Organization.objects.filter(kind=Organization.Kind.PROVIDER).count() == 10
    assert Organization.objects.count() == 14


@pytest.mark.parametrize("cards", [SMALL, 1000])
def test_the_card_count_follows_cards(catalog, cards):
    seed("--cards", str(cards))
    total = Node.objects.aggregate(cards=Sum("card_count"))["cards"]
    assert cards - 8 < total <= cards
    assert Device.objects.count() == total
    assert Node.objects.values("accelerator_model__architecture").distinct().count() >= 15


def test_too_few_cards_are_refused(catalog):
    with pytest.raises(CommandError, match="at least"):
        seed("--cards", "100")
    assert not Site.objects.exists()
