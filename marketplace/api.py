"""REST API of the market: search, quotes, reservations. One class per operation; views only
validate, call one selector or service, and shape the answer (errors in config.api's one shape)."""

from django.shortcuts import get_object_or_404
from django.utils.translation import gettext as _
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_field
from rest_framework import exceptions, serializers, status
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.selectors import user_can
from config.api import Pagination
from inventory.market_selectors import offer_get
from inventory.models import Currency, SoftwareStack
from marketplace.forms import OfferSearchForm, QuoteForm
from marketplace.launch import DEFAULT_LAUNCH_TEMPLATE, launch_template_list
from marketplace.models import LaunchTemplate, Reservation
from marketplace.provisioning.selectors import reservation_connections
from marketplace.selectors import Exclusion, offer_row_get, offer_search, quote_build, reservation_get, reservation_list
from marketplace.services import (
    MAX_CARDS_PER_BOOKING,
    reservation_cancel,
    reservation_create,
    reservation_extend,
    reservation_release,
)


def _form_errors(form) -> exceptions.ValidationError:
    fields = {("non_field_errors" if name == "__all__" else name): [str(e) for e in errors] for name, errors in form.errors.items()}
    return exceptions.ValidationError(fields)


def _require_organization(request):
    organization = getattr(request, "organization", None)
    if organization is None or not user_can(user=request.user, organization=organization, action="view"):
        raise exceptions.PermissionDenied(_("Act for an organization you are a member of."))
    return organization


def _require_booker(request):
    organization = _require_organization(request)
    if not user_can(user=request.user, organization=organization, action="book"):
        raise exceptions.PermissionDenied(_("Only members of a buyer organization with booking rights can do this."))
    return organization


class MarketCapacitySerializer(serializers.Serializer):
    cards_total = serializers.IntegerField()
    cards_free = serializers.IntegerField()
    cards_booked = serializers.IntegerField()
    cards_in_maintenance = serializers.IntegerField()
    cards_not_online = serializers.IntegerField()
    cards_flagged = serializers.IntegerField()


class MarketOfferSerializer(serializers.Serializer):
    id = serializers.IntegerField(source="offer_id")
    vendor = serializers.CharField()
    accelerator_model = serializers.CharField(source="model_name")
    accelerator_model_slug = serializers.CharField(source="model_slug")
    memory_gb = serializers.IntegerField(allow_null=True)
    stack = serializers.CharField()
    ecu_per_card = serializers.DecimalField(max_digits=9, decimal_places=4, allow_null=True, help_text="null = not rated")
    price_per_card_hour_minor = serializers.IntegerField()
    price_per_ecu_hour_minor = serializers.IntegerField(
        allow_null=True, help_text="rounded half up to a whole minor unit (inventory.pricing); null = not rated")
    currency = serializers.CharField()
    min_duration_hours = serializers.IntegerField()
    max_duration_hours = serializers.IntegerField()
    owner = serializers.CharField(source="owner_name")
    site = serializers.CharField(source="site_name")
    cluster = serializers.CharField(source="cluster_name")
    cluster_id = serializers.IntegerField()
    fabric = serializers.CharField()
    country = serializers.CharField()
    province = serializers.CharField(source="province_code", allow_null=True)
    national_hub = serializers.CharField(source="hub_name", allow_null=True)
    reliability = serializers.IntegerField(
        help_text="the provider's reliability score, 0-100, over the last 30 days (see README: Failover and reliability)")
    capacity = MarketCapacitySerializer(help_text="cards of this offer in the asked window")


def _search_parameters():
    params = []
    for name, form_field in OfferSearchForm.base_fields.items():
        many = name == "stack"
        kind = OpenApiTypes.DATETIME if name in ("start", "end") else (
            OpenApiTypes.INT if name in ("min_memory_gb", "min_free_cards", "hub", "min_reliability") else OpenApiTypes.STR
        )
        enum = [choice for choice, _label in getattr(form_field, "choices", []) if choice] if name in (
            "stack", "fabric", "currency", "sort") else None
        params.append(OpenApiParameter(name, kind, many=many, enum=enum, description=str(form_field.label or name)))
    return params


