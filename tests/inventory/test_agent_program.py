"""End to end: the real `python -m nodeagent` process against a running server (pytest-django's
live_server), then the node as the database sees it."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from inventory.agent_services import node_agent_token_create
from inventory.allocations import rentable_devices
from inventory.models import Node, NodeStatusChange
from tests.factories import NodeFactory, catalog_loaded

BASE_DIR = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.django_db(transaction=True)


def run_agent(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "COMPUTEFLOW_AGENT_TOKEN"}
    return subprocess.run(
        [sys.executable, "-m", "nodeagent", *args],
        cwd=BASE_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.fixture
def listed_node():
    """An 8x H100 SXM5 node, listed and waiting for its agent, with a key."""
    catalog_loaded()
    node = NodeFactory(status=Node.Status.REGISTERED)
    _token, key = node_agent_token_create(node=node)
    return node, key


def test_a_matching_simulated_agent_brings_the_node_online_and_rentable(live_server, listed_node):
    # given a listed node that is not on the market yet
    node, key = listed_node
    assert not rentable_devices().filter(node=node).exists()

    # when its agent runs once, simulating the listed hardware
    result = run_agent("--server", live_server.url, "--token", key, "--simulate", "H100 SXM5 80GB:8", "--once")

    # then it registered and heartbeated, and the node is online, unflagged and rentable
    assert result.returncode == 0, result.stderr
    assert "registered 8 x H100 SXM5 80GB" in result.stderr
    node.refresh_from_db()
    assert node.status == Node.Status.ONLINE
    assert node.mismatch_reason == ""
    assert node.reported_model_name == "H100 SXM5 80GB"
    assert node.reported_card_count == 8
    assert node.driver_version == "simulated"
    assert node.software_versions["detected-by"] == "simulate"
    assert node.last_heartbeat_at is not None
    assert rentable_devices().filter(node=node).count() == 8
    assert NodeStatusChange.objects.filter(node=node, to_status="online").count() == 1


@pytest.mark.parametrize(
    ("simulate", "reason"),
    [
        ("H100 SXM5 80GB:6", "agent sees 6 cards, listing says 8"),
        ("A100 SXM4 80GB:8", 'agent sees "A100 SXM4 80GB", listing says "H100 SXM5 80GB"'),
    ],
)
def test_a_mismatching_simulated_agent_flags_the_node_and_takes_it_off_the_market(
    live_server, listed_node, simulate, reason
):
    # given a node that was on the market with the right hardware
    node, key = listed_node
    first = run_agent("--server", live_server.url, "--token", key, "--simulate", "H100 SXM5 80GB:8", "--once")
    assert first.returncode == 0, first.stderr
    assert rentable_devices().filter(node=node).exists()

    # when its agent reports fewer cards or another model
    result = run_agent("--server", live_server.url, "--token", key, "--simulate", simulate, "--once")

    # then the agent says so, and the node is flagged and no longer rentable
    assert result.returncode == 0, result.stderr
    assert "FLAGGED" in result.stderr and reason in result.stderr
    node.refresh_from_db()
    assert node.mismatch_reason == reason
    assert not rentable_devices().filter(node=node).exists()


def test_a_wrong_key_makes_the_agent_exit_with_the_servers_message(live_server, listed_node):
    node, _key = listed_node

    result = run_agent(
        "--server",
        live_server.url,
        "--token",
        "cfa_notthekeynotthekeynotthekey",
        "--simulate",
        "H100 SXM5 80GB:8",
        "--once",
    )

    assert result.returncode == 4
    assert "Invalid or revoked agent key." in result.stderr
    node.refresh_from_db()
    assert node.status == Node.Status.REGISTERED
    assert node.reported_model_name == ""


def test_an_unreachable_server_is_retried_with_a_log_line_then_given_up(listed_node):
    _node, key = listed_node

    result = run_agent(
        "--server",
        "http://127.0.0.1:9",
        "--token",
        key,
        "--simulate",
        "H100 SXM5 80GB:8",
        "--once",
        "--max-attempts",
        "2",
    )

    assert result.returncode == 6
    assert "server unreachable (cannot connect to http://127.0.0.1:9/api/agent/); retrying in" in result.stderr
    assert "after 2 attempt(s)" in result.stderr
