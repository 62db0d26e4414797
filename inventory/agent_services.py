"""The node agent: its credentials, what it reports, and how a report is compared with the listing.

A node agent (the `nodeagent` program) authenticates with a per-node key, registers the hardware it
detects and then sends heartbeats. The platform compares each report with the listing:

* another accelerator model than listed  -> flagged
* fewer cards than listed                -> flagged ("agent sees 6 cards, listing says 8")
* much less memory per card than listed  -> flagged (a 40 GB card sold as 80 GB)

More cards than listed is fine (a provider may keep some cards off the market).

Status and flag are kept apart on purpose: `Node.status` says whether the agent is alive
(registered -> online on the first report, online -> unhealthy when heartbeats stop, back online with
the next heartbeat), while
`Node.mismatch_reason` says whether the hardware contradicts the listing. A flagged node therefore
stays `online` - its agent is reachable - but it is not rentable (inventory.allocations.
rentable_devices requires an empty mismatch_reason) until a later report matches or the provider
corrects the listing (node_mismatch_check / node_mismatch_resolve). Statuses the provider or an
operator set (maintenance, unhealthy by node_mark_failed) are never changed by the agent; only an
unhealthy status the stale sweep set for silence is undone by the next heartbeat.
"""

import csv
import hashlib
import io
import logging
import re
import secrets
import time
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import Exists, OuterRef, Q, QuerySet, Subquery
from django.utils import timezone, translation
from django.utils.translation import gettext as _

from accounts.models import Organization, User
from inventory.models import AcceleratorModel, Node, NodeAgentToken, NodeStatusChange
from inventory.services import node_set_status

logger = logging.getLogger(__name__)

AGENT_KEY_PREFIX = "cfa_"  # noqa: S105 - a marker that makes leaked keys easy to spot, not a secret
# What a key can look like (the prefix, then token_urlsafe's alphabet): anything else is refused
# before it reaches the database (which cannot store a NUL byte).
_AGENT_KEY_SHAPE = re.compile(r"[A-Za-z0-9_\-]{20,200}")

# last_used_at is a hint for the provider page, not an audit trail: refreshing it at most this often
# keeps a heartbeat down to one UPDATE.
TOKEN_LAST_USED_RESOLUTION = timedelta(minutes=5)

# A card with less than this share of the listed memory is "another card" (for example an A100 40GB
# listed as 80GB). Tools report usable memory, a little below the marketing figure: an L40S "48GB"
# shows 46068 MiB (94%), an H100 "80GB" 81559 MiB.
MEMORY_TOLERANCE = 0.9


class NodeAgentRefused(Exception):
    """The agent's request is well-formed but the node's state does not allow it (HTTP 409)."""

    def __init__(self, message: str, *, code: str = "conflict"):
        super().__init__(message)
        self.message = message
        self.code = code


# ---------------------------------------------------------------------------------------------
# Keys
# ---------------------------------------------------------------------------------------------


def _hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def node_agent_token_create(*, node: Node) -> tuple[NodeAgentToken, str]:
    """A new agent key for the node; earlier keys stay valid until revoked. The key is shown once."""
    key = AGENT_KEY_PREFIX + secrets.token_urlsafe(32)
    token = NodeAgentToken.objects.create(node=node, prefix=key[:12], key_hash=_hash_key(key))
    return token, key


# A provider imports up to 10,000 nodes at once; keys are made for at most this many per request
# (one INSERT, but each key is hashed and shown once, so the file stays one a person can handle).
MAX_BULK_AGENT_KEYS = 2000
AGENT_KEYS_CSV_HEADER = ("hostname", "node_id", "token")
MAX_BIGINT = 2**63 - 1