class OfferSearchApi(APIView):
    pagination_class = Pagination  # read by the OpenAPI schema: the answer is a page, not a bare list

    @extend_schema(
        parameters=_search_parameters(),
        responses=MarketOfferSerializer(many=True),
        summary="Search offers, with free cards computed for the window [start, end)",
        description="Unknown parameters are refused (400). Without start/end the window is the coming hour. "
        "max_price_* are in major units of `currency` (required with them). `vendor` is matched case-insensitively "
        "against the catalog's vendor names, whole or by part (\"Huawei\" or \"HiSilicon\" find \"Huawei (HiSilicon)\"); "
        "`model` is a catalog slug or name, case-insensitively. A vendor or model the catalog does not know is a 400.",
    )
    def get(self, request):
        form = OfferSearchForm(request.query_params)
        unknown = form.unknown_parameters()
        if unknown:
            raise exceptions.ValidationError(
                {name: [_("Unknown filter. Known: %(known)s, page, page_size.") % {"known": ", ".join(sorted(form.fields))}] for name in unknown}
            )
        if not form.is_valid():
            raise _form_errors(form)
        results = offer_search(**form.search_kwargs())
        paginator = self.pagination_class()
        page = paginator.paginate_queryset(results, request, view=self)
        return paginator.get_paginated_response(MarketOfferSerializer(page, many=True).data)


class OfferDetailApi(APIView):
    @extend_schema(
        parameters=[OpenApiParameter("start", OpenApiTypes.DATETIME), OpenApiParameter("end", OpenApiTypes.DATETIME)],
        responses=MarketOfferSerializer,
        summary="One offer, with its free cards in [start, end) (default: the coming hour)",
    )
    def get(self, request, offer_id: int):
        form = OfferSearchForm({k: v for k, v in request.query_params.items() if k in ("start", "end")})
        if not form.is_valid():
            raise _form_errors(form)
        row = offer_row_get(offer_id=offer_id, start=form.cleaned_data.get("start"), end=form.cleaned_data.get("end"))
        return Response(MarketOfferSerializer(row).data)


class QuoteApi(APIView):
    class QuoteRequestSerializer(serializers.Serializer):
        cards = serializers.IntegerField(required=False, min_value=1, max_value=MAX_CARDS_PER_BOOKING)
        total_ecu = serializers.DecimalField(required=False, max_digits=12, decimal_places=4)
        min_memory_gb = serializers.IntegerField(required=False, min_value=1)
        stacks = serializers.ListField(child=serializers.ChoiceField(choices=SoftwareStack.choices), required=False)
        countries = serializers.ListField(child=serializers.CharField(max_length=2), required=False)
        provinces = serializers.ListField(child=serializers.CharField(max_length=8), required=False)
        hubs = serializers.ListField(child=serializers.IntegerField(), required=False)
        start = serializers.DateTimeField()
        end = serializers.DateTimeField(required=False)
        duration_hours = serializers.IntegerField(required=False, min_value=1)
        currency = serializers.ChoiceField(choices=Currency.choices, default=Currency.CNY)
        # Bounded so a budget always fits a PostgreSQL bigint, wherever it ends up being compared.
        max_total_price_minor = serializers.IntegerField(required=False, min_value=1, max_value=10**15)
        max_price_per_ecu_hour_minor = serializers.IntegerField(required=False, min_value=1, max_value=10**15)
        launch_template = serializers.CharField(
            required=False, max_length=64,
            help_text="a template slug (GET /api/launch-templates/): offers whose stack has no image for it are excluded")
        min_reliability = serializers.IntegerField(
            required=False, min_value=0, max_value=100,
            help_text="offers of providers whose reliability score is lower are excluded (low_reliability)")

    class QuoteReasonSerializer(serializers.Serializer):
        code = serializers.ChoiceField(choices=[(code, label) for code, label in Exclusion.LABELS.items()])
        message = serializers.CharField()

    class QuotePlacementSerializer(serializers.Serializer):
        offer = MarketOfferSerializer()
        card_count = serializers.IntegerField()
        total_price_minor = serializers.IntegerField()
        price_per_ecu_hour_minor = serializers.IntegerField(allow_null=True)
        total_ecu = serializers.DecimalField(max_digits=14, decimal_places=4, allow_null=True)

    class QuoteExcludedSerializer(serializers.Serializer):
        offer = MarketOfferSerializer()
        reasons = serializers.ListField(child=serializers.DictField())

    class QuoteSerializer(serializers.Serializer):
        start = serializers.DateTimeField()
        end = serializers.DateTimeField()
        hours = serializers.DecimalField(max_digits=10, decimal_places=4)
        currency = serializers.CharField()
        cards = serializers.IntegerField(allow_null=True)
        total_ecu = serializers.DecimalField(max_digits=12, decimal_places=4, allow_null=True)
        launch_template = serializers.CharField(allow_null=True, help_text="the template asked for (slug), null = any")
        placements = serializers.ListField(child=serializers.DictField())
        excluded = serializers.ListField(child=serializers.DictField())

    @extend_schema(request=QuoteRequestSerializer, responses=QuoteSerializer,
                   summary="Rank placements for what the job needs; every other offer with its exclusion reasons")
    def post(self, request):
        serializer = self.QuoteRequestSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = dict(serializer.validated_data)
        unknown = sorted(set(request.data) - set(self.QuoteRequestSerializer().fields)) if hasattr(request.data, "keys") else []
        if unknown:
            raise exceptions.ValidationError({name: [_("Unknown field.")] for name in unknown})
        # Re-validate with the page's form so both share one set of rules (window, cards xor ECU ...).
        form_data = {k: v for k, v in request.data.items() if k in QuoteForm.base_fields}
        form_data["countries"] = ",".join(data.get("countries", []))
        form_data["currency"] = data["currency"]  # the serializer's default (CNY) when the body leaves it out
        form = QuoteForm(form_data)
        if not form.is_valid():
            raise _form_errors(form)
        kwargs = form.quote_kwargs()
        kwargs["max_total_price_minor"] = data.get("max_total_price_minor")
        kwargs["max_price_per_ecu_hour_minor"] = data.get("max_price_per_ecu_hour_minor")
        quote = quote_build(**kwargs)
        return Response(quote_payload(quote))


