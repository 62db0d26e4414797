"""Writes of inventory. Every change users see goes through a function here."""

import re
from datetime import datetime, timedelta
from decimal import Decimal

from django.conf import settings
from django.contrib.postgres.fields import ArrayField
from django.core.cache import cache
from django.core.exceptions import ValidationError
from django.db import IntegrityError, models, transaction
from django.db.backends.postgresql.psycopg_any import DateTimeTZRange
from django.db.models import Q
from django.utils import timezone
from django.utils.translation import get_language, gettext_lazy, ngettext, override
from django.utils.translation import gettext as _

from accounts.models import Organization, User
from inventory.allocations import (
    AllocationConflict,
    BookingsAhead,
    bookings_ahead,
    device_allocations_create,
    device_allocations_release,
)
from inventory.models import (
    AcceleratorModel,
    Cluster,
    Currency,
    Device,
    DeviceAllocation,
    MaintenanceWindow,
    Node,
    NodeStatusChange,
    Offer,
    Province,
    Site,
    SiteLifecycleChange,
)
from inventory.pricing import (  # noqa: F401 - the money rule, re-exported for callers of services
    MAX_DURATION_HOURS,
    MAX_PRICE_PER_CARD_HOUR_MAJOR,
    price_major_to_minor,
    price_minor_to_major,
    price_per_ecu_hour_minor,
)
from inventory.reliability import node_reliability_record  # noqa: F401 - the reliability record, for callers of services
from inventory.selectors import NETWORK_TOTALS_CACHE_KEY, NETWORK_TOTALS_CACHE_SECONDS, network_totals
from inventory.signals import CAPACITY_LOST_STATUSES, capacity_lost_send_on_commit
from inventory.templatetags.localnames import local_name

# Nothing goes on the device calendar (bookings, maintenance windows, rentable periods) more than
# this far ahead: such a date is a typo, and one near year 9999 cannot even be shown in every time
# zone (or have a duration added to it) without overflowing.
CALENDAR_HORIZON = timedelta(days=3653)
CALENDAR_HORIZON_MESSAGE = gettext_lazy("Too far ahead: the calendar reaches at most 10 years from now.")


def beyond_calendar_horizon(moment: datetime | None, *, now: datetime | None = None) -> bool:
    return moment is not None and moment > (now or timezone.now()) + CALENDAR_HORIZON


class InventoryConflict(Exception):
    """A write refused because of the current state of the calendar (the API answers 409, with the
    message under `field`; the pages show it next to that field or action)."""

    def __init__(self, message: str, field: str = "start", code: str = "conflict"):
        super().__init__(message)
        self.message = message
        self.field = field
        self.code = code


# ---------------------------------------------------------------------------------------------
# Capacity under bookings
# ---------------------------------------------------------------------------------------------
#
# A buyer's confirmed reservation holds specific cards. Taking those cards off the market before
# it ends (retiring the offer, node, cluster or site, or planning maintenance over them) would make
# it fail at its start - or mid-way - through no fault of the buyer. Such writes are refused,
# saying how many reservations are in the way and when the last one ends. The provider can stop
# *new* bookings at once by ending the offer's rentable period: that governs new bookings and
# extensions only, never a booking already made, so it is always allowed.

CAPACITY_BOOKED_CODE = "capacity_booked"


def _when(moment: datetime) -> str:
    """A moment in the viewer's time zone (the one the request activated), with the zone's name."""
    return timezone.localtime(moment).strftime("%Y-%m-%d %H:%M %Z")


def _lock_offers(*, cluster_ids: list[int], accelerator_model_id: int | None = None) -> None:
    """Lock the active offers a booking of these cards would go through (bookings and extensions
    take the offer's row lock first), so none can slip in between the check below and the write."""
    offers = Offer.objects.select_for_update().filter(cluster_id__in=cluster_ids, is_active=True)
    if accelerator_model_id is not None:
        offers = offers.filter(accelerator_model_id=accelerator_model_id)
    list(offers.values_list("pk", flat=True))


def _refuse_retire_under_bookings(
    *, what: str, field: str, cluster_ids: list[int], accelerator_model_id: int | None = None, node_id: int | None = None,
    stop_new: str = gettext_lazy("ending the rentable period of its offers"),
) -> None:
    """`what` and `stop_new` are translated phrases (gettext_lazy) that finish the refusal's sentence."""
    _lock_offers(cluster_ids=cluster_ids, accelerator_model_id=accelerator_model_id)
    ahead: BookingsAhead = bookings_ahead(cluster_ids=cluster_ids, accelerator_model_id=accelerator_model_id, node_id=node_id)
    if ahead:
        raise InventoryConflict(
            ngettext(
                "%(count)d confirmed reservation uses %(what)s until %(end)s; retire after it ends, "
                "or stop new bookings first by %(stop_new)s (bookings already made keep their cards).",
                "%(count)d confirmed reservations use %(what)s until %(end)s; retire after they end, "
                "or stop new bookings first by %(stop_new)s (bookings already made keep their cards).",
                ahead.reservations,
            ) % {"count": ahead.reservations, "what": what, "end": _when(ahead.last_end), "stop_new": stop_new},
            field=field, code=CAPACITY_BOOKED_CODE,
        )


