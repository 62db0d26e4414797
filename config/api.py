"""What every app's API shares: one error shape, pagination with a bounded page size.

Every error answers
    {"error": {"code": "invalid", "message": "...", "fields": {"field": ["reason", ...]}}}
so a client (and the browser pages) can show the reason next to the field. A few codes add members
of their own beside those three (insufficient_capacity: `cards_free`, `cards_asked`).

`code` is for programs and stays English; `message` and `fields` are for people and are in the
request's language (LocaleMiddleware: the Accept-Language header, e.g. `zh-hans`): DRF's own texts
come from DRF's catalog, ours from locale/.

The apps' domain exceptions (a lost booking race, a move the state machine refuses, ...) are raised
by their services and reach the client through DOMAIN_ERRORS below: one table, read by the one
exception handler, so no view translates them and a new app (billing) only adds its rows.
"""

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache

import django_filters
from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.exceptions import RequestDataTooBig
from django.core.exceptions import ValidationError as DjangoValidationError
from django.http import Http404, JsonResponse
from django.utils.module_loading import import_string
from django.utils.translation import gettext as _
from django.views import defaults
from rest_framework import exceptions, status
from rest_framework.pagination import PageNumberPagination
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler
from rest_framework.views import set_rollback

MAX_PAGE_SIZE = 200


class Pagination(PageNumberPagination):
    page_size_query_param = "page_size"
    max_page_size = MAX_PAGE_SIZE

    def get_page_size(self, request):
        raw = request.query_params.get(self.page_size_query_param)
        if raw is None:
            return self.page_size
        try:
            size = int(raw)
        except ValueError:
            raise exceptions.ValidationError({"page_size": [_("Must be a whole number.")]}) from None
        if not 1 <= size <= self.max_page_size:
            raise exceptions.ValidationError(
                {"page_size": [_("Must be between 1 and %(max)s.") % {"max": self.max_page_size}]}
            )
        return size


def _flatten(detail):
    """DRF error details -> (message, fields) with plain strings."""
    if isinstance(detail, dict):
        fields = {}
        for key, value in detail.items():
            if isinstance(value, dict):
                fields[key] = [f"{k}: {m}" for k, msgs in _flatten(value)[1].items() for m in msgs]
            elif isinstance(value, list):
                fields[key] = [str(item) if not isinstance(item, dict) else str(_flatten(item)[1]) for item in value]
            else:
                fields[key] = [str(value)]
        non_field = fields.pop("non_field_errors", None)
        message = non_field[0] if non_field else "; ".join(f"{k}: {v[0]}" for k, v in fields.items())
        if non_field:
            fields["non_field_errors"] = non_field
        return message or _("Invalid input."), fields
    if isinstance(detail, list):
        messages = [str(item) for item in detail]
        return "; ".join(messages), {"non_field_errors": messages}
    return str(detail), {}


def error_response(*, code: str, message: str, status_code: int, fields: dict | None = None, **members) -> Response:
    return Response({"error": {"code": code, "message": message, "fields": fields or {}, **members}}, status=status_code)


@dataclass(frozen=True)
class DomainError:
    """How a domain exception answers: its HTTP status, its error code (None: the exception's own
    `code`), and optionally field errors and members of its own in the error object."""

    status: int
    code: str | None
    fields: Callable[[Exception], dict[str, list[str]]] = field(default=lambda exc: {})
    members: Callable[[Exception], dict] = field(default=lambda exc: {})


def _message(exc: Exception) -> str:
    # str(): a lazily translated message is rendered now, in the request's language.
    return str(getattr(exc, "message", None) or exc)