def _placement_image(quote, placement) -> str | None:
    """The image the asked template runs on this placement's stack (None when no template was asked)."""
    if quote.launch_template is None:
        return None
    image = quote.launch_template.image_for(placement.offer.stack)
    return image.image if image else None


def quote_payload(quote) -> dict:
    return {
        "start": quote.start.isoformat(),
        "end": quote.end.isoformat(),
        "hours": str(quote.hours),
        "currency": quote.currency,
        "cards": quote.cards,
        "total_ecu": str(quote.total_ecu) if quote.total_ecu is not None else None,
        "launch_template": quote.launch_template.slug if quote.launch_template else None,
        "placements": [
            {
                "offer": MarketOfferSerializer(p.offer).data,
                "card_count": p.card_count,
                "total_price_minor": p.total_price_minor,
                "price_per_ecu_hour_minor": p.price_per_ecu_hour_minor,
                "total_ecu": str(p.total_ecu) if p.total_ecu is not None else None,
                "image": _placement_image(quote, p),
            }
            for p in quote.placements
        ],
        "excluded": [
            {
                "offer": MarketOfferSerializer(e.offer).data,
                "reasons": [{"code": r.code, "label": r.label, "message": r.message} for r in e.reasons],
            }
            for e in quote.excluded
        ],
    }


class ConnectionSerializer(serializers.Serializer):
    class NodeConnectionSerializer(serializers.Serializer):
        host = serializers.CharField()
        port = serializers.IntegerField()
        command = serializers.CharField(help_text="paste into a terminal")

    host = serializers.CharField(help_text="the first node's (see `nodes` for each)")
    port = serializers.IntegerField()
    user = serializers.CharField()
    command = serializers.CharField(help_text="ssh -p <port> <user>@<host>: paste into a terminal")
    nodes = NodeConnectionSerializer(many=True, help_text="one per node serving the reservation")


def connection_payload(reservation) -> dict | None:
    connections = reservation_connections(reservation=reservation)
    if not connections:
        return None
    first = connections[0]
    return {
        "host": first.host, "port": first.port, "user": first.user, "command": first.command,
        "nodes": [{"host": c.host, "port": c.port, "command": c.command} for c in connections],
    }


