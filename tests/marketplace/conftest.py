"""Marketplace fixtures: a small cluster on the market, buyers, and times in the near future."""

from datetime import timedelta

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from tests.factories import ClusterFactory, NodeFactory, OfferFactory, member


@pytest.fixture
def soon():
    """The next whole hour plus a day: a start safely in the future."""
    return timezone.now().replace(minute=0, second=0, microsecond=0) + timedelta(days=1)


@pytest.fixture
def small_offer(catalog):
    """An H100 offer on a 2-node (16-card) InfiniBand cluster at 25.00 CNY per card-hour."""
    cluster = ClusterFactory()
    NodeFactory(cluster=cluster, hostname="h100-a")
    NodeFactory(cluster=cluster, hostname="h100-b")
    return OfferFactory(cluster=cluster)


@pytest.fixture
def buyer(db):
    return member(kind="buyer")


@pytest.fixture
def buyer_client(buyer):
    client = APIClient()
    client.force_login(buyer)
    return client