# Dotted paths, resolved on first use: the apps import this module, so it cannot import them up front.
# A subclass answers as its nearest listed ancestor unless it has a row of its own.
DOMAIN_ERRORS: dict[str, DomainError] = {
    # a real race: cards free at pick time were taken by a concurrent booking (or the offer/hardware changed)
    "marketplace.services.BookingConflict": DomainError(409, "booking_conflict"),
    # not enough free cards in the window: says how many are
    "marketplace.services.InsufficientCapacity": DomainError(
        409, "insufficient_capacity",
        fields=lambda exc: {"card_count": [_message(exc)]},
        members=lambda exc: {"cards_free": exc.cards_free, "cards_asked": exc.cards_asked},
    ),
    "marketplace.services.ReservationStateError": DomainError(409, "reservation_state"),
    "marketplace.services.IdempotencyKeyReused": DomainError(
        422, "idempotency_key_reused", fields=lambda exc: {"Idempotency-Key": [_message(exc)]}
    ),
    # its own code: conflict, or capacity_booked when confirmed reservations hold the cards
    "inventory.services.InventoryConflict": DomainError(409, None, fields=lambda exc: {exc.field: [_message(exc)]}),
    "inventory.allocations.AllocationConflict": DomainError(409, "conflict"),
    "inventory.agent_services.NodeAgentRefused": DomainError(409, None),  # its own code: node_retired, register_first
    "inventory.importers.NodeImportInvalid": DomainError(400, "invalid", fields=lambda exc: exc.fields()),
    # a malformed usage batch, or samples not the node's to report: nothing of it was stored
    "marketplace.metering.services.UsageBatchInvalid": DomainError(400, "invalid", fields=lambda exc: exc.fields),
    # billing: a move the invoice state machine refuses (e.g. approving a void invoice)
    "billing.services.InvoiceStateError": DomainError(409, "invoice_state"),
    # a credit note on a draft, without a reason, or for more than the invoice still carries
    # an on-demand billing run that the database refused for some organizations (the others were invoiced)
    "billing.services.BillingRunIncomplete": DomainError(
        409, "billing_run_incomplete", members=lambda exc: {"organization_ids": exc.organization_ids, "created": exc.created}
    ),
    "billing.services.CreditNoteRefused": DomainError(422, "credit_note_refused", fields=lambda exc: {"amount_minor": [_message(exc)]}),
    # an agent's report on an assignment that is not its node's (or none): as if it did not exist
    "marketplace.provisioning.services.AssignmentNotFound": DomainError(404, "not_found"),
    # "running" for an assignment the server gave up on (deadline missed, failed, cancelled): stop it
    "marketplace.provisioning.services.AssignmentClosed": DomainError(409, "assignment_closed"),
    # a node with every SSH port of the range taken (provisioning fails the boot with it; never a view's today)
    "marketplace.provisioning.drivers.NoFreePort": DomainError(409, "no_free_port"),
    # a finance review action (approve, void) without the reason its audit row needs
    "billing.services.ReviewReasonMissing": DomainError(422, "reason_required", fields=lambda exc: {"reason": [_message(exc)]}),
    # payments: paying an invoice that is not open, or without a saved card
    "billing.payments.PaymentRefused": DomainError(409, "payment_refused"),
    # a card setup that did not succeed or is not the organization's
    "billing.payments.PaymentMethodRefused": DomainError(422, "payment_method_refused"),
    "billing.payments.PayoutStateError": DomainError(409, "payout_state"),
    # a job's work refusing its input (accounts.jobs: bad rows of an import); caught by job_run, which
    # fails the job with it, so it reaches a view only if a job's work is ever called directly
    "accounts.jobs.JobFailed": DomainError(422, "job_failed"),
}


@cache
def domain_errors() -> dict[type[Exception], DomainError]:
    return {import_string(path): mapping for path, mapping in DOMAIN_ERRORS.items()}


def domain_error_response(exc: Exception) -> Response | None:
    """The answer for a domain exception, or None if `exc` is not one."""
    mappings = domain_errors()
    mapping = next((mappings[cls] for cls in type(exc).__mro__ if cls in mappings), None)
    if mapping is None:
        return None
    set_rollback()  # as DRF does for its own exceptions: nothing of a refused request is committed
    return error_response(code=mapping.code or exc.code, message=_message(exc), status_code=mapping.status,
                          fields=mapping.fields(exc), **mapping.members(exc))


def exception_handler(exc, context):
    domain_response = domain_error_response(exc)
    if domain_response is not None:
        return domain_response
    if isinstance(exc, DjangoValidationError):
        exc = exceptions.ValidationError(
            exc.message_dict if hasattr(exc, "error_dict") else {"non_field_errors": exc.messages}
        )
    elif isinstance(exc, Http404):
        exc = exceptions.NotFound()
    elif isinstance(exc, DjangoPermissionDenied):
        exc = exceptions.PermissionDenied()
    elif isinstance(exc, RequestDataTooBig):
        return error_response(
            code="too_large",
            message=_("The request body is too large (the limit is 5 MB)."),
            status_code=status.HTTP_413_REQUEST_ENTITY_TOO_LARGE,
        )

    response = drf_exception_handler(exc, context)
    if response is None:
        return None
    if isinstance(exc, exceptions.ValidationError):
        message, fields = _flatten(exc.detail)
        code = "invalid"
    else:
        message, fields = _flatten(exc.detail) if hasattr(exc, "detail") else (str(exc), {})
        codes = exc.get_codes() if hasattr(exc, "get_codes") else "error"
        code = codes if isinstance(codes, str) else "error"
        fields = {}
    response.data = {"error": {"code": code, "message": message, "fields": fields}}
    return response


# Django's own error pages, for requests that never reach a DRF view (a URL no route matches, such
# as /api/reservations/abc/, or a crash outside DRF): under /api/ they answer in the one error shape.
API_PREFIX = "/api/"


def page_not_found(request, exception):
    if request.path.startswith(API_PREFIX):
        return JsonResponse(
            {"error": {"code": "not_found", "message": _("No such API endpoint or object."), "fields": {}}}, status=404
        )
    return defaults.page_not_found(request, exception)


def server_error(request):
    if request.path.startswith(API_PREFIX):
        return JsonResponse(
            {"error": {"code": "server_error", "message": _("Something went wrong on our side; it has been logged."),
                       "fields": {}}}, status=500,
        )
    return defaults.server_error(request)


class StrictBooleanFilter(django_filters.TypedChoiceFilter):
    """A boolean query parameter that refuses anything but true/false/1/0.

    django-filter's BooleanFilter reads an unknown value ("maybe") as "no filter", which would answer
    every row as if the caller had asked for them; this answers 400 naming the parameter instead.
    """

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("choices", [("true", "true"), ("false", "false"), ("1", "1"), ("0", "0")])
        kwargs.setdefault("coerce", lambda value: value in ("true", "1"))
        super().__init__(*args, **kwargs)