class MarketReservationSerializer(serializers.ModelSerializer):
    class ReservationStatusChangeSerializer(serializers.Serializer):
        from_status = serializers.CharField()
        to_status = serializers.CharField()
        actor = serializers.EmailField(source="actor.email", allow_null=True, default=None)
        reason_code = serializers.CharField(help_text="a code of marketplace.reasons (\"\" for free text); stable, for programs")
        reason_params = serializers.DictField(
            help_text="the code's parameters, raw: amounts as {minor, currency}, instants as ISO 8601 UTC")
        reason = serializers.CharField(
            source="reason_text", help_text="the reason as text: amounts formatted, times in your time zone with the zone named")
        at = serializers.DateTimeField(source="created_at")

    buyer = serializers.CharField(source="buyer.name")
    accelerator_model = serializers.CharField(source="accelerator_model.name")
    cluster = serializers.CharField(source="cluster.name")
    site = serializers.CharField(source="cluster.site.name")
    total_price_minor = serializers.IntegerField(
        help_text="requested/provisioning: the estimate for the booked window (price_is_estimate); failed/cancelled: 0; "
                  "otherwise the service periods (from active_from, moves' gaps left out) at the locked price")
    price_is_estimate = serializers.BooleanField()
    price_per_ecu_hour_minor = serializers.IntegerField(allow_null=True)
    timeline = ReservationStatusChangeSerializer(source="status_changes", many=True)
    launch_template = serializers.SlugRelatedField(
        slug_field="slug", read_only=True, help_text="the workload (template slug); null only on bookings made before templates")
    image = serializers.CharField(source="launch_image.image", allow_null=True, default=None,
                                  help_text="the container image that runs on these cards (null: none)")
    accepted_alternatives = serializers.SlugRelatedField(
        many=True, slug_field="name", read_only=True,
        help_text="other models (catalog names) failover may move this reservation to when none of its own is free")
    downtime = serializers.SerializerMethodField(help_text="outages from node failures: node, started_at (its last heartbeat), "
                                                         "ended_at (null until served again), cause")

    def get_downtime(self, reservation) -> list[dict]:
        return [
            {"node": d.node.hostname, "started_at": d.started_at, "ended_at": d.ended_at, "cause": d.cause}
            for d in reservation.downtimes.all()
        ]

    connection = serializers.SerializerMethodField(
        help_text="how to reach the machines: only while active (or migrating with a running node), null otherwise")

    @extend_schema_field(ConnectionSerializer(allow_null=True))
    def get_connection(self, reservation) -> dict | None:
        return connection_payload(reservation)

    class Meta:
        model = Reservation
        fields = [
            "id", "buyer", "offer", "accelerator_model", "cluster", "site", "card_count", "launch_template", "image",
            "start", "end", "booked_end",
            "released_at", "status", "price_per_card_hour_minor", "currency", "ecu_per_card", "price_per_ecu_hour_minor",
            "total_price_minor", "price_is_estimate", "active_from", "active_to", "created_at", "connection", "timeline",
            "accepted_alternatives", "downtime",
        ]


class ReservationListCreateApi(APIView):
    pagination_class = Pagination  # read by the OpenAPI schema: the list answer is a page, not a bare list

    class BookingRequestSerializer(serializers.Serializer):
        offer = serializers.IntegerField()
        card_count = serializers.IntegerField(min_value=1, max_value=MAX_CARDS_PER_BOOKING)
        start = serializers.DateTimeField()
        end = serializers.DateTimeField()  # the window's rules: marketplace.windows, applied by reservation_create
        launch_template = serializers.CharField(
            required=False, max_length=64, default=DEFAULT_LAUNCH_TEMPLATE,
            help_text=f"the workload, a template slug (GET /api/launch-templates/); \"{DEFAULT_LAUNCH_TEMPLATE}\" when left out. "
            "The offer's software stack must have an image for it (400 on launch_template otherwise).")
        accepted_alternatives = serializers.ListField(
            child=serializers.CharField(max_length=128), required=False, default=list, max_length=20,
            help_text="other accelerator models (catalog names as in quotes, or slugs) that failover may move the "
                      "reservation to, same card count and price, when none of the booked model is free; [] = none")

    @extend_schema(responses=MarketReservationSerializer(many=True), summary="My organization's reservations")
    def get(self, request):
        organization = _require_organization(request)
        reservations = reservation_list(organization=organization).prefetch_related("status_changes__actor")
        paginator = self.pagination_class()
        page = paginator.paginate_queryset(reservations, request, view=self)
        return paginator.get_paginated_response(MarketReservationSerializer(page, many=True).data)

    @extend_schema(
        request=BookingRequestSerializer,
        responses={201: MarketReservationSerializer, 200: MarketReservationSerializer},
        parameters=[OpenApiParameter("Idempotency-Key", OpenApiTypes.STR, OpenApiParameter.HEADER,
                                     description="The same key with the same body returns the same reservation (200).")],
        summary="Book cards of an offer for [start, end) at today's price (409 if they are not free)",
    )
    def post(self, request):
        organization = _require_booker(request)
        serializer = self.BookingRequestSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        unknown = sorted(set(request.data) - set(serializer.fields)) if hasattr(request.data, "keys") else []
        if unknown:
            raise exceptions.ValidationError({name: [_("Unknown field.")] for name in unknown})
        offer = offer_get(offer_id=data["offer"])
        if offer is None:
            raise exceptions.ValidationError({"offer": [_("No such offer.")]})
        # BookingConflict, InsufficientCapacity, IdempotencyKeyReused and ValidationError answer through
        # config.api's one exception handler (409 / 409 / 422 / 400).
        reservation, created = reservation_create(
            organization=organization, created_by=request.user, offer=offer, card_count=data["card_count"],
            start=data["start"], end=data["end"], idempotency_key=request.headers.get("Idempotency-Key", ""),
            launch_template=data["launch_template"], accepted_alternatives=data["accepted_alternatives"],
        )
        reservation = reservation_get(organization=organization, reservation_id=reservation.pk)
        return Response(MarketReservationSerializer(reservation).data,
                        status=status.HTTP_201_CREATED if created else status.HTTP_200_OK)


