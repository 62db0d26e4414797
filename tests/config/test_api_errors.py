"""Every API error has one shape, whatever raised it."""

import json

import pytest

from tests.factories import member


@pytest.mark.django_db
def test_a_body_over_the_limit_is_a_413_in_the_api_error_shape_and_changes_nothing(client):
    from marketplace.models import Reservation

    client.force_login(member(kind="buyer"))
    body = json.dumps({"x": "a" * (6 * 1024 * 1024)})
    response = client.post("/api/reservations/", body, content_type="application/json")
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "too_large"
    assert Reservation.objects.count() == 0


@pytest.mark.django_db
def test_unauthenticated_and_unknown_routes_answer_in_the_error_shape(client):
    response = client.get("/api/me/")
    assert response.status_code == 401
    assert set(response.json()["error"]) == {"code", "message", "fields"}


def test_a_page_size_over_the_limit_is_refused_with_the_field_named():
    from rest_framework.exceptions import ValidationError
    from rest_framework.request import Request
    from rest_framework.test import APIRequestFactory

    from config.api import Pagination

    request = Request(APIRequestFactory().get("/x", {"page_size": "100000"}))
    with pytest.raises(ValidationError) as error:
        Pagination().get_page_size(request)
    assert "page_size" in error.value.detail


@pytest.mark.django_db
@pytest.mark.parametrize("path", ["/api/reservations/null,null/extend/", "/api/sites/0.5/retire/", "/api/nope/"])
def test_an_api_url_no_route_matches_is_a_404_in_the_error_shape(client, path):
    # given a signed-in member and an API address that matches no route (found by fuzzing: an HTML page)
    client.force_login(member())
    # when it is called
    response = client.post(path)
    # then the answer is the API's JSON error, not Django's HTML page
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"


@pytest.mark.django_db
def test_a_page_address_no_route_matches_is_still_an_html_404(client):
    response = client.get("/no-such-page/")
    assert response.status_code == 404 and response["Content-Type"].startswith("text/html")


def test_an_api_crash_outside_drf_answers_in_the_error_shape(rf):
    from config.api import server_error

    response = server_error(rf.get("/api/anything/"))
    assert response.status_code == 500
    assert json.loads(response.content)["error"]["code"] == "server_error"


@pytest.mark.django_db
def test_the_schema_documents_the_paginated_lists_as_pages(client):
    # given the OpenAPI schema (it described the market's lists as bare arrays)
    schema = client.get("/api/schema/", {"format": "json"}).json()
    # then both market lists are documented as pages, with their page parameters
    for path in ("/api/market/offers/", "/api/reservations/"):
        operation = schema["paths"][path]["get"]
        ref = operation["responses"]["200"]["content"]["application/json"]["schema"]["$ref"]
        page = schema["components"]["schemas"][ref.rsplit("/", 1)[1]]
        assert {"count", "next", "previous", "results"} <= set(page["properties"])
        assert {"page", "page_size"} <= {parameter["name"] for parameter in operation["parameters"]}


