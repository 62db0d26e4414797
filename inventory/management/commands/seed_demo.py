"""`manage.py seed_demo`: a deterministic demo network - providers, sites, clusters, nodes, cards,
offers, buyers and the four demo logins.

    manage.py seed_demo                       # seed 42, about 2,000 cards, into an empty database
    manage.py seed_demo --seed 7 --cards 100000
    manage.py seed_demo --if-empty            # what `make run` and the compose `migrate` service call
    manage.py seed_demo --reset               # replace the network and the demo accounts

The network is planned in memory from the seed (inventory/management/demo_network.py), then written
in one transaction, so a failure leaves nothing behind.

How it writes, and why not everything goes through inventory.services:
- accounts: organizations and memberships through accounts.services (organization_create,
  membership_set, ssh_key_add for the demo buyer's key); users are bulk-inserted with one password hash computed once, because hashing
  'computeflow-demo' per user (PBKDF2) would cost ~0.3 s each.
- sites: created `planned` and moved along their lifecycle by inventory.services.site_set_lifecycle,
  so every site has its audit trail (53 sites: cheap).
- nodes and devices: bulk-inserted in batches (nodes by bulk_create, devices by one set-based
  INSERT ... SELECT generate_series per batch). node_set_status would cost several queries per node
  (12,500 nodes at 100,000 cards); instead each node is inserted with its final status and one
  NodeStatusChange row (registered -> status) is written per node in the same set-based way, so the
  audit trail looks exactly as if the service had been called.
- maintenance windows: their device blackouts through inventory.allocations.device_allocations_create.
"""

import random
import sys
import time
from datetime import timedelta

from django.contrib.auth.hashers import make_password
from django.contrib.auth.models import Group
from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError
from django.db import connection, transaction
from django.db.models import ProtectedError
from django.utils import timezone
from tqdm import tqdm

from accounts.models import Membership, Organization, User
from accounts.services import membership_set, organization_create, ssh_key_add
from inventory.allocations import device_allocations_create, period_range
from inventory.catalog import load_catalog, load_regions
from inventory.management.demo_network import (
    DEMO_BUYER_SSH_PUBLIC_KEY,
    DEMO_DOMAIN,
    DEMO_LOGINS,
    DEMO_PASSWORD,
    DRIVERS,
    NetworkPlan,
    minimum_cards,
    node_draws,
    plan_network,
)
from inventory.models import (
    AcceleratorModel,
    Cluster,
    Device,
    DeviceAllocation,
    MaintenanceWindow,
    NationalHub,
    Node,
    NodeAgentToken,
    NodeStatusChange,
    Offer,
    Province,
    Site,
    SiteLifecycleChange,
)
from inventory.services import network_totals_refresh, site_set_lifecycle

NODE_BATCH = 2000  # nodes per INSERT (16,000 devices at 8 cards per node)
SEED_REASON = "demo network (seed_demo)"
LIFECYCLE_PATH = ["planned", "under_construction", "online", "retired"]
# The network tables that --reset empties (TRUNCATE ... CASCADE: rows of other apps that point at
# them, e.g. reservations, go too - --reset is for demo and development databases).
NETWORK_MODELS = [
    DeviceAllocation, MaintenanceWindow, NodeStatusChange, SiteLifecycleChange, NodeAgentToken,
    Offer, Device, Node, Cluster, Site,
]