# Allowed next states. Anything else is refused by the *_set_* services below.
NODE_TRANSITIONS: dict[str, set[str]] = {
    Node.Status.REGISTERED: {Node.Status.ONLINE, Node.Status.MAINTENANCE, Node.Status.OFFLINE, Node.Status.RETIRED},
    Node.Status.ONLINE: {Node.Status.MAINTENANCE, Node.Status.UNHEALTHY, Node.Status.OFFLINE, Node.Status.RETIRED},
    Node.Status.MAINTENANCE: {Node.Status.ONLINE, Node.Status.OFFLINE, Node.Status.RETIRED},
    Node.Status.UNHEALTHY: {Node.Status.ONLINE, Node.Status.MAINTENANCE, Node.Status.OFFLINE, Node.Status.RETIRED},
    Node.Status.OFFLINE: {Node.Status.ONLINE, Node.Status.MAINTENANCE, Node.Status.UNHEALTHY, Node.Status.RETIRED},
    Node.Status.RETIRED: set(),
}

SITE_TRANSITIONS: dict[str, set[str]] = {
    Site.Lifecycle.PLANNED: {Site.Lifecycle.UNDER_CONSTRUCTION, Site.Lifecycle.RETIRED},
    Site.Lifecycle.UNDER_CONSTRUCTION: {Site.Lifecycle.ONLINE, Site.Lifecycle.RETIRED},
    Site.Lifecycle.ONLINE: {Site.Lifecycle.RETIRED},
    Site.Lifecycle.RETIRED: set(),
}


def _refuse_online_without_agent(node: Node) -> None:
    """Only a node whose agent has reported its hardware and is heartbeating may be on the market:
    the listing is checked against the agent's report, so nobody can rent what no agent has seen."""
    cutoff = timezone.now() - timedelta(seconds=settings.NODE_HEARTBEAT_TIMEOUT_SECONDS)
    if not node.reported_model_name or node.last_heartbeat_at is None or node.last_heartbeat_at < cutoff:
        raise ValidationError(
            {"status": _("A node goes online when its node agent reports: create an agent key on the node's page and "
                         "start the agent on the server (python -m nodeagent ...).")}
        )


@transaction.atomic
def node_set_status(*, node: Node, status: str, actor: User | None = None, reason: str = "", cause: str = "") -> Node:
    """Move a node to `status`: locks the row, checks the move, writes an audit row.

    `cause` (a ReliabilityEvent.Cause, optional) says why a node failed; failover reads it from the
    audit row. Setting the status a node already has is a no-op (so retried tasks are harmless).
    """
    node = Node.objects.select_for_update().get(pk=node.pk)
    if node.status == status:
        return node
    if status not in NODE_TRANSITIONS.get(node.status, set()):
        # The states as the API names them (the values a client sends), in every language.
        raise ValidationError({"status": _("A node cannot go from %(from)s to %(to)s.") % {"from": node.status, "to": status}})
    if status == Node.Status.ONLINE:
        _refuse_online_without_agent(node)
    if status == Node.Status.RETIRED:
        _refuse_retire_under_bookings(
            what=gettext_lazy("this node's cards"), field="status", cluster_ids=[node.cluster_id],
            accelerator_model_id=node.accelerator_model_id, node_id=node.pk,
            stop_new=gettext_lazy("ending the rentable period of its cluster's offer"),
        )
    NodeStatusChange.objects.create(
        node=node, from_status=node.status, to_status=status, actor=actor, reason=reason[:300], cause=cause
    )
    node.status = status
    node.save(update_fields=["status", "updated_at"])
    if status in CAPACITY_LOST_STATUSES:
        capacity_lost_send_on_commit(node_ids=[node.pk])
    return node


MARKED_FAILED_PREFIX = "marked failed by an operator"


def node_mark_failed(*, node: Node, actor: User, reason: str, cause: str = "host_fault") -> Node:
    """An operator declares a node failed (a real incident, or a demo): it turns unhealthy, audited,
    and the market's failover moves its work as for a node that went silent (capacity_lost).

    `reason` is required (it is the audit row and the operators' record); `cause` a ReliabilityEvent.Cause.
    A heartbeat does not bring such a node back: only a person does (node_set_status to online).
    """
    from inventory.models import ReliabilityEvent

    note = " ".join((reason or "").split())
    if not note:
        raise ValidationError({"reason": [_("Say why the node failed: it is kept in the node's audit trail.")]})
    if cause not in ReliabilityEvent.Cause.values:
        raise ValidationError({"cause": [_("Pick one of %(causes)s.") % {"causes": ", ".join(ReliabilityEvent.Cause.values)}]})
    if node.status not in (Node.Status.ONLINE, Node.Status.OFFLINE):
        raise ValidationError({"node": [
            _("Only an online (or offline) node can be marked failed; this one is %(status)s.") % {"status": node.get_status_display()}
        ]})
    return node_set_status(
        node=node, status=Node.Status.UNHEALTHY, actor=actor, reason=f"{MARKED_FAILED_PREFIX}: {note}"[:300], cause=cause
    )


