"""The demo network's simulated agents (manage.py run_demo_agents): the real node agent for every demo
node in one process, over HTTP against a running server (pytest-django's live_server). They keep the
demo nodes on the market and send usage; a real provider's node is never kept alive by them, and nodes
the demo lists as offline stay silent."""

from datetime import timedelta

import pytest
from django.core.management import call_command
from django.utils import timezone

from accounts.models import Membership, Organization
from inventory.agent_services import (
    demo_agent_keys_issue,
    demo_agent_nodes,
    node_agent_authenticate,
    node_agent_token_create,
    nodes_mark_stale,
)
from inventory.demo_agents import DemoAgents, Settings
from inventory.models import Node, NodeAgentToken, NodeStatusChange
from inventory.services import node_set_status
from marketplace.models import UsageSample
from tests.factories import ClusterFactory, NodeFactory, UserFactory, catalog_loaded, member

LONG_AGO = timedelta(minutes=30)


def _demo_cluster():
    provider = member(kind="provider")
    organization = provider.memberships.get().organization
    Organization.objects.filter(pk=organization.pk).update(is_demo=True)  # as seed_demo marks it
    return ClusterFactory(site__owner=organization)


def _network():
    """Demo nodes in every state, and real providers' nodes whose agents stopped long ago."""
    catalog_loaded()
    old = timezone.now() - LONG_AGO
    cluster = _demo_cluster()
    nodes = {
        "online": NodeFactory(cluster=cluster, last_heartbeat_at=old, card_count=4),
        "swept": NodeFactory(cluster=cluster, last_heartbeat_at=old, card_count=2),
        "listed_offline": NodeFactory(cluster=cluster, status=Node.Status.OFFLINE, last_heartbeat_at=old),
        "registered": NodeFactory(cluster=cluster, status=Node.Status.REGISTERED),
        "maintenance": NodeFactory(cluster=cluster, status=Node.Status.MAINTENANCE, last_heartbeat_at=old, card_count=1),
        "real": NodeFactory(last_heartbeat_at=old),
    }
    # the stale sweep took one demo node offline while the demo agents were not running
    node_set_status(node=nodes["swept"], status=Node.Status.OFFLINE, reason="no agent heartbeat for more than 180 seconds")
    NodeStatusChange.objects.create(node=nodes["listed_offline"], from_status="online", to_status="offline", reason="rack power work")
    # a real provider who invited a demo user, its node's agent key in use
    guest = UserFactory(email="guest@demo.computeflow.test")
    Membership.objects.create(organization=nodes["real"].cluster.site.owner, user=guest, role=Membership.Role.MEMBER)
    _token, real_key = node_agent_token_create(node=nodes["real"])
    return nodes, real_key


@pytest.mark.django_db
def test_the_demo_agents_speak_only_for_demo_nodes_with_an_agent_and_replace_their_keys():
    nodes, real_key = _network()
    earlier = node_agent_token_create(node=nodes["online"])[0]
    listed_offline_key = node_agent_token_create(node=nodes["listed_offline"])[0]

    issued = demo_agent_keys_issue()

    assert {node.node_id for node in issued} == {nodes[name].pk for name in ("online", "swept", "maintenance")}
    assert set(demo_agent_nodes().values_list("pk", flat=True)) == {node.node_id for node in issued}
    # every earlier key of a demo node is revoked; the real provider's key still works
    assert NodeAgentToken.objects.get(pk=earlier.pk).revoked_at is not None
    assert NodeAgentToken.objects.get(pk=listed_offline_key.pk).revoked_at is not None
    assert node_agent_authenticate(key=real_key).node_id == nodes["real"].pk
    # the new keys work, and each agent reports what the demo data says its node has
    online = next(node for node in issued if node.node_id == nodes["online"].pk)
    assert node_agent_authenticate(key=online.key).node_id == nodes["online"].pk
    assert online.report["model_name"] == nodes["online"].reported_model_name
    assert online.report["card_count"] == 4


