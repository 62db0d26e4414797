import pytest
from django.core.cache import cache

from inventory.selectors import NETWORK_TOTALS_CACHE_KEY
from inventory.tasks import network_totals_refresh_task
from tests.factories import NodeFactory, OfferFactory


@pytest.mark.django_db(transaction=True)
@pytest.mark.celery
def test_a_task_round_trips_through_a_real_worker_process(celery_worker_process):
    # Given a listed node of 8 H100 cards, committed so the worker process can see it
    node = NodeFactory(card_count=8)
    OfferFactory(cluster=node.cluster, accelerator_model=node.accelerator_model)
    cache.delete(NETWORK_TOTALS_CACHE_KEY)
    # When the beat task runs on the worker (through Redis)
    result = network_totals_refresh_task.delay().get(timeout=60)
    # Then the worker computed the totals from the database and stored them in Redis
    assert result == {"sites": 1, "cards": 8, "listed_ecu": "7.9120"}
    cached = cache.get(NETWORK_TOTALS_CACHE_KEY)
    assert cached is not None and cached["cards"] == 8