@transaction.atomic
def site_set_lifecycle(*, site: Site, lifecycle: str, actor: User | None = None, reason: str = "") -> Site:
    """Move a site along its lifecycle: locks the row, checks the move, writes an audit row."""
    site = Site.objects.select_for_update().get(pk=site.pk)
    if site.lifecycle == lifecycle:
        return site
    if lifecycle not in SITE_TRANSITIONS.get(site.lifecycle, set()):
        # The lifecycles as the API names them (the values a client sends), in every language.
        raise ValidationError({"lifecycle": _("A site cannot go from %(from)s to %(to)s.") % {"from": site.lifecycle, "to": lifecycle}})
    if lifecycle == Site.Lifecycle.RETIRED:
        _refuse_retire_under_bookings(
            what=gettext_lazy("this site's cards"), field="lifecycle", cluster_ids=list(site.clusters.values_list("pk", flat=True))
        )
    SiteLifecycleChange.objects.create(
        site=site, from_lifecycle=site.lifecycle, to_lifecycle=lifecycle, actor=actor, reason=reason[:300]
    )
    site.lifecycle = lifecycle
    site.save(update_fields=["lifecycle", "updated_at"])
    return site


def network_totals_refresh() -> dict:
    """Recompute the landing page's totals and keep them in the cache (run by Celery beat)."""
    totals = network_totals()
    cache.set(NETWORK_TOTALS_CACHE_KEY, totals, NETWORK_TOTALS_CACHE_SECONDS)
    return totals


# ---------------------------------------------------------------------------------------------
# Sites
# ---------------------------------------------------------------------------------------------

SITE_EDITABLE_FIELDS = ("name", "country", "province", "city", "power_capacity_mw", "pue", "certifications")
# A new site starts in any lifecycle but retired (an existing data center is listed "online").
SITE_INITIAL_LIFECYCLES = (Site.Lifecycle.PLANNED, Site.Lifecycle.UNDER_CONSTRUCTION, Site.Lifecycle.ONLINE)


def _require_provider(organization: Organization) -> None:
    if not organization.is_provider:
        raise ValidationError({"owner": _("Only a provider organization can list inventory.")})


def _clean_certifications(certifications) -> list[str]:
    if certifications is None:
        return []
    if isinstance(certifications, str):
        certifications = certifications.split(",")
    cleaned = []
    for item in certifications:
        item = str(item).strip()
        if not item:
            continue
        if len(item) > 64:
            raise ValidationError({"certifications": _("'%(start)s…' is longer than 64 characters.") % {"start": item[:20]}})
        if item not in cleaned:
            cleaned.append(item)
    if len(cleaned) > 30:
        raise ValidationError({"certifications": _("List at most 30 certifications.")})
    return cleaned


def _refuse_control_characters(obj) -> None:
    """Names, cities, hostnames and reasons end up on pages, in CSV exports and in logs: printable text only."""
    errors = {}
    for field in obj._meta.concrete_fields:
        value = getattr(obj, field.attname, None)
        values = value if isinstance(value, list) else [value]
        if isinstance(field, (models.CharField, ArrayField)) and any(
            isinstance(item, str) and not item.isprintable() for item in values
        ):
            errors[field.name] = [_("Use printable characters only (no control characters or line breaks).")]
    if errors:
        raise ValidationError(errors)


def _full_clean(obj, *, exclude: list[str] | None = None) -> None:
    """Model validation (field validators, choices, unique constraints) as a ValidationError by field."""
    _refuse_control_characters(obj)
    obj.full_clean(exclude=exclude, validate_constraints=True)


@transaction.atomic
def site_create(
    *,
    owner: Organization,
    name: str,
    country: str = "CN",
    province: Province | None = None,
    city: str = "",
    lifecycle: str = Site.Lifecycle.PLANNED,
    power_capacity_mw: Decimal | None = None,
    pue: Decimal | None = None,
    certifications: list[str] | None = None,
    actor: User | None = None,
) -> Site:
    _require_provider(owner)
    if lifecycle not in SITE_INITIAL_LIFECYCLES:
        raise ValidationError({"lifecycle": _("A new site is planned, under construction or online.")})
    site = Site(
        owner=owner,
        name=(name or "").strip(),
        country=(country or "CN").upper(),
        province=province,
        city=(city or "").strip(),
        lifecycle=lifecycle,
        power_capacity_mw=power_capacity_mw,
        pue=pue,
        certifications=_clean_certifications(certifications),
    )
    _validate_site(site)
    site.save()
    return site