class Command(BaseCommand):
    help = "Seed a deterministic demo network (providers, sites, clusters, nodes, cards, offers, buyers, demo logins)."

    def add_arguments(self, parser):
        parser.add_argument("--seed", type=int, default=42, help="random seed: the same seed gives the same network (default 42)")
        parser.add_argument("--cards", type=int, default=2000, help="about how many cards to seed (default 2,000; 100,000 for benchmarks)")
        mode = parser.add_mutually_exclusive_group()
        mode.add_argument("--if-empty", action="store_true", help="do nothing if the database already has sites (for `make run`)")
        mode.add_argument("--reset", action="store_true", help="delete the network (all sites, nodes, offers and what points at them) and the demo accounts first")
        parser.add_argument("--no-progress", action="store_true", help="no progress bar")

    def handle(self, *args, seed: int, cards: int, if_empty: bool, reset: bool, no_progress: bool, verbosity: int, **options):
        min_cards = minimum_cards()
        if cards < min_cards:
            raise CommandError(f"--cards must be at least {min_cards} (one 8-card server in each online site).")
        _ensure_catalog()
        sites = Site.objects.count()
        demo_users = User.objects.filter(email__iendswith=DEMO_DOMAIN).count()
        if sites or demo_users:
            found = f"{sites} site(s) and {demo_users} demo user(s)"
            if if_empty:
                if verbosity:
                    self.stdout.write(f"The database already has {found}; leaving it as it is (--if-empty).")
                return
            if not reset:
                raise CommandError(
                    f"The database already has {found}. Seeding would mix two networks. "
                    "Run with --reset to delete the network and the demo accounts and seed again, "
                    "or with --if-empty to keep what is there."
                )

        started = time.monotonic()
        provinces = [
            {"code": p.code, "hub_role": p.hub.role if p.hub else "", "hub_cluster": p.hub_cluster}
            for p in Province.objects.select_related("hub").order_by("code")
        ]
        cards_per_server = dict(AcceleratorModel.objects.values_list("name", "cards_per_server"))
        plan = plan_network(seed=seed, cards=cards, provinces=provinces, cards_per_server=cards_per_server)
        progress = tqdm(
            total=plan.cards, unit="card", unit_scale=True, desc="seed_demo", file=sys.stderr,
            disable=no_progress or verbosity == 0, mininterval=0.2,
        )
        with progress, transaction.atomic():
            if reset:
                progress.set_description("reset")
                _reset()
            writer = _NetworkWriter(plan=plan, progress=progress)
            writer.write()
        try:
            network_totals_refresh()  # the landing page's cached totals would otherwise show the old network
        except Exception as error:  # noqa: BLE001 - the data is committed; a cold cache only costs one recomputation
            self.stderr.write(f"Could not refresh the cached network totals ({error}); they refresh within a minute.")
        elapsed = time.monotonic() - started
        if verbosity:
            self.stdout.write(self.style.SUCCESS(writer.summary(elapsed=elapsed)))


def _ensure_catalog() -> None:
    """Transactional tests flush the tables the data migration filled; the plan needs them."""
    if not AcceleratorModel.objects.exists():
        load_catalog(accelerator_model_cls=AcceleratorModel)
    if not Province.objects.exists():
        load_regions(national_hub_cls=NationalHub, province_cls=Province)


def _reset() -> None:
    tables = ", ".join(connection.ops.quote_name(model._meta.db_table) for model in NETWORK_MODELS)
    with connection.cursor() as cursor:
        # PostgreSQL refuses to TRUNCATE a table with pending deferred foreign-key checks (rows written
        # earlier in the same transaction, e.g. in a test): run those checks now, then truncate.
        cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
        cursor.execute(f"TRUNCATE {tables} RESTART IDENTITY CASCADE")  # noqa: S608 - table names from the models
        cursor.execute("SET CONSTRAINTS ALL DEFERRED")
    demo_users = User.objects.filter(email__iendswith=DEMO_DOMAIN)
    try:
        # Organizations a demo user owns; a real organization that merely invited one is kept.
        Organization.objects.filter(memberships__user__in=demo_users, memberships__role=Membership.Role.OWNER).distinct().delete()
        demo_users.delete()
    except ProtectedError as error:
        raise CommandError(f"Cannot delete the demo accounts: other records still point at them ({error.protected_objects}).") from error


