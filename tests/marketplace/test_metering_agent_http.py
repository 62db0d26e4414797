"""End to end: the node agent's usage samples over real HTTP to a running server (live_server),
including a batch that could not be delivered and is delivered later with the same ids."""

from datetime import UTC, datetime, timedelta

import pytest

from inventory.agent_services import node_agent_token_create
from inventory.models import Node
from marketplace.models import UsageSample
from nodeagent import cli
from nodeagent.client import AgentClient
from tests.factories import NodeFactory, catalog_loaded

pytestmark = pytest.mark.django_db(transaction=True)


class Clock:
    def __init__(self, start):
        self.now = start

    def __call__(self):
        return self.now


def test_a_simulated_agent_sends_contiguous_samples_and_redelivers_a_failed_batch_once(live_server, request):
    # Given a listed 8-card node and its agent in --simulate mode, its clock ten minutes back
    catalog_loaded()
    node = NodeFactory(status=Node.Status.REGISTERED)
    _token, key = node_agent_token_create(node=node)
    args = cli.parse_args(["--server", live_server.url, "--token", key, "--simulate", "H100 SXM5 80GB:8"])
    client = AgentClient(server=live_server.url, token=key, timeout=10)
    request.addfinalizer(client.session.close)  # a kept-alive connection would keep a server thread (and its database session)
    agent = cli.Agent(args, client)
    clock = Clock(datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=10))
    agent.meter.clock = clock
    agent.register(agent.current_report())
    agent.heartbeat()
    agent.meter.measure()

    # When three windows go through, the fourth finds the server unreachable, and the fifth goes through
    for _ in range(3):
        clock.now += timedelta(seconds=60)
        agent.send_usage()
    assert UsageSample.objects.count() == 24
    clock.now += timedelta(seconds=60)
    agent.meter.measure()
    unreachable = AgentClient(server="http://127.0.0.1:9", token=key, timeout=2)
    assert agent.meter.flush(unreachable)["sent"] == 0
    kept = {sample["sample_id"] for sample in agent.meter.buffer}
    assert len(kept) == 8
    clock.now += timedelta(seconds=60)
    agent.send_usage()

    # Then every card has five contiguous one-minute windows, the kept batch among them with its ids
    assert not agent.meter.buffer
    assert UsageSample.objects.filter(node=node).count() == 40
    assert kept <= {str(sample_id) for sample_id in UsageSample.objects.values_list("sample_id", flat=True)}
    for device in node.devices.all():
        windows = list(UsageSample.objects.filter(device=device).order_by("window_start").values_list("window_start", "window_end"))
        assert len(windows) == 5
        assert all(end - start == timedelta(seconds=60) for start, end in windows)
        assert all(windows[i][1] == windows[i + 1][0] for i in range(4))
