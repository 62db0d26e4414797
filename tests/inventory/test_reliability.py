"""The one rule for silence (unhealthy, back online with the next heartbeat), the reliability record
and its score (formula unit-tested, stored per node and provider)."""

from datetime import timedelta

import pytest
from django.utils import timezone

from inventory.agent_services import node_agent_heartbeat, nodes_mark_stale
from inventory.models import Node, NodeAgentToken, NodeStatusChange, ProviderReliability, ReliabilityEvent
from inventory.reliability import (
    RELIABILITY_WINDOW_DAYS,
    node_reliability_record,
    node_score,
    provider_score,
    reliability_refresh_all,
)
from inventory.services import node_mark_failed
from tests.factories import ClusterFactory, NodeFactory, UserFactory

HB, BOOT, FO = "heartbeat_missed", "boot_failed", "failover"


# --- the formula (pure) ----------------------------------------------------------------------------------------------


def test_node_score_subtracts_2_5_10_per_event_and_ignores_declared_maintenance():
    assert node_score([]) == 100
    assert node_score([(HB, "network")]) == 98
    assert node_score([(BOOT, "host_fault")]) == 95
    assert node_score([(FO, "host_fault"), (HB, "network"), (BOOT, "host_fault")]) == 83
    assert node_score([(FO, "maintenance"), (HB, "maintenance")]) == 100
    assert node_score([(FO, "host_fault")] * 11) == 0  # never below 0


def test_provider_score_is_the_card_weighted_mean_rounded_half_up():
    assert provider_score([]) == 100
    assert provider_score([(90, 8), (100, 8)]) == 95
    assert provider_score([(0, 8), (100, 24)]) == 75
    assert provider_score([(99, 1), (100, 1)]) == 100  # 99.5 rounds half up
    assert provider_score([(98, 1), (99, 2)]) == 99  # 98.67


# --- the sweep's one rule for silence ----------------------------------------------------------------------------------


def _token(node) -> NodeAgentToken:
    return NodeAgentToken.objects.create(node=node, prefix=f"p{node.pk}", key_hash="x" * 64)


@pytest.mark.django_db
def test_a_silent_node_turns_unhealthy_with_a_heartbeat_missed_event_and_its_next_heartbeat_brings_it_back(catalog, settings):
    settings.NODE_HEARTBEAT_TIMEOUT_SECONDS = 180
    now = timezone.now()
    last = now - timedelta(seconds=200)
    quiet = NodeFactory(last_heartbeat_at=last)
    fresh = NodeFactory(last_heartbeat_at=now - timedelta(seconds=20))
    # when the sweep runs twice
    assert nodes_mark_stale(now=now) == [quiet.pk]
    assert nodes_mark_stale(now=now) == []
    # then the quiet node is unhealthy (cause network), with one heartbeat_missed event at its last heartbeat
    quiet.refresh_from_db()
    assert quiet.status == Node.Status.UNHEALTHY
    change = NodeStatusChange.objects.get(node=quiet, to_status="unhealthy")
    assert change.reason.startswith("no agent heartbeat") and change.cause == "network"
    event = ReliabilityEvent.objects.get(node=quiet)
    assert (event.kind, event.cause, event.at) == (HB, "network", last)
    assert quiet.reliability_score == 98
    assert ProviderReliability.objects.get(organization=quiet.cluster.site.owner).score == 98
    assert Node.objects.get(pk=fresh.pk).status == Node.Status.ONLINE
    # when its agent heartbeats again, it is online
    node = node_agent_heartbeat(token=_token(quiet))
    assert node.status == Node.Status.ONLINE
    assert Node.objects.get(pk=quiet.pk).status == Node.Status.ONLINE


@pytest.mark.django_db
def test_a_heartbeat_does_not_revive_a_node_an_operator_marked_failed(catalog):
    node = NodeFactory()
    operator = UserFactory(is_staff=True)
    node_mark_failed(node=node, actor=operator, reason="PSU smoke", cause="host_fault")
    node = node_agent_heartbeat(token=_token(node))
    assert node.status == Node.Status.UNHEALTHY
    change = NodeStatusChange.objects.get(node=node, to_status="unhealthy")
    assert change.actor == operator and "PSU smoke" in change.reason and change.cause == "host_fault"


@pytest.mark.django_db
def test_marking_failed_needs_a_reason(catalog):
    from django.core.exceptions import ValidationError

    node = NodeFactory()
    with pytest.raises(ValidationError):
        node_mark_failed(node=node, actor=UserFactory(), reason="  ", cause="host_fault")
    assert Node.objects.get(pk=node.pk).status == Node.Status.ONLINE


# --- records and stored scores -------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_records_are_idempotent_and_scores_follow_the_window(catalog):
    cluster = ClusterFactory()
    bad, good = NodeFactory(cluster=cluster), NodeFactory(cluster=cluster)
    provider = cluster.site.owner
    now = timezone.now()
    # when a failover (host fault) is recorded twice, and a declared maintenance once
    assert node_reliability_record(node=bad, kind=FO, cause="host_fault", at=now - timedelta(days=1)) is not None
    assert node_reliability_record(node=bad, kind=FO, cause="host_fault", at=now - timedelta(days=1)) is None
    node_reliability_record(node=bad, kind=FO, cause="maintenance", at=now - timedelta(hours=1))
    # then the node lost 10 points, the provider (two 8-card nodes) 5
    bad.refresh_from_db()
    good.refresh_from_db()
    assert (bad.reliability_score, good.reliability_score) == (90, 100)
    assert ProviderReliability.objects.get(organization=provider).score == 95
    # and once the event is older than the window, the refresh gives the points back
    ReliabilityEvent.objects.filter(node=bad, cause="host_fault").update(at=now - timedelta(days=RELIABILITY_WINDOW_DAYS + 1))
    reliability_refresh_all()
    bad.refresh_from_db()
    assert bad.reliability_score == 100
    assert ProviderReliability.objects.get(organization=provider).score == 100


@pytest.mark.django_db
def test_an_unknown_kind_or_cause_is_refused(catalog):
    node = NodeFactory()
    with pytest.raises(ValueError):
        node_reliability_record(node=node, kind="exploded", cause="host_fault", at=timezone.now())
    with pytest.raises(ValueError):
        node_reliability_record(node=node, kind=FO, cause="gremlins", at=timezone.now())