@pytest.mark.django_db(transaction=True)
def test_the_demo_agents_keep_demo_nodes_online_over_http_and_send_usage(live_server, capsys):
    # Given the network above, and a server without the assignments endpoint yet (404): tolerated
    nodes, real_key = _network()
    started = timezone.now()

    # When the demo agents run for a few seconds with short intervals
    call_command(
        "run_demo_agents", "--server", live_server.url, "--heartbeat-interval", "1", "--poll-interval", "1",
        "--usage-interval", "1", "--spread", "0", "--workers", "2", "--run-seconds", "5",
    )

    # Then every demo node with an agent heartbeats, the one the sweep took offline is back online
    fresh = {node.pk: node for node in Node.objects.all()}
    for name in ("online", "swept", "maintenance"):
        assert fresh[nodes[name].pk].last_heartbeat_at >= started, name
    assert fresh[nodes["swept"].pk].status == Node.Status.ONLINE
    assert fresh[nodes["maintenance"].pk].status == Node.Status.MAINTENANCE  # an agent never ends maintenance
    # and their flags did not change: the agents reported the listed hardware
    assert all(fresh[nodes[name].pk].mismatch_reason == "" for name in ("online", "swept", "maintenance"))
    # The nodes the demo lists as offline or without an agent stay silent, the real node is untouched
    assert fresh[nodes["listed_offline"].pk].status == Node.Status.OFFLINE
    assert fresh[nodes["listed_offline"].pk].last_heartbeat_at < started
    assert fresh[nodes["registered"].pk].status == Node.Status.REGISTERED
    assert fresh[nodes["registered"].pk].last_heartbeat_at is None
    assert fresh[nodes["real"].pk].last_heartbeat_at < started
    assert node_agent_authenticate(key=real_key) is not None
    # and the stale sweep takes the real node offline, not the demo ones
    assert nodes_mark_stale() == [nodes["real"].pk]

    # Usage flowed for the demo nodes' cards only (idle cards: no assignments are running)
    samples = UsageSample.objects.all()
    assert samples.exists()
    assert set(samples.values_list("node_id", flat=True)) <= {nodes[name].pk for name in ("online", "swept", "maintenance")}
    assert set(samples.filter(node=nodes["online"]).values_list("device__index", flat=True)) == {0, 1, 2, 3}
    assert max(samples.values_list("utilization_percent", flat=True)) <= 5
    assert "fresh agent keys for 3 demo node(s)" in capsys.readouterr().out


@pytest.mark.django_db
def test_a_demo_node_listed_offline_while_the_agents_run_goes_silent():
    nodes, _real_key = _network()
    runner = DemoAgents(Settings(server="http://127.0.0.1:9"), demo_agent_keys_issue())
    node_set_status(node=Node.objects.get(pk=nodes["online"].pk), status=Node.Status.OFFLINE, reason="operator: cable swap")

    runner.refresh()

    assert runner.entries[nodes["online"].pk].silent
    assert not runner.entries[nodes["swept"].pk].silent
    assert not runner.entries[nodes["maintenance"].pk].silent


@pytest.mark.django_db
def test_without_demo_data_the_command_idles(capsys):
    NodeFactory(last_heartbeat_at=timezone.now() - LONG_AGO)

    call_command("run_demo_agents", "--server", "http://127.0.0.1:9", "--run-seconds", "0")

    assert "no demo nodes" in capsys.readouterr().out
    assert not NodeAgentToken.objects.exists()


@pytest.mark.django_db
def test_the_migration_removes_the_old_stand_in_beat_entry_and_nothing_else():
    from importlib import import_module

    from django.apps import apps
    from django_celery_beat.models import IntervalSchedule, PeriodicTask

    every = IntervalSchedule.objects.create(every=30, period=IntervalSchedule.SECONDS)
    PeriodicTask.objects.create(name="nodes-demo-heartbeat", task="inventory.nodes_demo_heartbeat", interval=every)
    PeriodicTask.objects.create(name="nodes-mark-stale", task="inventory.nodes_mark_stale", interval=every)

    import_module("inventory.migrations.0009_demo_agents").forwards(apps, None)

    assert list(PeriodicTask.objects.values_list("name", flat=True)) == ["nodes-mark-stale"]