# One example of each domain exception, with the status and code it must answer.
DOMAIN_EXAMPLES = {
    "accounts.jobs.JobFailed": (lambda m: m.JobFailed("2 rows are invalid; nothing was imported."), 422, "job_failed"),
    "marketplace.services.BookingConflict": (lambda m: m.BookingConflict(cards_free=3), 409, "booking_conflict"),
    "marketplace.services.InsufficientCapacity": (
        lambda m: m.InsufficientCapacity(cards_free=24, cards_asked=40), 409, "insufficient_capacity"),
    "marketplace.services.ReservationStateError": (
        lambda m: m.ReservationStateError("A completed reservation cannot be cancelled."), 409, "reservation_state"),
    "marketplace.services.IdempotencyKeyReused": (
        lambda m: m.IdempotencyKeyReused("This Idempotency-Key was already used."), 422, "idempotency_key_reused"),
    "inventory.services.InventoryConflict": (
        lambda m: m.InventoryConflict("This period overlaps an existing maintenance window."), 409, "conflict"),
    "inventory.allocations.AllocationConflict": (lambda m: m.AllocationConflict("Some devices are taken."), 409, "conflict"),
    "inventory.agent_services.NodeAgentRefused": (
        lambda m: m.NodeAgentRefused("Register first.", code="register_first"), 409, "register_first"),
    "marketplace.metering.services.UsageBatchInvalid": (
        lambda m: m.UsageBatchInvalid("samples[3].device: not a device of this node",
                                      {"samples[3].device": ["not a device of this node"]}), 400, "invalid"),
    "inventory.importers.NodeImportInvalid": (
        lambda m: m.NodeImportInvalid(row_errors=[m.RowError(row=7, column="card_count", message="not a number")],
                                      bad_row_count=1), 400, "invalid"),
    "billing.services.InvoiceStateError": (
        lambda m: m.InvoiceStateError("An invoice cannot go from void to approved."), 409, "invoice_state"),
    "billing.services.BillingRunIncomplete": (
        lambda m: m.BillingRunIncomplete(organization_ids=[7], created=3), 409, "billing_run_incomplete"),
    "billing.services.CreditNoteRefused": (
        lambda m: m.CreditNoteRefused("A credit note must be more than 0 and at most 1200."), 422, "credit_note_refused"),
    "marketplace.provisioning.services.AssignmentNotFound": (lambda m: m.AssignmentNotFound(), 404, "not_found"),
    "marketplace.provisioning.services.AssignmentClosed": (lambda m: m.AssignmentClosed(), 409, "assignment_closed"),
    "marketplace.provisioning.drivers.NoFreePort": (lambda m: m.NoFreePort("every SSH port is in use"), 409, "no_free_port"),
    "billing.services.ReviewReasonMissing": (
        lambda m: m.ReviewReasonMissing("Say why: the reason is kept in the invoice's audit trail."), 422, "reason_required"),
    "billing.payments.PaymentRefused": (lambda m: m.PaymentRefused("Save a card on the payment method page first."), 409, "payment_refused"),
    "billing.payments.PaymentMethodRefused": (
        lambda m: m.PaymentMethodRefused("That card setup is not your organization's."), 422, "payment_method_refused"),
    "billing.payments.PayoutStateError": (lambda m: m.PayoutStateError("A payout cannot go from failed to paid."), 409, "payout_state"),
}
PROJECT_APPS = ("accounts", "inventory", "marketplace", "billing", "frontend")


def _domain_exceptions_defined_in_the_apps() -> set[str]:
    """Every exception class a project app defines at module level, other than DRF's own (already mapped by DRF)."""
    import importlib
    import inspect
    import pkgutil

    from rest_framework.exceptions import APIException

    found = set()
    for app in PROJECT_APPS:
        package = importlib.import_module(app)
        for module_info in pkgutil.walk_packages(package.__path__, prefix=f"{app}."):
            if ".migrations" in module_info.name or ".management" in module_info.name:
                continue
            module = importlib.import_module(module_info.name)
            for _, cls in inspect.getmembers(module, inspect.isclass):
                # a private class (`_Truncated`) is raised and caught inside its module and never reaches a view
                if (cls.__module__ == module.__name__ and issubclass(cls, Exception) and not issubclass(cls, APIException)
                        and not cls.__name__.startswith("_")):
                    found.add(f"{cls.__module__}.{cls.__qualname__}")
    return found


@pytest.mark.django_db
def test_every_domain_exception_of_the_apps_is_mapped_once_centrally():
    from config.api import DOMAIN_ERRORS

    # given the exceptions the apps' modules define, when the central table is read,
    # then each has a row (a new exception, say in billing, cannot slip through as a 500) and an example here
    assert _domain_exceptions_defined_in_the_apps() == set(DOMAIN_ERRORS)
    assert set(DOMAIN_EXAMPLES) == set(DOMAIN_ERRORS)


@pytest.mark.parametrize("path", sorted(DOMAIN_EXAMPLES))
def test_each_domain_exception_answers_its_status_in_the_one_error_shape(path):
    import importlib

    from config.api import exception_handler

    # given a domain exception raised by a service under an API view
    make, status, code = DOMAIN_EXAMPLES[path]
    exc = make(importlib.import_module(path.rsplit(".", 1)[0]))
    # when the API's one exception handler answers it
    response = exception_handler(exc, {})
    # then it has its status and code, a message, and fields as lists of strings
    assert response.status_code == status
    assert set(response.data) == {"error"}
    error = response.data["error"]
    assert {"code", "message", "fields"} <= set(error)
    assert error["code"] == code and error["message"]
    assert all(isinstance(reasons, list) and all(isinstance(r, str) for r in reasons) for reasons in error["fields"].values())


def test_too_few_free_cards_answers_the_free_count_and_a_race_does_not_claim_one():
    from config.api import exception_handler
    from marketplace.services import BookingConflict, InsufficientCapacity

    short = exception_handler(InsufficientCapacity(cards_free=24, cards_asked=40), {}).data["error"]
    assert short["message"].startswith("Only 24 of the 40 cards are free in that window")
    assert (short["cards_free"], short["cards_asked"]) == (24, 40) and "card_count" in short["fields"]
    race = exception_handler(BookingConflict(), {}).data["error"]
    assert race["message"].startswith("Those cards were just booked by someone else")
    assert set(race) == {"code", "message", "fields"}