@transaction.atomic
def node_agent_tokens_create_bulk(*, organization: Organization, node_ids: list[int]) -> list[tuple[Node, str]]:
    """A new agent key for each of these nodes of `organization`, all or nothing.

    Refused (ValidationError on "nodes", nothing created) when the list is empty or too long, when
    an id is not a node of the organization (another organization's node reads as unknown), or
    when a node is retired. Returns (node, key) pairs ordered by site, cluster and hostname; the keys
    are shown once (agent_keys_csv) - only their hashes are stored.
    """
    wanted = sorted(set(node_ids))
    if not wanted:
        raise ValidationError({"nodes": _("Choose at least one node.")})
    if len(wanted) > MAX_BULK_AGENT_KEYS:
        raise ValidationError({"nodes": _("At most %(limit)d nodes per request (got %(count)d).") % {
            "limit": MAX_BULK_AGENT_KEYS, "count": len(wanted),
        }})
    # An id beyond bigint is unknown, not a database error ("IN" has no overflow guard in Django).
    in_range = [node_id for node_id in wanted if 0 < node_id <= MAX_BIGINT]
    nodes = list(
        Node.objects.select_for_update(of=("self",))
        .select_related("cluster__site")
        .filter(pk__in=in_range, cluster__site__owner=organization)
        .order_by("cluster__site__name", "cluster__name", "hostname")
    )
    unknown = sorted(set(wanted) - {node.pk for node in nodes})
    if unknown:
        shown = ", ".join(str(node_id) for node_id in unknown[:10]) + (" ..." if len(unknown) > 10 else "")
        raise ValidationError({"nodes": _("No such node in your organization: %(nodes)s.") % {"nodes": shown}})
    retired = [node.hostname for node in nodes if node.status == Node.Status.RETIRED]
    if retired:
        shown = ", ".join(retired[:10]) + (" ..." if len(retired) > 10 else "")
        raise ValidationError({"nodes": _("Retired nodes take no agent keys: %(nodes)s.") % {"nodes": shown}})
    keys = [AGENT_KEY_PREFIX + secrets.token_urlsafe(32) for _node in nodes]
    NodeAgentToken.objects.bulk_create(
        [NodeAgentToken(node=node, prefix=key[:12], key_hash=_hash_key(key)) for node, key in zip(nodes, keys, strict=True)]
    )
    return list(zip(nodes, keys, strict=True))


def agent_keys_csv(*, keys: list[tuple[Node, str]]) -> str:
    """The keys as the downloadable file: hostname,node_id,token - one line per node."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(AGENT_KEYS_CSV_HEADER)
    for node, key in keys:
        writer.writerow([node.hostname, node.pk, key])
    return out.getvalue()


def node_agent_token_revoke(*, token: NodeAgentToken) -> NodeAgentToken:
    if token.revoked_at is None:
        token.revoked_at = timezone.now()
        token.save(update_fields=["revoked_at"])
    # This process stops trusting the key at once (harmless if the revoke is rolled back: the next
    # batch reads the key again); other processes within AGENT_KEY_CACHE_SECONDS.
    node_agent_key_cache_forget(token_id=token.pk)
    return token


def node_agent_authenticate(*, key: str) -> NodeAgentToken | None:
    """The active agent token for this key (with its node and the listed model), or None."""
    if not key.startswith(AGENT_KEY_PREFIX) or not _AGENT_KEY_SHAPE.fullmatch(key):
        return None
    token = (
        NodeAgentToken.objects.select_related("node__accelerator_model")
        .filter(prefix=key[:12], revoked_at__isnull=True)
        .first()
    )
    if token is None or not secrets.compare_digest(token.key_hash, _hash_key(key)):
        return None
    return token


# The usage endpoint authenticates every batch an agent sends (many per second per node at full
# rate), and the ORM lookup above was ~1 ms of Python plus a query per batch. Batches only need the
# node id, so they are authenticated from a per-process cache of (key hash -> token id, node id)
# that is trusted for AGENT_KEY_CACHE_SECONDS: a key revoked elsewhere (another web worker, the
# demo re-issue, an operator) stops working for usage batches within that many seconds; a revoke in
# this process forgets it at once. Register and heartbeat keep the exact lookup. Only successes are
# cached (a wrong key always reaches the database), keyed by the key's hash (no key kept in memory).
AGENT_KEY_CACHE_SECONDS = 5.0
_AGENT_KEY_CACHE_MAX = 10_000
_agent_key_cache: dict[str, tuple[float, int, int]] = {}


@dataclass(frozen=True)
class NodeAgentIdentity:
    """Who sent a usage batch: the key's token and its node (request.auth of the usage endpoint)."""

    token_id: int
    node_id: int