def _validate_site(site: Site) -> None:
    if Site.objects.filter(owner=site.owner, name=site.name).exclude(pk=site.pk).exists():
        raise ValidationError({"name": _("You already have a site with this name.")})
    if site.province is not None and site.province.country != site.country:
        raise ValidationError({"province": _("%(province)s is not in %(country)s.") % {
            "province": local_name(site.province), "country": site.country,
        }})
    if site.power_capacity_mw is not None and site.power_capacity_mw > Decimal("10000"):
        raise ValidationError({"power_capacity_mw": _("A site above 10,000 MW is not plausible.")})
    _full_clean(site)


@transaction.atomic
def site_update(*, site: Site, actor: User | None = None, lifecycle: str | None = None, **changes) -> Site:
    """Change a site's description; a lifecycle change goes through site_set_lifecycle (audited)."""
    unknown = set(changes) - set(SITE_EDITABLE_FIELDS)
    if unknown:
        raise ValidationError({name: _("This field cannot be changed.") for name in unknown})
    site = Site.objects.select_for_update().get(pk=site.pk)
    if site.lifecycle == Site.Lifecycle.RETIRED:
        raise ValidationError({"lifecycle": _("A retired site cannot be changed.")})
    if "certifications" in changes:
        changes["certifications"] = _clean_certifications(changes["certifications"])
    if "name" in changes:
        changes["name"] = (changes["name"] or "").strip()
    if "country" in changes:
        changes["country"] = (changes["country"] or "CN").upper()
    for field, value in changes.items():
        setattr(site, field, value)
    _validate_site(site)
    site.save()
    if lifecycle is not None and lifecycle != site.lifecycle:
        site = site_set_lifecycle(site=site, lifecycle=lifecycle, actor=actor, reason="changed by the provider")
    return site


def site_retire(*, site: Site, actor: User | None = None, reason: str = "retired by the provider") -> Site:
    """Retire a site (never a delete): its capacity leaves the market; history stays."""
    return site_set_lifecycle(site=site, lifecycle=Site.Lifecycle.RETIRED, actor=actor, reason=reason)


# ---------------------------------------------------------------------------------------------
# Clusters
# ---------------------------------------------------------------------------------------------


def _require_site_open(site: Site, field: str = "site") -> None:
    if site.lifecycle == Site.Lifecycle.RETIRED:
        raise ValidationError({field: _("This site is retired; nothing can be added to it.")})


def _validate_cluster(cluster: Cluster) -> None:
    if Cluster.objects.filter(site=cluster.site, name=cluster.name).exclude(pk=cluster.pk).exists():
        raise ValidationError({"name": _("This site already has a cluster with this name.")})
    _full_clean(cluster)


@transaction.atomic
def cluster_create(*, site: Site, name: str, fabric: str, fabric_bandwidth_gbps: int, actor: User | None = None) -> Cluster:
    _require_site_open(site)
    cluster = Cluster(site=site, name=(name or "").strip(), fabric=fabric, fabric_bandwidth_gbps=fabric_bandwidth_gbps)
    _validate_cluster(cluster)
    cluster.save()
    return cluster


@transaction.atomic
def cluster_update(*, cluster: Cluster, actor: User | None = None, **changes) -> Cluster:
    unknown = set(changes) - {"name", "fabric", "fabric_bandwidth_gbps"}
    if unknown:
        raise ValidationError({name: _("This field cannot be changed.") for name in unknown})
    cluster = Cluster.objects.select_for_update().select_related("site").get(pk=cluster.pk)
    _require_site_open(cluster.site)
    for field, value in changes.items():
        setattr(cluster, field, value.strip() if isinstance(value, str) and field == "name" else value)
    _validate_cluster(cluster)
    cluster.save()
    return cluster


@transaction.atomic
def cluster_retire(*, cluster: Cluster, actor: User | None = None) -> Cluster:
    """Retire every node of the cluster (audited, one by one) and withdraw its offers.

    Refused (InventoryConflict) while confirmed reservations still hold some of its cards.
    """
    _refuse_retire_under_bookings(what=gettext_lazy("this cluster's cards"), field="status", cluster_ids=[cluster.pk])
    for node in cluster.nodes.exclude(status=Node.Status.RETIRED):
        node_set_status(node=node, status=Node.Status.RETIRED, actor=actor, reason="cluster retired")
    cluster.offers.filter(is_active=True).update(is_active=False, updated_at=timezone.now())
    return cluster


# ---------------------------------------------------------------------------------------------
# Nodes (and their devices)
# ---------------------------------------------------------------------------------------------

NODE_EDITABLE_FIELDS = ("hostname", "cpu_model", "cpu_cores", "ram_gb", "disk_gb")


