"""REST API of billing, read-only: invoices (with lines) and credit notes, to their buyer's members who
may see finances (owner, admin, finance viewer), and all of them to platform finance staff. A buyer
sees an invoice only once it is issued (numbered at approval); drafts are finance's work in progress."""

from django.utils.translation import gettext as _
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import exceptions, serializers
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.selectors import user_can, user_is_finance_staff
from billing.declines import decline_reason
from billing.models import CreditNote, Invoice, InvoiceLine, InvoiceLineEvidence, PaymentAttempt, Payout
from billing.selectors import (
    credit_note_list,
    invoice_evidence_list,
    invoice_get,
    invoice_list,
    payment_attempt_list,
    payout_list,
)
from config.api import Pagination


def _scope(request):
    """None: every organization's (finance staff); else the organization whose finances the user may read."""
    if user_is_finance_staff(user=request.user):
        return None
    organization = getattr(request, "organization", None)
    if organization is None or not user_can(user=request.user, organization=organization, action="view_finance"):
        raise exceptions.PermissionDenied(_("Only owners, admins and finance viewers of the organization can read its invoices."))
    return organization


class InvoiceLineSerializer(serializers.ModelSerializer):
    reservation = serializers.IntegerField(source="reservation_id")
    provider = serializers.CharField(source="provider.name")

    class Meta:
        model = InvoiceLine
        fields = ["id", "reservation", "provider", "kind", "period_start", "period_end", "card_seconds", "price_per_card_hour_minor",
                  "amount_minor"]


class CreditNoteSerializer(serializers.ModelSerializer):
    number = serializers.CharField(source="display_number")
    invoice = serializers.IntegerField(source="invoice_id")

    class Meta:
        model = CreditNote
        fields = ["id", "number", "invoice", "currency", "amount_minor", "reason", "created_at"]


class InvoiceSerializer(serializers.ModelSerializer):
    number = serializers.CharField(source="display_number")
    buyer = serializers.CharField(source="buyer.name")
    total_minor = serializers.IntegerField(help_text="the sum of the lines (charges positive, SLA credits negative), minor units")
    lines = InvoiceLineSerializer(many=True)
    credit_notes = CreditNoteSerializer(many=True)
    payment_error = serializers.CharField(help_text='why the last payment attempt failed, in words for the buyer ("" = none failed, or paid)')

    class Meta:
        model = Invoice
        fields = ["id", "number", "buyer", "currency", "period_start", "period_end", "status", "total_minor", "approved_at", "lines",
                  "credit_notes", "payment_error"]


class InvoiceListApi(APIView):
    pagination_class = Pagination

    @extend_schema(responses=InvoiceSerializer(many=True), summary="Invoices of my organization (finance staff: all), newest first")
    def get(self, request):
        invoices = invoice_list(organization=_scope(request), viewer_is_finance=user_is_finance_staff(user=request.user))
        paginator = self.pagination_class()
        page = paginator.paginate_queryset(invoices, request, view=self)
        return paginator.get_paginated_response(InvoiceSerializer(page, many=True).data)


class InvoiceDetailApi(APIView):
    @extend_schema(responses=InvoiceSerializer, summary="One invoice with its lines and credit notes")
    def get(self, request, invoice_id: int):
        invoice = invoice_get(organization=_scope(request), viewer_is_finance=user_is_finance_staff(user=request.user), invoice_id=invoice_id)
        return Response(InvoiceSerializer(invoice).data)


class CreditNoteListApi(APIView):
    pagination_class = Pagination

    @extend_schema(responses=CreditNoteSerializer(many=True), summary="Credit notes of my organization (finance staff: all)")
    def get(self, request):
        paginator = self.pagination_class()
        page = paginator.paginate_queryset(credit_note_list(organization=_scope(request)), request, view=self)
        return paginator.get_paginated_response(CreditNoteSerializer(page, many=True).data)