def node_agent_identify(*, key: str) -> NodeAgentIdentity | None:
    """The token and node of an active agent key, trusted from this process's cache for
    AGENT_KEY_CACHE_SECONDS (see above); None for a wrong or revoked key."""
    if not key.startswith(AGENT_KEY_PREFIX) or not _AGENT_KEY_SHAPE.fullmatch(key):
        return None
    key_hash = _hash_key(key)
    now = time.monotonic()
    cached = _agent_key_cache.get(key_hash)
    if cached is not None and cached[0] > now:
        return NodeAgentIdentity(token_id=cached[1], node_id=cached[2])
    row = (
        NodeAgentToken.objects.filter(prefix=key[:12], revoked_at__isnull=True)
        .values_list("id", "node_id", "key_hash")
        .first()
    )
    if row is None or not secrets.compare_digest(row[2], key_hash):
        _agent_key_cache.pop(key_hash, None)
        return None
    if len(_agent_key_cache) >= _AGENT_KEY_CACHE_MAX:
        _agent_key_cache.clear()
    _agent_key_cache[key_hash] = (now + AGENT_KEY_CACHE_SECONDS, row[0], row[1])
    return NodeAgentIdentity(token_id=row[0], node_id=row[1])


def node_agent_key_cache_forget(*, token_id: int | None = None) -> None:
    """Drop a token (or, without one, every key) from this process's usage-auth cache."""
    if token_id is None:
        _agent_key_cache.clear()
        return
    for key_hash in [h for h, (_key, cached_token, _at) in _agent_key_cache.items() if cached_token == token_id]:
        _agent_key_cache.pop(key_hash, None)


# Reads for the provider-facing key endpoints. They live here rather than in inventory/selectors.py
# because they only serve the agent endpoints.


def organization_node_get(*, organization: Organization | None, node_id: int) -> Node | None:
    """The node if it belongs to the organization (through its site), else None."""
    if organization is None:
        return None
    return (
        Node.objects.select_related("accelerator_model", "cluster__site")
        .filter(pk=node_id, cluster__site__owner=organization)
        .first()
    )


def organization_agent_token_get(*, organization: Organization | None, token_id: int) -> NodeAgentToken | None:
    if organization is None:
        return None
    return NodeAgentToken.objects.filter(pk=token_id, node__cluster__site__owner=organization).first()


def node_agent_token_list(*, node: Node) -> QuerySet[NodeAgentToken]:
    return NodeAgentToken.objects.filter(node=node).order_by("-created_at", "-id")


def nodes_without_agent_key(
    *, organization: Organization | None, cluster_id: int | None = None, site_id: int | None = None
) -> QuerySet[Node]:
    """The organization's nodes (optionally of one cluster or site) that are not retired and have
    no agent key that still works (none, or all revoked): the ones a bulk key request is for."""
    if organization is None:
        return Node.objects.none()
    nodes = Node.objects.filter(cluster__site__owner=organization).exclude(status=Node.Status.RETIRED)
    if cluster_id is not None:
        nodes = nodes.filter(cluster_id=cluster_id)
    if site_id is not None:
        nodes = nodes.filter(cluster__site_id=site_id)
    working = NodeAgentToken.objects.filter(node=OuterRef("pk"), revoked_at__isnull=True)
    return nodes.filter(~Exists(working))


# ---------------------------------------------------------------------------------------------
# Matching a reported accelerator name with the catalog
# ---------------------------------------------------------------------------------------------
#
# Tools and the catalog spell the same card differently: NVML says "NVIDIA H100 80GB HBM3" for the
# catalog's "H100 SXM5 80GB", "NVIDIA A100-SXM4-80GB" for "A100 SXM4 80GB"; npu-smi says "910B3" for
# "Ascend 910B3". The rule, applied to both names:
#
# 1. Split into alternatives: the name without its parentheses, each parenthesised part, and each
#    side of a "/" ("Ascend 910B4 (32GB) / 910B4-1 (64GB)" -> "Ascend 910B4", "910B4-1", "32GB").
# 2. Lower-case, split on spaces and - _ , ; drop words that carry no identity: memory types
#    (hbm3, gddr6x), the default form factors tools never print (sxm*, oam, hgx, card, module),
#    power ("1000w"), multipliers ("2x") and generations ("2nd gen"); "ascend910b3" -> "910b3".
# 3. The *model token* is the first remaining word with a digit ("h100", "910b3", "mi300x"); a bare
#    number takes the word before it ("gaudi 2" -> "gaudi2", "rtx 4090" -> "rtx4090"). Words before
#    it are vendor and brand ("NVIDIA", "Huawei", "GeForce", "Instinct") and are ignored. Memory
#    sizes ("80gb") are kept apart. Every other word after the model token is a *variant*
#    ("pcie", "nvl", "ai", "d").
# 4. Two alternatives match when the model tokens are equal, the variant sets are equal, and the
#    memory sizes are equal where both names state one. Two names match when any alternatives do.
#
# So "NVIDIA H100 80GB HBM3" matches "H100 SXM5 80GB" but not "H100 PCIe 80GB" (variant pcie),
# "NVIDIA H100 NVL" (variant nvl), "H200 SXM 141GB" (model) or "NVIDIA A100-SXM4-40GB" (model,
# memory). Known limit: names a tool prints that share nothing with the catalog (Gaudi's "HL-225")
# only match where the catalog lists that name in parentheses.