def _future_windows_allocate(*, nodes: list[Node]) -> None:
    """Put freshly created nodes under the maintenance windows of their cluster that are not over yet.

    One query finds the windows, one bulk insert per window allocates the new devices. New devices
    have no other allocation, so no conflict is possible.
    """
    if not nodes:
        return
    cluster_ids = {node.cluster_id for node in nodes}
    windows = list(
        MaintenanceWindow.objects.filter(
            cluster_id__in=cluster_ids, node__isnull=True, cancelled_at__isnull=True, period__endswith__gt=timezone.now()
        )
    )
    if not windows:
        return
    devices_by_cluster: dict[int, list[int]] = {}
    for cluster_id, device_id in Device.objects.filter(node__in=[n.pk for n in nodes]).values_list("node__cluster_id", "id"):
        devices_by_cluster.setdefault(cluster_id, []).append(device_id)
    for window in windows:
        device_ids = devices_by_cluster.get(window.cluster_id, [])
        if device_ids:
            device_allocations_create(
                device_ids=device_ids, start=window.period.lower, end=window.period.upper, maintenance_window=window
            )


def _hostname_taken(node: Node) -> None:
    if Node.objects.filter(cluster_id=node.cluster_id, hostname=node.hostname).exclude(pk=node.pk).exists():
        raise ValidationError({"hostname": _("A node with this hostname already exists in the cluster.")})


def _hostname_clean(hostname: str) -> str:
    return (hostname or "").strip().lower()


HOSTNAME_RE = re.compile(r"^(?=.{1,253}$)[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*$")


def hostname_problem(hostname: str) -> str | None:
    """Why `hostname` is not a valid host name (RFC 1123 labels), or None."""
    if not hostname:
        return _("A hostname is required.")
    if not HOSTNAME_RE.match(hostname):
        return _("'%(hostname)s' is not a valid hostname (letters, digits, '-' and '.').") % {"hostname": hostname[:60]}
    return None


@transaction.atomic
def nodes_bulk_create(*, rows: list[dict], actor: User | None = None) -> list[Node]:
    """Create many validated nodes with their devices in a few statements (the CSV import uses it).

    Each row: cluster (Cluster), hostname, accelerator_model (AcceleratorModel), card_count,
    cpu_cores, ram_gb, disk_gb and optionally cpu_model. A duplicate hostname that slipped past
    validation (a concurrent insert) surfaces as a ValidationError, and nothing is created.
    """
    nodes = [
        Node(
            cluster=row["cluster"],
            hostname=row["hostname"],
            accelerator_model=row["accelerator_model"],
            card_count=row["card_count"],
            cpu_model=row.get("cpu_model", ""),
            cpu_cores=row["cpu_cores"],
            ram_gb=row["ram_gb"],
            disk_gb=row["disk_gb"],
            status=Node.Status.REGISTERED,
        )
        for row in rows
    ]
    try:
        with transaction.atomic():
            nodes = Node.objects.bulk_create(nodes)
    except IntegrityError as error:
        if "node_hostname_unique_per_cluster" in str(error):
            raise ValidationError({"hostname": _("A node with this hostname already exists in the cluster.")}) from None
        raise
    Device.objects.bulk_create([Device(node=node, index=i) for node in nodes for i in range(node.card_count)])
    _future_windows_allocate(nodes=nodes)
    return nodes


def node_create(
    *,
    cluster: Cluster,
    hostname: str,
    accelerator_model: AcceleratorModel,
    card_count: int,
    cpu_cores: int,
    ram_gb: int,
    disk_gb: int,
    cpu_model: str = "",
    actor: User | None = None,
) -> Node:
    """List one server: the node (status registered until its agent reports) and one device per card."""
    _require_site_open(cluster.site, field="cluster")
    hostname = _hostname_clean(hostname)
    problem = hostname_problem(hostname)
    if problem:
        raise ValidationError({"hostname": problem})
    node = Node(
        cluster=cluster, hostname=hostname, accelerator_model=accelerator_model, card_count=card_count,
        cpu_model=(cpu_model or "").strip(), cpu_cores=cpu_cores, ram_gb=ram_gb, disk_gb=disk_gb,
    )
    _hostname_taken(node)
    _full_clean(node)
    return nodes_bulk_create(
        rows=[{
            "cluster": cluster, "hostname": hostname, "accelerator_model": accelerator_model, "card_count": card_count,
            "cpu_model": node.cpu_model, "cpu_cores": cpu_cores, "ram_gb": ram_gb, "disk_gb": disk_gb,
        }],
        actor=actor,
    )[0]


@transaction.atomic
def node_update(*, node: Node, actor: User | None = None, status: str | None = None, **changes) -> Node:
    """Change a node's description; a status change goes through node_set_status (audited).

    The model and card count are fixed at listing: devices and bookings hang off them. A provider
    who re-fits a server retires the node and lists a new one.
    """
    fixed = {"accelerator_model", "card_count", "cluster"} & set(changes)
    if fixed:
        raise ValidationError(
            {name: _("Fixed once listed: retire the node and list a new one to change it.") for name in fixed}
        )
    unknown = set(changes) - set(NODE_EDITABLE_FIELDS)
    if unknown:
        raise ValidationError({name: _("This field cannot be changed.") for name in unknown})
    node = Node.objects.select_for_update().get(pk=node.pk)
    if node.status == Node.Status.RETIRED:
        raise ValidationError({"status": _("A retired node cannot be changed.")})
    if "hostname" in changes:
        changes["hostname"] = _hostname_clean(changes["hostname"])
        problem = hostname_problem(changes["hostname"])
        if problem:
            raise ValidationError({"hostname": problem})
    for field, value in changes.items():
        setattr(node, field, value)
    _hostname_taken(node)
    _full_clean(node)
    node.save()
    if status is not None and status != node.status:
        node = node_set_status(node=node, status=status, actor=actor, reason="changed by the provider")
    return node