class ReservationDetailApi(APIView):
    @extend_schema(responses=MarketReservationSerializer, summary="One of my organization's reservations, with its timeline")
    def get(self, request, reservation_id: int):
        organization = _require_organization(request)
        return Response(MarketReservationSerializer(reservation_get(organization=organization, reservation_id=reservation_id)).data)


class _ReservationActionApi(APIView):
    def _run(self, request, reservation_id: int, action):
        organization = _require_booker(request)
        reservation = get_object_or_404(reservation_list(organization=organization), pk=reservation_id)
        action(reservation)  # its domain errors answer through config.api's exception handler
        return Response(MarketReservationSerializer(reservation_get(organization=organization, reservation_id=reservation_id)).data)


class ReservationCancelApi(_ReservationActionApi):
    @extend_schema(request=None, responses=MarketReservationSerializer, summary="Cancel before the start (nothing to pay)")
    def post(self, request, reservation_id: int):
        return self._run(request, reservation_id, lambda r: reservation_cancel(reservation=r, actor=request.user))


class ReservationReleaseApi(_ReservationActionApi):
    @extend_schema(request=None, responses=MarketReservationSerializer, summary="Release early, after the start (billing ends now)")
    def post(self, request, reservation_id: int):
        return self._run(request, reservation_id, lambda r: reservation_release(reservation=r, actor=request.user))


class ReservationExtendApi(_ReservationActionApi):
    class ExtendRequestSerializer(serializers.Serializer):
        end = serializers.DateTimeField()

    @extend_schema(request=ExtendRequestSerializer, responses=MarketReservationSerializer,
                   summary="Keep the same cards until a later end (409 if they are not free)")
    def post(self, request, reservation_id: int):
        serializer = self.ExtendRequestSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        end = serializer.validated_data["end"]
        return self._run(request, reservation_id, lambda r: reservation_extend(reservation=r, end=end, actor=request.user))


class LaunchTemplateSerializer(serializers.ModelSerializer):
    class LaunchTemplateImageSerializer(serializers.Serializer):
        stack = serializers.CharField(help_text="an inventory software stack (cuda, rocm, cann, ...)")
        image = serializers.CharField(help_text="the container image reference")
        notes = serializers.CharField()

    images = LaunchTemplateImageSerializer(many=True, help_text="one per stack that can run it; an offer of another stack cannot")

    class Meta:
        model = LaunchTemplate
        fields = ["slug", "name", "description", "workload_kind", "images"]


class LaunchTemplateListApi(APIView):
    @extend_schema(responses=LaunchTemplateSerializer(many=True),
                   summary="The workloads a buyer can book, with the container image per software stack")
    def get(self, request):
        # A catalog, the same for everyone signed in (the default IsAuthenticated): no organization needed.
        return Response(LaunchTemplateSerializer(launch_template_list(), many=True).data)