_BRAND_GLUED = re.compile(r"^(ascend|nvidia|huawei)(?=\d)")
_MEMORY = re.compile(r"^(\d+)g(?:b|ib)?$")
_NOISE = re.compile(r"^(hbm\d*e?|g?ddr\d*x?|lpddr\d*x?|sxm\d*|oam|hgx|card|module|\d+w|\d+x|\d+(st|nd|rd|th)|gen)$")


@dataclass(frozen=True)
class AcceleratorSignature:
    model: str
    variants: frozenset[str]
    memory_gb: int | None


def _alternatives(name: str) -> list[str]:
    parts = re.findall(r"\(([^()]*)\)", name)
    main = re.sub(r"\([^()]*\)", " ", name)
    alternatives = []
    for part in [main, *parts]:
        alternatives.extend(piece for piece in part.split("/") if piece.strip())
    return alternatives


def _signature(text: str) -> AcceleratorSignature | None:
    words = [word for word in re.split(r"[\s\-_,;:]+", text.lower()) if word]
    words = [_BRAND_GLUED.sub("", word) for word in words]
    model = None
    variants: set[str] = set()
    memory = None
    previous = ""
    for word in words:
        memory_match = _MEMORY.match(word)
        if memory_match:
            memory = int(memory_match.group(1))
        elif _NOISE.match(word):
            pass
        elif model is None:
            if re.search(r"\d", word):
                model = f"{previous}{word}" if word.isdigit() else word
            previous = word
        else:
            variants.add(word)
    if model is None:
        return None
    return AcceleratorSignature(model=model, variants=frozenset(variants), memory_gb=memory)


def accelerator_signatures(name: str) -> list[AcceleratorSignature]:
    """The comparable forms of an accelerator name (see the rule above)."""
    return [signature for part in _alternatives(name) if (signature := _signature(part)) is not None]


def accelerator_names_match(*, reported: str, listed: str) -> bool:
    """Whether a name a tool reported denotes the listed catalog model (rule above)."""
    for mine in accelerator_signatures(reported):
        for theirs in accelerator_signatures(listed):
            if mine.model != theirs.model or mine.variants != theirs.variants:
                continue
            if mine.memory_gb is not None and theirs.memory_gb is not None and mine.memory_gb != theirs.memory_gb:
                continue
            return True
    return False


def report_mismatch_reason(
    *,
    listed_model: AcceleratorModel,
    listed_card_count: int,
    reported_model_name: str,
    reported_card_count: int | None,
    reported_memory_gb: int | None,
) -> str:
    """Why the report contradicts the listing ("" when it does not), in the active language. Several
    reasons join with "; ". Node.mismatch_reason stores it in English (the flag, and the API's text);
    pages word it again for their reader (mismatch_reason_display)."""
    if not reported_model_name:
        return ""  # nothing reported yet: nothing to contradict
    reasons = []
    if not accelerator_names_match(reported=reported_model_name, listed=listed_model.name):
        reasons.append(_('agent sees "%(reported)s", listing says "%(listed)s"') % {
            "reported": reported_model_name, "listed": listed_model.name})
    if reported_card_count is not None and reported_card_count < listed_card_count:
        reasons.append(_("agent sees %(reported)s cards, listing says %(listed)s") % {
            "reported": reported_card_count, "listed": listed_card_count})
    if (
        reported_memory_gb is not None
        and listed_model.memory_gb
        and reported_memory_gb < listed_model.memory_gb * MEMORY_TOLERANCE
    ):
        reasons.append(_("agent sees %(reported)s GB per card, listing says %(listed)s GB") % {
            "reported": reported_memory_gb, "listed": listed_model.memory_gb})
    return _("; ").join(reasons) if reasons else ""