def node_retire(*, node: Node, actor: User | None = None, reason: str = "retired by the provider") -> Node:
    return node_set_status(node=node, status=Node.Status.RETIRED, actor=actor, reason=reason)


# ---------------------------------------------------------------------------------------------
# Offers
# ---------------------------------------------------------------------------------------------


def _validate_offer(offer: Offer) -> None:
    if offer.price_per_card_hour_minor is None or offer.price_per_card_hour_minor <= 0:
        raise ValidationError({"price_per_card_hour": _("The price must be more than zero.")})
    if offer.price_per_card_hour_minor > MAX_PRICE_PER_CARD_HOUR_MAJOR * 100:
        raise ValidationError({"price_per_card_hour": _("This is not a plausible price per card-hour.")})
    if offer.min_duration_hours is not None and offer.max_duration_hours is not None:
        if offer.max_duration_hours > MAX_DURATION_HOURS:
            raise ValidationError({"max_duration_hours": _("At most %(hours)d hours (a year).") % {"hours": MAX_DURATION_HOURS}})
        if offer.min_duration_hours > offer.max_duration_hours:
            raise ValidationError({"min_duration_hours": _("The minimum duration is longer than the maximum.")})
    period = offer.rentable_period
    if period is not None and period.lower is not None and period.upper is not None and period.lower >= period.upper:
        raise ValidationError({"rentable_until": _("The rentable period must end after it starts.")})
    if period is not None:
        far = {name: CALENDAR_HORIZON_MESSAGE for name, bound in (("rentable_from", period.lower), ("rentable_until", period.upper))
               if beyond_calendar_horizon(bound)}
        if far:
            raise ValidationError(far)
    _full_clean(offer, exclude=["price_per_card_hour_minor"])


def _refuse_offer_without_cards(offer: Offer) -> None:
    """An offer sells cards of its model in its cluster: with none listed there (retired nodes are
    gone) it would be an empty promise on the market ("0 / 0")."""
    live = Node.objects.filter(cluster_id=offer.cluster_id).exclude(status=Node.Status.RETIRED)
    if live.filter(accelerator_model_id=offer.accelerator_model_id).exists():
        return
    present = list(
        AcceleratorModel.objects.filter(pk__in=live.values("accelerator_model_id")).order_by("name").values_list("name", flat=True)
    )
    model = AcceleratorModel.objects.get(pk=offer.accelerator_model_id).name
    if present:
        message = _("This cluster has no %(model)s cards (it has %(present)s): list or import the nodes first, then offer them.")
    else:
        message = _("This cluster has no %(model)s cards (it has no nodes listed): list or import the nodes first, then offer them.")
    raise ValidationError({"accelerator_model": message % {"model": model, "present": ", ".join(present)}})


def _offer_active_duplicate(offer: Offer) -> bool:
    return (
        offer.is_active
        and Offer.objects.filter(cluster=offer.cluster, accelerator_model=offer.accelerator_model, is_active=True)
        .exclude(pk=offer.pk)
        .exists()
    )


def _rentable_period(start: datetime | None, end: datetime | None):
    if start is None and end is None:
        return None
    return DateTimeTZRange(start, end, "[)")


@transaction.atomic
def offer_create(
    *,
    cluster: Cluster,
    accelerator_model: AcceleratorModel,
    price_per_card_hour_minor: int,
    currency: str = Currency.CNY,
    min_duration_hours: int = 1,
    max_duration_hours: int = 24 * 90,
    rentable_from: datetime | None = None,
    rentable_until: datetime | None = None,
    actor: User | None = None,
) -> Offer:
    """Put cards of one model in one cluster on the market at a price per card-hour (minor units)."""
    _require_site_open(cluster.site, field="cluster")
    Cluster.objects.select_for_update().get(pk=cluster.pk)  # one offer per cluster and model, even in a race
    offer = Offer(
        cluster=cluster, accelerator_model=accelerator_model, price_per_card_hour_minor=price_per_card_hour_minor,
        currency=currency, min_duration_hours=min_duration_hours, max_duration_hours=max_duration_hours,
        rentable_period=_rentable_period(rentable_from, rentable_until), is_active=True,
    )
    if _offer_active_duplicate(offer):
        raise ValidationError(
            {"accelerator_model": _("This cluster already has an active offer for this model: edit or retire it.")}
        )
    _validate_offer(offer)
    _refuse_offer_without_cards(offer)
    offer.save()
    return offer


OFFER_EDITABLE_FIELDS = ("price_per_card_hour_minor", "currency", "min_duration_hours", "max_duration_hours")