class InvoiceEvidenceListApi(APIView):
    """Why each charge line says what it says: per device and hour, the billable seconds beside the
    sampled usage of the hourly rollup (samples 0 and nulls: no sample arrived for that hour)."""

    pagination_class = Pagination

    class EvidenceSerializer(serializers.ModelSerializer):
        line = serializers.IntegerField(source="line_id")

        class Meta:
            model = InvoiceLineEvidence
            fields = ["line", "device_id", "hour", "billable_seconds", "samples", "busy_seconds", "utilization_mean"]

    class FilterSerializer(serializers.Serializer):
        # ids are bigints: a larger number is a 400 here, never an overflow in PostgreSQL
        invoice = serializers.IntegerField(required=False, min_value=1, max_value=2**63 - 1)
        line = serializers.IntegerField(required=False, min_value=1, max_value=2**63 - 1)

    @extend_schema(
        responses=EvidenceSerializer(many=True), summary="Device-hours behind my organization's invoice lines",
        parameters=[OpenApiParameter("invoice", OpenApiTypes.INT, description="only this invoice's lines"),
                    OpenApiParameter("line", OpenApiTypes.INT, description="only this line")],
    )
    def get(self, request):
        filters = self.FilterSerializer(data=request.query_params)
        filters.is_valid(raise_exception=True)
        evidence = invoice_evidence_list(organization=_scope(request), viewer_is_finance=user_is_finance_staff(user=request.user),
                                         invoice_id=filters.validated_data.get("invoice"), line_id=filters.validated_data.get("line"))
        paginator = self.pagination_class()
        page = paginator.paginate_queryset(evidence, request, view=self)
        return paginator.get_paginated_response(self.EvidenceSerializer(page, many=True).data)


class PaymentAttemptListApi(APIView):
    """Each try at collecting an invoice through Stripe: its status and, when declined, Stripe's code and reason."""

    pagination_class = Pagination

    class PaymentAttemptSerializer(serializers.ModelSerializer):
        invoice = serializers.IntegerField(source="invoice_id")
        failure_message = serializers.SerializerMethodField(
            help_text="why it failed, in our words for decline_code in the request's language (Accept-Language); "
                      "failure_reason is Stripe's own message, as Stripe wrote it; \"\" unless failed")

        class Meta:
            model = PaymentAttempt
            fields = ["id", "invoice", "attempt", "status", "amount_minor", "currency", "decline_code", "failure_message", "failure_reason",
                      "created_at", "updated_at"]

        def get_failure_message(self, attempt: PaymentAttempt) -> str:
            return decline_reason(code=attempt.decline_code) if attempt.status == PaymentAttempt.Status.FAILED else ""

    class FilterSerializer(serializers.Serializer):
        invoice = serializers.IntegerField(required=False, min_value=1, max_value=2**63 - 1)

    @extend_schema(responses=PaymentAttemptSerializer(many=True), summary="Payment attempts on my organization's invoices",
                   parameters=[OpenApiParameter("invoice", OpenApiTypes.INT, description="only this invoice's attempts")])
    def get(self, request):
        filters = self.FilterSerializer(data=request.query_params)
        filters.is_valid(raise_exception=True)
        attempts = payment_attempt_list(organization=_scope(request), viewer_is_finance=user_is_finance_staff(user=request.user),
                                        invoice_id=filters.validated_data.get("invoice"))
        paginator = self.pagination_class()
        page = paginator.paginate_queryset(attempts, request, view=self)
        return paginator.get_paginated_response(self.PaymentAttemptSerializer(page, many=True).data)


class PayoutListApi(APIView):
    """Payouts to my (provider) organization: its share of paid invoices, sent as Stripe Connect transfers."""

    pagination_class = Pagination

    class PayoutSerializer(serializers.ModelSerializer):
        invoice = serializers.IntegerField(source="invoice_id")
        invoice_number = serializers.CharField(source="invoice.display_number")
        provider = serializers.IntegerField(source="provider_id")

        class Meta:
            model = Payout
            fields = ["id", "provider", "invoice", "invoice_number", "attempt", "status", "amount_minor", "currency", "stripe_transfer_id",
                      "failure_reason", "created_at", "updated_at"]

    @extend_schema(responses=PayoutSerializer(many=True), summary="Payouts to my organization (finance staff: all), newest first")
    def get(self, request):
        paginator = self.pagination_class()
        page = paginator.paginate_queryset(payout_list(organization=_scope(request)), request, view=self)
        return paginator.get_paginated_response(self.PayoutSerializer(page, many=True).data)