def _node_mismatch_reason(node: Node) -> str:
    """The reason as stored: in English, whatever language the request that caused the check is in."""
    with translation.override("en"):
        return mismatch_reason_display(node)


def mismatch_reason_display(node: Node) -> str:
    """Why the node is flagged, in the active language (the page's), from its last report."""
    return report_mismatch_reason(
        listed_model=node.accelerator_model,
        listed_card_count=node.card_count,
        reported_model_name=node.reported_model_name,
        reported_card_count=node.reported_card_count,
        reported_memory_gb=node.reported_memory_gb,
    )


def _log_flag_change(node: Node, before: str, after: str) -> None:
    if before == after:
        return
    if after:
        logger.warning("node %s (%s) flagged: %s", node.pk, node.hostname, after)
    else:
        logger.info("node %s (%s): mismatch cleared (was: %s)", node.pk, node.hostname, before)


@transaction.atomic
def node_mismatch_check(*, node: Node) -> Node:
    """Compare the node's last report with its current listing and store the outcome.

    Call it after the listing changes (model, card count): a corrected listing clears the flag,
    a new contradiction sets it. Idempotent.
    """
    node = Node.objects.select_for_update().select_related("accelerator_model").get(pk=node.pk)
    reason = _node_mismatch_reason(node)
    if reason != node.mismatch_reason:
        _log_flag_change(node, node.mismatch_reason, reason)
        node.mismatch_reason = reason
        node.save(update_fields=["mismatch_reason", "updated_at"])
    return node


def node_mismatch_resolve(*, node: Node, actor: User | None = None) -> Node:
    """The provider says the mismatch is fixed: re-check the last report against the listing.

    A flag cannot be waved away while the evidence stands: if the last report still contradicts
    the listing, this raises ValidationError with the reason (fix the listing, or the hardware and
    let the agent report again).
    """
    node = node_mismatch_check(node=node)
    if node.mismatch_reason:
        raise ValidationError(
            {"mismatch_reason": _("The agent's last report still contradicts the listing: %(reason)s.") % {"reason": mismatch_reason_display(node)}}
        )
    logger.info("node %s: mismatch resolution confirmed by %s", node.pk, actor or "the system")
    return node


# ---------------------------------------------------------------------------------------------
# Register and heartbeat
# ---------------------------------------------------------------------------------------------


def _token_touch(token: NodeAgentToken, now: datetime) -> None:
    if token.last_used_at is None or now - token.last_used_at > TOKEN_LAST_USED_RESOLUTION:
        NodeAgentToken.objects.filter(pk=token.pk).update(last_used_at=now)
        token.last_used_at = now


def _refuse_retired(node: Node) -> None:
    if node.status == Node.Status.RETIRED:
        raise NodeAgentRefused(_("This node is retired; its agent reports are not accepted."), code="node_retired")


# Statuses the agent moves to online by being alive. Maintenance and unhealthy were set by a person
# or by a health check, and only they move the node out again - except unhealthy set by the stale
# sweep for silence (SILENCE_REASON_PREFIX), which the next heartbeat disproves.
AGENT_REVIVES = frozenset({Node.Status.REGISTERED, Node.Status.OFFLINE})
# The stale sweep's audit reason starts with this (and nothing else's does).
SILENCE_REASON_PREFIX = "no agent heartbeat"


def node_unhealthy_by_silence(node: Node) -> bool:
    """True if the node is unhealthy because the stale sweep found its agent silent (its latest move)."""
    if node.status != Node.Status.UNHEALTHY:
        return False
    latest = NodeStatusChange.objects.filter(node=node).order_by("-created_at", "-id").values_list("to_status", "reason").first()
    return latest is not None and latest[0] == Node.Status.UNHEALTHY and latest[1].startswith(SILENCE_REASON_PREFIX)


