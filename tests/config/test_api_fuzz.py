"""Fuzz the whole REST API from its own OpenAPI schema: no input may make it answer 500.

Schemathesis generates requests (valid and invalid) for every operation of /api/schema/ and sends
them to the real Django application (config.wsgi, in this process) on the test database, once
with a buyer's API key and once with a provider's. The run is bounded and derandomized: a few
examples per operation, always the same ones, so it is fast and a failure reproduces.

For a deeper run against a live server, see README ("Fuzzing the API").
"""

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error

from accounts.services import api_token_create
from config.wsgi import application
from marketplace.services import reservation_create
from tests.factories import catalog_loaded, member
from tests.inventory.conftest import provider_with_inventory

# Loaded at collection from the application itself (no server; generating the schema needs no database).
schema = schemathesis.openapi.from_wsgi(
    "/api/schema/?format=json",
    application,
    # A fixed seed, and no "coverage" phase: it sends ~80 boundary-value requests per operation, which
    # is the CLI run's job (README); here the examples and a bounded fuzzing phase keep it fast.
    config=schemathesis.Config.from_dict({"seed": 20260101, "phases": {"coverage": {"enabled": False}}}),
)

FUZZ = settings(
    max_examples=15,
    derandomize=True,  # the same examples on every run: a failure reproduces, a pass means something
    database=None,
    deadline=None,
    suppress_health_check=list(HealthCheck),  # function-scoped fixtures are shared by the examples on purpose
)


@pytest.fixture(autouse=True)
def _keep_the_test_database_connection(db):
    """Like Django's test client: the application must not close the test's database connection (and
    with it the transaction that pytest-django rolls back) at the end of each request."""
    from django.core.signals import request_finished, request_started
    from django.db import close_old_connections

    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    yield
    request_started.connect(close_old_connections)
    request_finished.connect(close_old_connections)


@pytest.fixture(scope="module")
def network(django_db_setup, django_db_blocker):
    """A provider with a site, cluster, node and offer; a buyer with a reservation on that offer.

    Made once for the module inside an outer transaction that is rolled back at the end (each test
    still runs in its own savepoint): building it per operation took most of the run's time.
    """
    from datetime import timedelta

    from django.db import transaction
    from django.utils import timezone

    with django_db_blocker.unblock(), transaction.atomic():
        catalog_loaded()
        provider = provider_with_inventory("Fuzz Provider")
        buyer = member(kind="buyer")
        buyer_organization = buyer.memberships.get().organization
        start = timezone.now().replace(minute=0, second=0, microsecond=0) + timedelta(days=1)
        reservation_create(organization=buyer_organization, created_by=buyer, offer=provider.offer, card_count=1,
                           start=start, end=start + timedelta(hours=4))
        _, buyer_key = api_token_create(user=buyer, organization=buyer_organization, name="fuzz")
        _, provider_key = api_token_create(user=provider.user, organization=provider.organization, name="fuzz")
        yield {"buyer": buyer_key, "provider": provider_key}
        transaction.set_rollback(True)


@schema.parametrize()
@FUZZ
def test_no_input_makes_the_api_answer_500_for_a_buyer(case, network):
    case.call_and_validate(headers={"Authorization": f"Token {network['buyer']}"}, checks=[not_a_server_error])


@schema.parametrize()
@FUZZ
def test_no_input_makes_the_api_answer_500_for_a_provider(case, network):
    case.call_and_validate(headers={"Authorization": f"Token {network['provider']}"}, checks=[not_a_server_error])
