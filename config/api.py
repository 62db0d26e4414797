"""What every app's API shares: one error shape, pagination with a bounded page size.

Every error answers
    {"error": {"code": "invalid", "message": "...", "fields": {"field": ["reason", ...]}}}
so a client (and the browser pages) can show the reason next to the field.
"""

import django_filters
from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.exceptions import RequestDataTooBig
from django.core.exceptions import ValidationError as DjangoValidationError
from django.http import Http404, JsonResponse
from django.views import defaults
from rest_framework import exceptions, status
from rest_framework.pagination import PageNumberPagination
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

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
            raise exceptions.ValidationError({"page_size": ["Must be a whole number."]}) from None
        if not 1 <= size <= self.max_page_size:
            raise exceptions.ValidationError(
                {"page_size": [f"Must be between 1 and {self.max_page_size}."]}
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
        return message or "Invalid input.", fields
    if isinstance(detail, list):
        messages = [str(item) for item in detail]
        return "; ".join(messages), {"non_field_errors": messages}
    return str(detail), {}


def error_response(*, code: str, message: str, status_code: int, fields: dict | None = None) -> Response:
    return Response({"error": {"code": code, "message": message, "fields": fields or {}}}, status=status_code)


def exception_handler(exc, context):
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
            message="The request body is too large (the limit is 5 MB).",
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


class ConflictError(exceptions.APIException):
    status_code = status.HTTP_409_CONFLICT
    default_detail = "The request conflicts with the current state."
    default_code = "conflict"


# Django's own error pages, for requests that never reach a DRF view (a URL no route matches, such
# as /api/reservations/abc/, or a crash outside DRF): under /api/ they answer in the one error shape.
API_PREFIX = "/api/"


def page_not_found(request, exception):
    if request.path.startswith(API_PREFIX):
        return JsonResponse(
            {"error": {"code": "not_found", "message": "No such API endpoint or object.", "fields": {}}}, status=404
        )
    return defaults.page_not_found(request, exception)


def server_error(request):
    if request.path.startswith(API_PREFIX):
        return JsonResponse(
            {"error": {"code": "server_error", "message": "Something went wrong on our side; it has been logged.",
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