@transaction.atomic
def offer_update(
    *, offer: Offer, actor: User | None = None, rentable_from=..., rentable_until=..., **changes
) -> Offer:
    """Change an offer's terms. Reservations already made keep the price they locked at booking.

    The rentable period governs new bookings and extensions only: ending it early (to stop new
    bookings before withdrawing the offer) never takes cards from a booking already made.
    """
    unknown = set(changes) - set(OFFER_EDITABLE_FIELDS)
    if unknown:
        raise ValidationError({name: _("Fixed once listed: retire the offer and create a new one.") for name in unknown})
    offer = Offer.objects.select_for_update().get(pk=offer.pk)
    if not offer.is_active:
        raise ValidationError({"is_active": _("A retired offer cannot be changed.")})
    for field, value in changes.items():
        setattr(offer, field, value)
    if rentable_from is not ... or rentable_until is not ...:
        current = offer.rentable_period
        start = (current.lower if current else None) if rentable_from is ... else rentable_from
        end = (current.upper if current else None) if rentable_until is ... else rentable_until
        offer.rentable_period = _rentable_period(start, end)
    _validate_offer(offer)
    _refuse_offer_without_cards(offer)
    offer.save()
    return offer


@transaction.atomic
def offer_retire(*, offer: Offer, actor: User | None = None) -> Offer:
    """Withdraw an offer (is_active=False, never a delete): reservations keep pointing at it.

    Refused (InventoryConflict) while confirmed reservations still hold cards booked under it.
    """
    offer = Offer.objects.select_for_update().get(pk=offer.pk)
    if offer.is_active:
        _refuse_retire_under_bookings(
            what=gettext_lazy("this offer's cards"), field="is_active", cluster_ids=[offer.cluster_id],
            accelerator_model_id=offer.accelerator_model_id, stop_new=gettext_lazy("ending its rentable period"),
        )
        offer.is_active = False
        offer.save(update_fields=["is_active", "updated_at"])
    return offer


# ---------------------------------------------------------------------------------------------
# Maintenance windows (blackouts on the device calendar)
# ---------------------------------------------------------------------------------------------

MAX_MAINTENANCE_DAYS = 90
MAINTENANCE_CONFLICT_MESSAGE = gettext_lazy("This period overlaps an existing maintenance window or booking.")


@transaction.atomic
def maintenance_window_create(
    *,
    cluster: Cluster,
    start: datetime,
    end: datetime,
    node: Node | None = None,
    reason: str = "",
    actor: User | None = None,
) -> MaintenanceWindow:
    """Black out a cluster (or one node of it) for [start, end).

    Every device concerned gets a maintenance allocation on the device calendar, so no booking can
    take it; a device already booked or in another window makes the whole window fail
    (InventoryConflict) and nothing is written.
    """
    if start is None or end is None:
        raise ValidationError({"start" if start is None else "end": _("Give both a start and an end.")})
    if end <= start:
        raise ValidationError({"end": _("The window must end after it starts.")})
    if end <= timezone.now():
        raise ValidationError({"end": _("This window is already over.")})
    if end - start > timedelta(days=MAX_MAINTENANCE_DAYS):
        raise ValidationError({"end": _("A maintenance window lasts at most %(days)d days.") % {"days": MAX_MAINTENANCE_DAYS}})
    if beyond_calendar_horizon(start):
        raise ValidationError({"start": CALENDAR_HORIZON_MESSAGE})
    if node is not None and node.cluster_id != cluster.pk:
        raise ValidationError({"node": _("This node is not in the cluster.")})
    if node is not None and node.status == Node.Status.RETIRED:
        raise ValidationError({"node": _("This node is retired.")})
    _require_site_open(cluster.site, field="cluster")
    # Serialize window creation per cluster, so the overlap check below cannot race.
    Cluster.objects.select_for_update().get(pk=cluster.pk)
    period = DateTimeTZRange(start, end, "[)")
    overlapping = MaintenanceWindow.objects.filter(cluster=cluster, cancelled_at__isnull=True, period__overlap=period)
    if node is not None:
        overlapping = overlapping.filter(Q(node__isnull=True) | Q(node=node))
    if overlapping.exists():
        raise InventoryConflict(_("This period overlaps an existing maintenance window."))
    booked = bookings_ahead(cluster_ids=[cluster.pk], node_id=node.pk if node is not None else None, start=start, end=end)
    if booked:
        raise InventoryConflict(
            ngettext(
                "%(count)d confirmed reservation uses %(what)s during that window (until %(end)s); "
                "plan it after it ends, or on nodes without bookings.",
                "%(count)d confirmed reservations use %(what)s during that window (the last of them until %(end)s); "
                "plan it after they end, or on nodes without bookings.",
                booked.reservations,
            ) % {
                "count": booked.reservations, "end": _when(booked.last_end),
                "what": _("this node's cards") if node is not None else _("this cluster's cards"),
            },
            field="start", code=CAPACITY_BOOKED_CODE,
        )
    window = MaintenanceWindow.objects.create(
        cluster=cluster, node=node, period=period, reason=(reason or "").strip()[:300], created_by=actor
    )
    devices = Device.objects.filter(node__cluster=cluster).exclude(node__status=Node.Status.RETIRED)
    if node is not None:
        devices = devices.filter(node=node)
    try:
        device_allocations_create(
            device_ids=list(devices.values_list("id", flat=True)), start=start, end=end, maintenance_window=window
        )
    except AllocationConflict:
        raise InventoryConflict(str(MAINTENANCE_CONFLICT_MESSAGE)) from None
    return window