@transaction.atomic
def node_agent_register(*, token: NodeAgentToken, report: dict, now: datetime | None = None) -> Node:
    """Store what the agent detects, compare it with the listing, and bring the node online.

    `report` is validated input: model_name, card_count, memory_gb (or None), driver_version,
    software_versions. A matching report clears an earlier flag; a contradicting one sets it.
    The first report moves a registered node to online; an offline node (or one unhealthy for silence) comes back online.
    """
    now = now or timezone.now()
    node = Node.objects.select_for_update().select_related("accelerator_model").get(pk=token.node_id)
    _refuse_retired(node)
    before = node.mismatch_reason
    node.reported_model_name = report["model_name"]
    node.reported_card_count = report["card_count"]
    node.reported_memory_gb = report.get("memory_gb")
    node.driver_version = report.get("driver_version", "")
    node.software_versions = report.get("software_versions", {})
    node.mismatch_reason = _node_mismatch_reason(node)
    node.last_heartbeat_at = now
    node.save(
        update_fields=[
            "reported_model_name",
            "reported_card_count",
            "reported_memory_gb",
            "driver_version",
            "software_versions",
            "mismatch_reason",
            "last_heartbeat_at",
            "updated_at",
        ]
    )
    _log_flag_change(node, before, node.mismatch_reason)
    if node.status in AGENT_REVIVES or node_unhealthy_by_silence(node):
        reason = "node agent registered" if node.status == Node.Status.REGISTERED else "node agent is back"
        node = node_set_status(node=node, status=Node.Status.ONLINE, reason=reason)
    _token_touch(token, now)
    return node


def node_agent_heartbeat(*, token: NodeAgentToken, now: datetime | None = None) -> Node:
    """The agent is alive. Idempotent; for an online node it costs one UPDATE.

    A node the stale sweep made unhealthy (heartbeats had stopped), or an offline one, comes back online. A node that never registered its
    hardware is refused (NodeAgentRefused, code "register_first"): there is nothing to compare yet.
    """
    now = now or timezone.now()
    updated = Node.objects.filter(pk=token.node_id, status=Node.Status.ONLINE).update(last_heartbeat_at=now)
    if updated:
        node = token.node
        node.last_heartbeat_at = now
        if node.status != Node.Status.ONLINE:  # the token's copy was loaded before another process moved it
            node.refresh_from_db()
    else:
        node = _heartbeat_slow_path(token=token, now=now)
    _token_touch(token, now)
    return node


@transaction.atomic
def _heartbeat_slow_path(*, token: NodeAgentToken, now: datetime) -> Node:
    node = Node.objects.select_for_update().get(pk=token.node_id)
    _refuse_retired(node)
    if node.status == Node.Status.REGISTERED or not node.reported_model_name:
        raise NodeAgentRefused(_("Register the node's hardware before sending heartbeats."), code="register_first")
    node.last_heartbeat_at = now
    node.save(update_fields=["last_heartbeat_at"])
    if node.status in AGENT_REVIVES or node_unhealthy_by_silence(node):
        node = node_set_status(node=node, status=Node.Status.ONLINE, reason="node agent heartbeats resumed")
    return node


# ---------------------------------------------------------------------------------------------
# Stale agents
# ---------------------------------------------------------------------------------------------


def nodes_mark_stale(*, now: datetime | None = None) -> list[int]:
    """The one rule for silence: an online node whose last heartbeat is older than
    NODE_HEARTBEAT_TIMEOUT_SECONDS turns unhealthy (audited, cause "network": the platform cannot tell a
    dead host from a cut link), with a heartbeat_missed reliability event at its last heartbeat.
    Its status change announces capacity_lost, so the market fails its work over; the agent's next
    heartbeat brings it back online (node_agent_heartbeat).

    Returns the ids moved. Safe to run any number of times, in several processes: each node is
    re-checked under its row lock, so a heartbeat that lands meanwhile keeps the node online.
    """
    from inventory.models import ReliabilityEvent
    from inventory.reliability import node_reliability_record

    now = now or timezone.now()
    timeout = settings.NODE_HEARTBEAT_TIMEOUT_SECONDS
    cutoff = now - timedelta(seconds=timeout)
    # A node online without any heartbeat (listed online by hand, or by an older version) is as stale
    # as one whose agent went quiet.
    stale = Node.objects.filter(Q(last_heartbeat_at__lt=cutoff) | Q(last_heartbeat_at__isnull=True), status=Node.Status.ONLINE)
    moved = []
    for node_id in stale.values_list("pk", flat=True):
        with transaction.atomic():
            node = stale.select_for_update(skip_locked=True).filter(pk=node_id).first()
            if node is None:
                continue
            node_set_status(
                node=node, status=Node.Status.UNHEALTHY, cause=ReliabilityEvent.Cause.NETWORK,
                reason=f"{SILENCE_REASON_PREFIX} for more than {timeout} seconds",
            )
            node_reliability_record(
                node=node, kind=ReliabilityEvent.Kind.HEARTBEAT_MISSED, cause=ReliabilityEvent.Cause.NETWORK,
                at=node.last_heartbeat_at or now, details=f"silent for more than {timeout} seconds",
            )
            moved.append(node_id)
    if moved:
        logger.warning("%d node(s) marked unhealthy after %ss without a heartbeat: %s", len(moved), timeout, moved)
    return moved


