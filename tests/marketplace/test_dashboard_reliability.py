"""The provider dashboard shows the stored reliability scores (inventory.reliability), the provider's and
its nodes that lost points."""

import math
from datetime import timedelta

import pytest
from django.utils import timezone

from inventory.models import ReliabilityEvent
from inventory.reliability import node_reliability_record
from marketplace import dashboard
from tests.factories import ClusterFactory, NodeFactory


@pytest.mark.django_db
def test_the_provider_dashboard_shows_its_score_and_the_nodes_that_lost_points():
    # Given a provider with two nodes, one of which failed a boot and had a failover in the last days
    cluster = ClusterFactory()
    provider = cluster.site.owner
    healthy = NodeFactory(cluster=cluster)
    flaky = NodeFactory(cluster=cluster)
    now = timezone.now()
    node_reliability_record(node=flaky, kind=ReliabilityEvent.Kind.BOOT_FAILED, cause=ReliabilityEvent.Cause.HOST_FAULT,
                            at=now - timedelta(days=2))
    node_reliability_record(node=flaky, kind=ReliabilityEvent.Kind.FAILOVER, cause=ReliabilityEvent.Cause.HOST_FAULT,
                            at=now - timedelta(days=1))
    # When the dashboard is read
    reliability = dashboard.provider_dashboard(organization=provider, now=now)["reliability"]
    # Then the flaky node is listed at 100 - 5 - 10, the healthy one is not, and the provider's score is
    # the card-weighted mean of the two
    assert reliability["nodes_below"] == [{"pk": flaky.pk, "hostname": flaky.hostname, "reliability_score": 85}]
    assert healthy.pk not in {row["pk"] for row in reliability["nodes_below"]}
    cards = healthy.card_count + flaky.card_count
    assert reliability["score"] == math.floor((100 * healthy.card_count + 85 * flaky.card_count) / cards + 0.5)  # half up