@transaction.atomic
def maintenance_window_cancel(*, window: MaintenanceWindow, actor: User | None = None) -> MaintenanceWindow:
    """Call a window off: its devices return to the calendar. Cancelling twice changes nothing."""
    window = MaintenanceWindow.objects.select_for_update().get(pk=window.pk)
    if window.cancelled_at is None:
        window.cancelled_at = timezone.now()
        window.save(update_fields=["cancelled_at"])
        device_allocations_release(
            maintenance_window=window, at=window.cancelled_at, reason=DeviceAllocation.ReleaseReason.MAINTENANCE_CANCELLED
        )
    return window


def nodes_import_csv(*, organization: Organization, data: bytes, actor: User | None = None) -> list[Node]:
    """Import a CSV of nodes (format: inventory/importers.py). All rows are validated first; one bad
    row refuses the file (importers.NodeImportInvalid with a per-row report) and nothing is created."""
    from inventory.importers import node_rows_parse

    _require_provider(organization)
    rows = node_rows_parse(organization=organization, data=data)
    return nodes_bulk_create(rows=rows, actor=actor)


# --- the node import as a job (accounts.jobs): the file's shape is checked in the request, the rows by the task


def nodes_import_job_start(*, organization: Organization, data: bytes, actor: User):
    """Check the uploaded file's shape now (importers.NodeImportInvalid with a file error otherwise),
    then queue a job that checks every row and creates the nodes (nodes_import_job_run)."""
    from accounts.jobs import job_start
    from accounts.models import Job
    from inventory.importers import node_import_file_check

    _require_provider(organization)
    _columns, rows = node_import_file_check(data=data)
    # The task reports (row errors, progress, the outcome) in the uploader's language, not the worker's.
    return job_start(owner=actor, organization=organization, kind=Job.Kind.NODE_IMPORT,
                     params={"rows": len(rows), "language": get_language() or settings.LANGUAGE_CODE}, input_data=bytes(data))


def nodes_import_job_run(*, job_id: int) -> str:
    """The import job's work: check every row (progress: the first half of the bar), then create all
    the nodes in one transaction (the second half), or none - a bad row fails the job with every bad
    row in its result, as the import page showed them."""
    from accounts.jobs import JobFailed, JobOutcome, job_run
    from inventory.importers import NodeImportInvalid, node_rows_parse

    def work(job, progress):
        with override(job.params.get("language") or settings.LANGUAGE_CODE):
            return import_rows(job, progress)

    def import_rows(job, progress):
        organization = job.organization
        rows_total = 0

        def checking(*, done: int, total: int | None = None):
            nonlocal rows_total
            if total is not None:
                rows_total = total
            progress(done=done, total=2 * rows_total, message=_("Checking rows (%(done)s of %(total)s).") % {
                "done": f"{done:,}", "total": f"{rows_total:,}",
            })

        try:
            _require_provider(organization)
            rows = node_rows_parse(organization=organization, data=bytes(job.input_data), progress=checking)
        except NodeImportInvalid as invalid:
            raise JobFailed(invalid.message, result={
                "file_errors": invalid.file_errors, "bad_row_count": invalid.bad_row_count,
                "row_errors": [{"row": e.row, "column": e.column, "message": e.message} for e in invalid.row_errors],
            }) from None
        except ValidationError as error:
            raise JobFailed(" ".join(error.messages)) from None
        progress(done=len(rows), total=2 * len(rows), force=True, message=ngettext(
            "Creating %(count)s node.", "Creating %(count)s nodes.", len(rows)) % {"count": f"{len(rows):,}"})
        try:
            with transaction.atomic():
                nodes = nodes_bulk_create(rows=rows, actor=job.owner)
        except ValidationError as error:
            raise JobFailed(_("%(problem)s Nothing was imported.") % {"problem": " ".join(error.messages)}) from None
        cluster_ids = sorted({node.cluster_id for node in nodes})
        cards = sum(node.card_count for node in nodes)
        return JobOutcome(
            message=ngettext("Imported %(count)s node (%(cards)s cards).", "Imported %(count)s nodes (%(cards)s cards).", len(nodes))
            % {"count": f"{len(nodes):,}", "cards": f"{cards:,}"},
            result={"created": len(nodes), "cards": cards, "cluster_ids": cluster_ids},
            link=f"/provider/clusters/{cluster_ids[0]}/" if len(cluster_ids) == 1 else "/provider/",
        )

    return job_run(job_id=job_id, work=work)