class _NetworkWriter:
    def __init__(self, *, plan: NetworkPlan, progress: tqdm):
        self.plan = plan
        self.progress = progress
        self.now = timezone.now()
        self.models = {m.name: m for m in AcceleratorModel.objects.all()}
        self.provinces = {p.code: p for p in Province.objects.all()}
        self.counts: dict[str, int] = {}

    def write(self) -> None:
        self.progress.set_description("accounts")
        users, providers = self._write_accounts()
        self.progress.set_description("sites")
        sites = self._write_sites(users=users, providers=providers)
        clusters = Cluster.objects.bulk_create(
            [
                Cluster(site=sites[c.site_index], name=c.name, fabric=c.fabric, fabric_bandwidth_gbps=c.fabric_bandwidth_gbps)
                for c in self.plan.clusters
            ]
        )
        self.progress.set_description("nodes")
        first_nodes = self._write_nodes(clusters=clusters)
        self.progress.set_description("offers")
        Offer.objects.bulk_create(
            [
                Offer(
                    cluster=clusters[pool.cluster_index],
                    accelerator_model=self.models[pool.model_name],
                    price_per_card_hour_minor=pool.price_minor,
                    currency=pool.currency,
                    min_duration_hours=pool.min_duration_hours,
                    max_duration_hours=pool.max_duration_hours,
                )
                for pool in self.plan.pools
            ]
        )
        self._write_maintenance(first_nodes=first_nodes, users=users, sites=sites, clusters=clusters)
        self.progress.set_description("done")
        self.counts.update(sites=len(sites), clusters=len(clusters), offers=len(self.plan.pools))

    # -- accounts ------------------------------------------------------------------------------
    def _write_accounts(self) -> tuple[dict[str, User], list[Organization]]:
        password = make_password(DEMO_PASSWORD)  # one hash for every demo user: see the module docstring
        people = [person for org in (*self.plan.providers, *self.plan.buyers) for person in org.people] + self.plan.staff
        users = User.objects.bulk_create(
            [
                User(
                    email=p.email, full_name=p.full_name, time_zone=p.time_zone, password=password,
                    is_staff=p.is_staff, is_superuser=p.is_superuser,
                )
                for p in people
            ]
        )
        by_email = {user.email: user for user in users}
        for person in people:
            for name in person.groups:
                by_email[person.email].groups.add(Group.objects.get_or_create(name=name)[0])
        organizations = []
        for org in (*self.plan.providers, *self.plan.buyers):
            try:
                organization = organization_create(name=org.name, kind=org.kind, owner=by_email[org.people[0].email], is_demo=True)
            except ValidationError as error:
                raise CommandError(f"Cannot create the demo organization {org.name!r}: {error}") from error
            for person in org.people[1:]:
                membership_set(organization=organization, user=by_email[person.email], role=person.role)
            organizations.append(organization)
        buyer = by_email.get(DEMO_LOGINS["buyer"])
        if buyer is not None:
            ssh_key_add(user=buyer, name="Demo laptop", public_key=DEMO_BUYER_SSH_PUBLIC_KEY)
        self.counts.update(users=len(users), providers=len(self.plan.providers), buyers=len(self.plan.buyers))
        return by_email, organizations[: len(self.plan.providers)]

    # -- sites ---------------------------------------------------------------------------------
    def _write_sites(self, *, users: dict[str, User], providers: list[Organization]) -> list[Site]:
        sites = []
        for plan in self.plan.sites:
            owner = self.plan.providers[plan.provider_index].people[0]
            site = Site.objects.create(
                owner=providers[plan.provider_index], name=plan.name, country="CN",
                province=self.provinces[plan.province_code], city=plan.city, lifecycle=Site.Lifecycle.PLANNED,
                power_capacity_mw=plan.power_capacity_mw, pue=plan.pue, certifications=plan.certifications,
            )
            for lifecycle in LIFECYCLE_PATH[1 : LIFECYCLE_PATH.index(plan.lifecycle) + 1]:
                site = site_set_lifecycle(site=site, lifecycle=lifecycle, actor=users[owner.email], reason=SEED_REASON)
            sites.append(site)
        return sites

    # -- nodes and devices ---------------------------------------------------------------------
    def _write_nodes(self, *, clusters: list[Cluster]) -> dict[int, int]:
        """Bulk-inserts every pool's nodes and their devices; returns the first node id of each pool."""
        plan = self.plan
        hostnames_in_cluster = [0] * len(clusters)
        total_nodes = sum(pool.nodes for pool in plan.pools)
        # One node whose agent contradicts its listing, so the flagged-node screens have something to show.
        flagged = random.Random(f"{plan.seed}/flagged").randrange(total_nodes) if total_nodes >= 20 else -1
        batch: list[Node] = []
        first_nodes: dict[int, Node] = {}
        node_number = 0
        nodes_written = 0
        for pool_index, pool in enumerate(plan.pools):
            model = self.models[pool.model_name]
            cluster = clusters[pool.cluster_index]
            site_code = plan.sites[plan.clusters[pool.cluster_index].site_index].code
            driver, versions = DRIVERS.get(model.stack, ("", {}))
            draws = node_draws(random.Random(f"{plan.seed}/{pool_index}"), stack=model.stack, memory_gb=model.memory_gb, count=pool.nodes)
            for draw in draws:
                hostnames_in_cluster[pool.cluster_index] += 1
                node = Node(
                    cluster=cluster,
                    hostname=f"{site_code}-{cluster.name}-{hostnames_in_cluster[pool.cluster_index]:04d}",
                    accelerator_model=model,
                    card_count=pool.cards_per_server,
                    cpu_model=draw.cpu_model, cpu_cores=draw.cpu_cores, ram_gb=draw.ram_gb, disk_gb=draw.disk_gb,
                    status=draw.status,
                    last_heartbeat_at=self.now - draw.heartbeat_age if draw.heartbeat_age is not None else None,
                    reported_model_name=model.name if draw.status != "registered" else "",
                    reported_card_count=pool.cards_per_server if draw.status != "registered" else None,
                    reported_memory_gb=model.memory_gb if draw.status != "registered" else None,
                    driver_version=driver if draw.status != "registered" else "",
                    software_versions=dict(versions) if draw.status != "registered" else {},
                )
                if node_number == flagged:
                    node.status = Node.Status.UNHEALTHY
                    node.reported_card_count = pool.cards_per_server - 1
                    node.mismatch_reason = (
                        f"The agent reports {pool.cards_per_server - 1} cards; the listing says {pool.cards_per_server}."
                    )
                node_number += 1
                first_nodes.setdefault(pool_index, node)
                batch.append(node)
                if len(batch) >= NODE_BATCH:
                    nodes_written += self._flush(batch)
                    batch = []
        nodes_written += self._flush(batch)
        self.counts.update(nodes=nodes_written)
        return {pool_index: node.pk for pool_index, node in first_nodes.items()}  # bulk_create set the pks

    def _flush(self, batch: list[Node]) -> int:
        if not batch:
            return 0
        nodes = Node.objects.bulk_create(batch)
        ids = [node.pk for node in nodes]
        node_table = connection.ops.quote_name(Node._meta.db_table)
        device_table = connection.ops.quote_name(Device._meta.db_table)
        audit_table = connection.ops.quote_name(NodeStatusChange._meta.db_table)
        with connection.cursor() as cursor:
            # One device per card; serials are derived from the seed and hostname, so they are stable too.
            cursor.execute(
                f"""
                INSERT INTO {device_table} (node_id, "index", serial)
                SELECT n.id, g.i, 'SN' || upper(substr(md5(%s || ':' || n.hostname || ':' || g.i::text), 1, 14))
                FROM {node_table} n CROSS JOIN LATERAL generate_series(0, n.card_count - 1) AS g(i)
                WHERE n.id = ANY(%s)
                """,  # noqa: S608 - table names from the models, values as parameters
                [str(self.plan.seed), ids],
            )
            # The audit row node_set_status would have written for the move out of `registered`.
            cursor.execute(
                f"""
                INSERT INTO {audit_table} (node_id, from_status, to_status, actor_id, reason, created_at)
                SELECT n.id, %s, n.status, NULL, %s, %s FROM {node_table} n
                WHERE n.id = ANY(%s) AND n.status <> %s
                """,  # noqa: S608 - table names from the models, values as parameters
                [Node.Status.REGISTERED, SEED_REASON, self.now, ids, Node.Status.REGISTERED],
            )
        self.progress.update(sum(node.card_count for node in nodes))
        return len(nodes)

    # -- maintenance windows -------------------------------------------------------------------
    def _write_maintenance(self, *, first_nodes: dict[int, int], users: dict[str, User], sites: list[Site], clusters: list[Cluster]) -> None:
        """A few planned firmware upgrades next weekend (Sunday 02:00-06:00 Beijing time)."""
        rng = random.Random(f"{self.plan.seed}/maintenance")
        days_to_saturday = (5 - self.now.weekday()) % 7 or 7
        start = (self.now + timedelta(days=days_to_saturday)).replace(hour=18, minute=0, second=0, microsecond=0)
        end = start + timedelta(hours=4)
        candidates = list(first_nodes.items())
        windows = 0
        for pool_index, node_id in rng.sample(candidates, min(3, len(candidates))):
            pool = self.plan.pools[pool_index]
            cluster = clusters[pool.cluster_index]
            owner = self.plan.providers[self.plan.sites[self.plan.clusters[pool.cluster_index].site_index].provider_index].people[0]
            window = MaintenanceWindow.objects.create(
                cluster=cluster, node_id=node_id, period=period_range(start, end),
                reason="Firmware and driver upgrade", created_by=users[owner.email],
            )
            device_ids = list(Device.objects.filter(node_id=node_id).values_list("id", flat=True))
            device_allocations_create(device_ids=device_ids, start=start, end=end, maintenance_window=window)
            windows += 1
        self.counts.update(maintenance_windows=windows)

    def summary(self, *, elapsed: float) -> str:
        plan = self.plan
        architectures = len({self.models[p.model_name].architecture for p in plan.pools})
        lifecycles = {}
        for site in plan.sites:
            lifecycles[site.lifecycle] = lifecycles.get(site.lifecycle, 0) + 1
        usd = sum(1 for p in plan.pools if p.currency == "USD")
        return (
            f"Seeded the demo network (seed {plan.seed}) in {elapsed:.1f}s: "
            f"{self.counts['providers']} providers, {self.counts['sites']} sites "
            f"({', '.join(f'{n} {state}' for state, n in sorted(lifecycles.items()))}), "
            f"{self.counts['clusters']} clusters, {self.counts['nodes']:,} nodes, {plan.cards:,} cards of "
            f"{len({p.model_name for p in plan.pools})} models ({architectures} architectures), "
            f"{self.counts['offers']} offers ({usd} in USD), {self.counts['maintenance_windows']} maintenance windows, "
            f"{self.counts['buyers']} buyer organizations, {self.counts['users']} users. "
            f"Demo logins: buyer@, provider@, finance@, operator@{DEMO_DOMAIN} (password '{DEMO_PASSWORD}')."
        )