# ---------------------------------------------------------------------------------------------
# The demo network's simulated agents (manage.py run_demo_agents)
# ---------------------------------------------------------------------------------------------

# A demo node offline or unhealthy for silence (SILENCE_REASON_PREFIX, nodes_mark_stale) only lost its
# agent (the demo agents were not running) and comes back when they run; any other offline node was
# listed offline.


@dataclass(frozen=True)
class DemoAgentNode:
    """One demo node the simulated agents run for: its key and what its agent reports."""

    node_id: int
    hostname: str
    key: str
    report: dict
    memory_gb: int | None


def demo_agent_nodes() -> QuerySet[Node]:
    """The demo network's nodes that have an agent: nodes of the demo organizations (Organization.is_demo,
    set by seed_demo alone - never a real provider's node, whose stopped agent must take it offline),
    whose hardware was reported, not retired, and not listed offline (an offline node counts as having
    an agent only if the stale sweep took it offline)."""
    went_quiet = NodeStatusChange.objects.filter(node=OuterRef("pk")).order_by("-created_at", "-id").values("reason")[:1]
    return (
        Node.objects.filter(cluster__site__owner__is_demo=True)
        .exclude(reported_model_name="")
        .exclude(status__in=[Node.Status.RETIRED, Node.Status.REGISTERED])
        .annotate(last_reason=Subquery(went_quiet))
        .exclude(Q(status=Node.Status.OFFLINE) & ~Q(last_reason__startswith=SILENCE_REASON_PREFIX))
    )


def _demo_report(node: Node) -> dict:
    """What the node's (simulated) agent reports: what the demo data says it reported, so a matching node
    stays matching and the demo's flagged node stays flagged."""
    versions = {str(k)[:64]: str(v)[:64] for k, v in list((node.software_versions or {}).items())[:32]}
    return {
        "model_name": node.reported_model_name,
        "card_count": node.reported_card_count or node.card_count,
        "memory_gb": node.reported_memory_gb,
        "driver_version": node.driver_version or "simulated",
        "software_versions": {**versions, "detected-by": "demo-simulation"},
    }


@transaction.atomic
def demo_agent_keys_issue(*, now: datetime | None = None) -> list[DemoAgentNode]:
    """Fresh agent keys for the demo network's nodes with an agent (demo_agent_nodes); every earlier key
    of a demo organization's node is revoked first, so only the latest simulated agents can speak for them.
    Touches nothing outside the demo organizations."""
    now = now or timezone.now()
    NodeAgentToken.objects.filter(node__cluster__site__owner__is_demo=True, revoked_at__isnull=True).update(revoked_at=now)
    node_agent_key_cache_forget()
    nodes = list(demo_agent_nodes().select_related("accelerator_model").order_by("pk"))
    keys = [AGENT_KEY_PREFIX + secrets.token_urlsafe(32) for _node in nodes]
    NodeAgentToken.objects.bulk_create(
        [NodeAgentToken(node=node, prefix=key[:12], key_hash=_hash_key(key)) for node, key in zip(nodes, keys, strict=True)]
    )
    return [
        DemoAgentNode(
            node_id=node.pk, hostname=node.hostname, key=key, report=_demo_report(node),
            memory_gb=node.reported_memory_gb or node.accelerator_model.memory_gb,
        )
        for node, key in zip(nodes, keys, strict=True)
    ]
