"""REST API of a provider's inventory (mounted under /api/): sites, clusters, nodes, offers, maintenance
windows, and the CSV import of nodes.

Every list and object is scoped to the organization the caller acts for (its API token's organization,
or the session's active organization): another organization's object answers 404, exactly like one
that does not exist. Reading needs the "view" permission, writing "manage_inventory" (a provider
organization). Nothing is ever deleted: POST .../retire/ takes an object off the market and keeps
its history. The views only translate HTTP to inventory.services / inventory.selectors calls.
"""

from django.core.exceptions import RequestDataTooBig
from django.db.backends.postgresql.psycopg_any import DateTimeTZRange
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from django_filters import rest_framework as filters
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import (
    OpenApiResponse,
    extend_schema,
    extend_schema_field,
    extend_schema_view,
    inline_serializer,
)
from rest_framework import parsers, permissions, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import ValidationError
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.selectors import user_can
from config.api import StrictBooleanFilter, error_response
from inventory import selectors, services
from inventory.importers import NODE_IMPORT_MAX_BYTES
from inventory.models import AcceleratorModel, Cluster, Currency, MaintenanceWindow, Node, Offer, Province, Site

# ---------------------------------------------------------------------------------------------
# Shared pieces
# ---------------------------------------------------------------------------------------------


class InventoryPermission(permissions.BasePermission):
    """Reads need "view" in the caller's organization, writes "manage_inventory" (provider organizations)."""

    message = gettext_lazy("Your role in this organization does not allow this.")

    def has_permission(self, request, view):
        if not request.user or not request.user.is_authenticated:
            return False
        organization = getattr(request, "organization", None)
        if organization is None:
            self.message = _("You act for no organization.")
            return False
        action_name = "view" if request.method in permissions.SAFE_METHODS else "manage_inventory"
        if not user_can(user=request.user, organization=organization, action=action_name):
            self.message = (
                _("Only members of a provider organization with an editing role can change inventory.")
                if action_name == "manage_inventory"
                else self.message
            )
            return False
        return True


class InventoryApiMixin:
    permission_classes = [permissions.IsAuthenticated, InventoryPermission]
    selector = None  # organization -> queryset of the caller's objects

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):  # schema generation: no request, no organization
            return self.serializer_class.Meta.model.objects.none()
        return type(self).selector(organization=self.request.organization)


class OwnedPrimaryKeyField(serializers.PrimaryKeyRelatedField):
    """A reference to one of the caller's own objects; another organization's id reads as "does not exist"."""

    def __init__(self, *, selector, **kwargs):
        self.selector = selector
        super().__init__(**kwargs)

    def get_queryset(self):
        request = self.context.get("request")
        return self.selector(organization=getattr(request, "organization", None))


@extend_schema_field(OpenApiTypes.STR)
class AcceleratorModelField(serializers.RelatedField):
    """A catalog model by slug ("nvidia-h100-sxm5-80gb") or name ("H100 SXM5 80GB"), any case."""

    default_error_messages = {
        # Translators: {value} is what the client sent; keep the braces.
        "unknown": gettext_lazy("Unknown accelerator model '{value}': use a catalog slug (e.g. nvidia-h100-sxm5-80gb) or name."),
        "invalid": gettext_lazy("Give the accelerator model's slug or name as text (printable characters)."),
    }

    def __init__(self, **kwargs):
        kwargs.setdefault("queryset", AcceleratorModel.objects.all())
        super().__init__(**kwargs)

    def to_internal_value(self, data):
        if not isinstance(data, str) or not data.strip() or not data.isprintable():
            # isprintable(): a NUL byte would reach the database (which refuses it) as a 500.
            self.fail("invalid")
        value = data.strip()
        model = (
            self.get_queryset().filter(slug__iexact=value).first()
            or self.get_queryset().filter(name__iexact=value).first()
        )
        if model is None:
            self.fail("unknown", value=value[:80])
        return model

    def to_representation(self, value):
        return value.slug


@extend_schema_field(
    {"type": "string", "enum": Node.Status.values, "description": "registered, online, maintenance, unhealthy, offline or retired."},
    component_name="NodeStatus",
)
class NodeStatusField(serializers.ChoiceField):
    """The node state machine's status, documented inline (another app's "status" enum has the same name)."""

    def __init__(self, **kwargs):
        super().__init__(choices=Node.Status.choices, **kwargs)


def _changes(validated: dict, allowed: tuple[str, ...]) -> dict:
    return {key: value for key, value in validated.items() if key in allowed}


_DATETIME = serializers.DateTimeField(allow_null=True)
# Range bounds are exposed as two plain date-times (DRF has no range field).
extend_schema_field_datetime = extend_schema_field(serializers.DateTimeField(allow_null=True))


def _iso(value):
    return None if value is None else _DATETIME.to_representation(value)


# Retiring (or blacking out) capacity that confirmed reservations still use is refused.
CAPACITY_BOOKED = OpenApiResponse(
    description="Confirmed reservations still use these cards (code capacity_booked): the message says how many and until when."
)


def _range_bounds(period: DateTimeTZRange | None):
    if period is None:
        return None, None
    return period.lower, period.upper


# ---------------------------------------------------------------------------------------------
# Sites
# ---------------------------------------------------------------------------------------------


class SiteOutputSerializer(serializers.ModelSerializer):
    province = serializers.SlugRelatedField(slug_field="code", read_only=True, allow_null=True)
    province_name = serializers.CharField(source="province.name", read_only=True, allow_null=True, default=None)
    national_hub = serializers.CharField(source="province.hub.name", read_only=True, allow_null=True, default=None)
    hub_cluster = serializers.CharField(source="province.hub_cluster", read_only=True, allow_null=True, default=None)
    is_rentable = serializers.SerializerMethodField(help_text="Only online sites rent capacity; planned and under-construction sites are the pipeline.")

    class Meta:
        model = Site
        fields = [
            "id", "name", "country", "province", "province_name", "national_hub", "hub_cluster", "city", "lifecycle",
            "is_rentable", "power_capacity_mw", "pue", "certifications", "created_at", "updated_at",
        ]

    def get_is_rentable(self, site) -> bool:
        return site.lifecycle == Site.Lifecycle.ONLINE


class SiteInputSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=200)
    country = serializers.CharField(min_length=2, max_length=2, default="CN")
    province = serializers.SlugRelatedField(
        slug_field="code", queryset=Province.objects.all(), required=False, allow_null=True,
        help_text="ISO 3166-2 code of a province (e.g. CN-GZ); its national hub follows from the regions data.",
    )
    city = serializers.CharField(max_length=100, required=False, allow_blank=True, default="")
    lifecycle = serializers.ChoiceField(
        choices=Site.Lifecycle.choices, required=False,
        help_text="On create: planned (default), under_construction or online. On update: moves along planned -> under_construction -> online -> retired (audited).",
    )
    power_capacity_mw = serializers.DecimalField(max_digits=8, decimal_places=2, min_value=0, required=False, allow_null=True)
    pue = serializers.DecimalField(max_digits=4, decimal_places=2, min_value=1, max_value=3, required=False, allow_null=True)
    certifications = serializers.ListField(child=serializers.CharField(max_length=64), required=False, max_length=30)


def _own(selector):
    """A filter's choices: the caller's own objects only, so another organization's id is refused
    exactly like an id that does not exist (a 200 with no rows would tell that it exists)."""

    def queryset(request):
        return selector(organization=getattr(request, "organization", None))

    return queryset


class SiteFilter(filters.FilterSet):
    lifecycle = filters.ChoiceFilter(choices=Site.Lifecycle.choices)
    province = filters.CharFilter(field_name="province__code")

    class Meta:
        model = Site
        fields = ["lifecycle", "province"]


@extend_schema_view(
    list=extend_schema(summary="Your sites (data centers)", responses=SiteOutputSerializer(many=True)),
    retrieve=extend_schema(summary="One of your sites", responses=SiteOutputSerializer),
    create=extend_schema(summary="List a site", request=SiteInputSerializer, responses={201: SiteOutputSerializer}),
    partial_update=extend_schema(summary="Change a site (a lifecycle change is audited)", request=SiteInputSerializer, responses=SiteOutputSerializer),
    retire=extend_schema(summary="Retire a site (never deleted)", request=None, responses={200: SiteOutputSerializer, 409: CAPACITY_BOOKED}),
)
class SiteViewSet(InventoryApiMixin, viewsets.GenericViewSet):
    serializer_class = SiteOutputSerializer
    filterset_class = SiteFilter
    http_method_names = ["get", "post", "patch", "head", "options"]

    selector = selectors.site_list

    def list(self, request):
        page = self.paginate_queryset(self.filter_queryset(self.get_queryset()))
        return self.get_paginated_response(SiteOutputSerializer(page, many=True).data)

    def retrieve(self, request, pk=None):
        return Response(SiteOutputSerializer(self.get_object()).data)

    def create(self, request):
        data = SiteInputSerializer(data=request.data, context={"request": request})
        data.is_valid(raise_exception=True)
        site = services.site_create(owner=request.organization, actor=request.user, **data.validated_data)
        return Response(SiteOutputSerializer(site).data, status=status.HTTP_201_CREATED)

    def partial_update(self, request, pk=None):
        site = self.get_object()
        data = SiteInputSerializer(data=request.data, partial=True, context={"request": request})
        data.is_valid(raise_exception=True)
        changes = dict(data.validated_data)
        lifecycle = changes.pop("lifecycle", None)
        site = services.site_update(site=site, actor=request.user, lifecycle=lifecycle, **changes)
        return Response(SiteOutputSerializer(site).data)

    @action(detail=True, methods=["post"])
    def retire(self, request, pk=None):
        site = services.site_retire(site=self.get_object(), actor=request.user)
        return Response(SiteOutputSerializer(site).data)


# ---------------------------------------------------------------------------------------------
# Clusters
# ---------------------------------------------------------------------------------------------


class ClusterOutputSerializer(serializers.ModelSerializer):
    site_name = serializers.CharField(source="site.name", read_only=True)

    class Meta:
        model = Cluster
        fields = ["id", "site", "site_name", "name", "fabric", "fabric_bandwidth_gbps", "created_at"]


class ClusterInputSerializer(serializers.Serializer):
    site = OwnedPrimaryKeyField(selector=selectors.site_list, queryset=Site.objects.all(), help_text="One of your sites.")
    name = serializers.CharField(max_length=100)
    fabric = serializers.ChoiceField(choices=Cluster.Fabric.choices, help_text="The scale-out fabric the nodes share.")
    fabric_bandwidth_gbps = serializers.IntegerField(min_value=1, max_value=51200, help_text="Per node, in Gbit/s.")


class ClusterFilter(filters.FilterSet):
    site = filters.ModelChoiceFilter(queryset=_own(selectors.site_list))

    class Meta:
        model = Cluster
        fields = ["site", "fabric"]


@extend_schema_view(
    list=extend_schema(summary="Your clusters", responses=ClusterOutputSerializer(many=True)),
    retrieve=extend_schema(summary="One of your clusters", responses=ClusterOutputSerializer),
    create=extend_schema(summary="Add a cluster to a site", request=ClusterInputSerializer, responses={201: ClusterOutputSerializer}),
    partial_update=extend_schema(summary="Change a cluster", request=ClusterInputSerializer, responses=ClusterOutputSerializer),
    retire=extend_schema(
        summary="Retire a cluster: retires its nodes and withdraws its offers", request=None,
        responses={200: ClusterOutputSerializer, 409: CAPACITY_BOOKED},
    ),
)
class ClusterViewSet(InventoryApiMixin, viewsets.GenericViewSet):
    serializer_class = ClusterOutputSerializer
    filterset_class = ClusterFilter
    http_method_names = ["get", "post", "patch", "head", "options"]

    selector = selectors.cluster_list

    def list(self, request):
        page = self.paginate_queryset(self.filter_queryset(self.get_queryset()))
        return self.get_paginated_response(ClusterOutputSerializer(page, many=True).data)

    def retrieve(self, request, pk=None):
        return Response(ClusterOutputSerializer(self.get_object()).data)

    def create(self, request):
        data = ClusterInputSerializer(data=request.data, context={"request": request})
        data.is_valid(raise_exception=True)
        cluster = services.cluster_create(actor=request.user, **data.validated_data)
        return Response(ClusterOutputSerializer(cluster).data, status=status.HTTP_201_CREATED)

    def partial_update(self, request, pk=None):
        cluster = self.get_object()
        data = ClusterInputSerializer(data=request.data, partial=True, context={"request": request})
        data.is_valid(raise_exception=True)
        if "site" in data.validated_data:
            raise ValidationError({"site": [_("A cluster cannot move to another site.")]})
        cluster = services.cluster_update(cluster=cluster, actor=request.user, **data.validated_data)
        return Response(ClusterOutputSerializer(cluster).data)

    @action(detail=True, methods=["post"])
    def retire(self, request, pk=None):
        cluster = services.cluster_retire(cluster=self.get_object(), actor=request.user)
        return Response(ClusterOutputSerializer(cluster).data)


# ---------------------------------------------------------------------------------------------
# Nodes
# ---------------------------------------------------------------------------------------------


class NodeOutputSerializer(serializers.ModelSerializer):
    status = NodeStatusField(read_only=True)
    site = serializers.IntegerField(source="cluster.site_id", read_only=True)
    accelerator_model = serializers.SlugRelatedField(slug_field="slug", read_only=True)
    accelerator_model_name = serializers.CharField(source="accelerator_model.name", read_only=True)

    class Meta:
        model = Node
        fields = [
            "id", "cluster", "site", "hostname", "accelerator_model", "accelerator_model_name", "card_count",
            "cpu_model", "cpu_cores", "ram_gb", "disk_gb", "status", "last_heartbeat_at", "mismatch_reason",
            "created_at", "updated_at",
        ]


class NodeInputSerializer(serializers.Serializer):
    cluster = OwnedPrimaryKeyField(selector=selectors.cluster_list, queryset=Cluster.objects.all(), help_text="One of your clusters.")
    hostname = serializers.CharField(max_length=253)
    accelerator_model = AcceleratorModelField(help_text="Catalog slug or name, e.g. nvidia-h100-sxm5-80gb.")
    card_count = serializers.IntegerField(min_value=1, max_value=64)
    cpu_model = serializers.CharField(max_length=120, required=False, allow_blank=True, default="")
    cpu_cores = serializers.IntegerField(min_value=1, max_value=4096)
    ram_gb = serializers.IntegerField(min_value=1, max_value=65536)
    disk_gb = serializers.IntegerField(min_value=1, max_value=10_000_000)
    status = NodeStatusField(
        required=False,
        help_text="Update only: moves through the node state machine (audited). New nodes start 'registered'.",
    )


class NodeFilter(filters.FilterSet):
    cluster = filters.ModelChoiceFilter(queryset=_own(selectors.cluster_list))
    site = filters.NumberFilter(field_name="cluster__site_id")
    accelerator_model = filters.CharFilter(field_name="accelerator_model__slug")
    hostname = filters.CharFilter(lookup_expr="icontains")

    class Meta:
        model = Node
        fields = ["cluster", "site", "status", "accelerator_model", "hostname"]


@extend_schema_view(
    list=extend_schema(summary="Your nodes", responses=NodeOutputSerializer(many=True)),
    retrieve=extend_schema(summary="One of your nodes", responses=NodeOutputSerializer),
    create=extend_schema(summary="List a node (its devices are created with it)", request=NodeInputSerializer, responses={201: NodeOutputSerializer}),
    partial_update=extend_schema(summary="Change a node (model and card count are fixed)", request=NodeInputSerializer, responses=NodeOutputSerializer),
    retire=extend_schema(summary="Retire a node (never deleted)", request=None, responses={200: NodeOutputSerializer, 409: CAPACITY_BOOKED}),
)
class NodeViewSet(InventoryApiMixin, viewsets.GenericViewSet):
    serializer_class = NodeOutputSerializer
    filterset_class = NodeFilter
    http_method_names = ["get", "post", "patch", "head", "options"]

    selector = selectors.node_list

    def list(self, request):
        page = self.paginate_queryset(self.filter_queryset(self.get_queryset()))
        return self.get_paginated_response(NodeOutputSerializer(page, many=True).data)

    def retrieve(self, request, pk=None):
        return Response(NodeOutputSerializer(self.get_object()).data)

    def create(self, request):
        data = NodeInputSerializer(data=request.data, context={"request": request})
        data.is_valid(raise_exception=True)
        fields = dict(data.validated_data)
        if fields.pop("status", None) not in (None, Node.Status.REGISTERED):
            raise ValidationError({"status": [_("A new node starts 'registered'; its agent brings it online.")]})
        node = services.node_create(actor=request.user, **fields)
        return Response(NodeOutputSerializer(node).data, status=status.HTTP_201_CREATED)

    def partial_update(self, request, pk=None):
        node = self.get_object()
        data = NodeInputSerializer(data=request.data, partial=True, context={"request": request})
        data.is_valid(raise_exception=True)
        changes = dict(data.validated_data)
        node_status = changes.pop("status", None)
        node = services.node_update(node=node, actor=request.user, status=node_status, **changes)
        return Response(NodeOutputSerializer(node).data)

    @action(detail=True, methods=["post"])
    def retire(self, request, pk=None):
        node = services.node_retire(node=self.get_object(), actor=request.user)
        return Response(NodeOutputSerializer(node).data)


class CsvUploadParser(parsers.BaseParser):
    """A raw `text/csv` body, read up to the import limit (+1 byte, to detect a larger one)."""

    media_type = "text/csv"

    def parse(self, stream, media_type=None, parser_context=None):
        return {"csv": stream.read(NODE_IMPORT_MAX_BYTES + 1) if stream is not None else b""}


class NodeImportResultSerializer(serializers.Serializer):
    imported = serializers.IntegerField(help_text="Nodes created.")
    devices = serializers.IntegerField(help_text="Devices (cards) created with them.")


class NodeImportApi(InventoryApiMixin, APIView):
    """Bulk import of nodes from CSV (format in inventory/importers.py): all or nothing."""

    parser_classes = [parsers.MultiPartParser, CsvUploadParser]

    @extend_schema(
        summary="Import nodes from CSV (all rows valid, or nothing is imported)",
        description=(
            "Send the file as multipart field `file`, or the CSV itself as a `text/csv` body. Header: "
            "`hostname,cluster,accelerator_model,card_count,cpu_cores,ram_gb,disk_gb[,cpu_model]`. "
            "A bad file answers 400 with one field per bad row: `{\"row 7\": [\"accelerator_model: unknown ...\"]}`."
        ),
        request={
            "multipart/form-data": inline_serializer("NodeImportUpload", fields={"file": serializers.FileField()}),
            "text/csv": OpenApiTypes.BINARY,
        },
        responses={
            201: NodeImportResultSerializer,
            400: OpenApiResponse(description="The file or some rows are invalid; nothing was imported."),
            413: OpenApiResponse(description="The file is larger than 5 MB."),
        },
    )
    def post(self, request):
        try:
            declared = int(request.META.get("CONTENT_LENGTH") or 0)
        except ValueError:
            declared = 0
        if declared > NODE_IMPORT_MAX_BYTES + 64 * 1024:  # refuse before reading it
            return self._too_large()
        try:
            upload = request.data.get("file") if "file" in request.data else None
            raw = request.data.get("csv")
        except RequestDataTooBig:
            return self._too_large()
        if upload is not None:
            if getattr(upload, "size", 0) > NODE_IMPORT_MAX_BYTES:
                return self._too_large()
            raw = upload.read(NODE_IMPORT_MAX_BYTES + 1)
        if raw is None:
            raise ValidationError({"file": [_("Send the CSV as multipart field 'file' or as a text/csv body.")]})
        if len(raw) > NODE_IMPORT_MAX_BYTES:
            return self._too_large()
        # a bad file (NodeImportInvalid) answers 400 with one field per bad row, through config.api's handler
        nodes = services.nodes_import_csv(organization=request.organization, data=raw, actor=request.user)
        payload = {"imported": len(nodes), "devices": sum(node.card_count for node in nodes)}
        return Response(NodeImportResultSerializer(payload).data, status=status.HTTP_201_CREATED)

    def _too_large(self):
        limit = NODE_IMPORT_MAX_BYTES // 1024 // 1024
        return error_response(
            code="too_large", message=_("The file is larger than %(limit)d MB; nothing was imported.") % {"limit": limit},
            fields={"file": [_("At most %(limit)d MB.") % {"limit": limit}]}, status_code=status.HTTP_413_REQUEST_ENTITY_TOO_LARGE,
        )


# ---------------------------------------------------------------------------------------------
# Offers
# ---------------------------------------------------------------------------------------------


class OfferOutputSerializer(serializers.ModelSerializer):
    site = serializers.IntegerField(source="cluster.site_id", read_only=True)
    accelerator_model = serializers.SlugRelatedField(slug_field="slug", read_only=True)
    accelerator_model_name = serializers.CharField(source="accelerator_model.name", read_only=True)
    price_per_card_hour = serializers.SerializerMethodField(help_text="Major units (yuan / dollars), 2 decimals.")
    price_per_ecu_hour = serializers.SerializerMethodField(
        help_text="Price per ECU-hour (1 ECU = 1 PFLOP/s dense BF16), major units; null = the card is not rated."
    )
    ecu_per_card = serializers.DecimalField(source="accelerator_model.ecu_per_card", max_digits=9, decimal_places=4, read_only=True, allow_null=True)
    rentable_from = serializers.SerializerMethodField()
    rentable_until = serializers.SerializerMethodField()

    class Meta:
        model = Offer
        fields = [
            "id", "cluster", "site", "accelerator_model", "accelerator_model_name", "price_per_card_hour_minor",
            "price_per_card_hour", "currency", "ecu_per_card", "price_per_ecu_hour", "min_duration_hours",
            "max_duration_hours", "rentable_from", "rentable_until", "is_active", "created_at", "updated_at",
        ]

    def get_price_per_card_hour(self, offer) -> str:
        return str(services.price_minor_to_major(offer.price_per_card_hour_minor))

    def get_price_per_ecu_hour(self, offer) -> str | None:
        minor = services.price_per_ecu_hour_minor(
            price_per_card_hour_minor=offer.price_per_card_hour_minor, ecu_per_card=offer.accelerator_model.ecu_per_card
        )
        return None if minor is None else str(services.price_minor_to_major(minor))

    @extend_schema_field_datetime
    def get_rentable_from(self, offer):
        return _iso(_range_bounds(offer.rentable_period)[0])

    @extend_schema_field_datetime
    def get_rentable_until(self, offer):
        return _iso(_range_bounds(offer.rentable_period)[1])


class OfferInputSerializer(serializers.Serializer):
    cluster = OwnedPrimaryKeyField(selector=selectors.cluster_list, queryset=Cluster.objects.all(), help_text="One of your clusters.")
    accelerator_model = AcceleratorModelField(help_text="Catalog slug or name.")
    price_per_card_hour = serializers.CharField(
        max_length=32,
        help_text="Decimal in major units, e.g. \"25.00\": at most 2 decimals, more than 0, at most 100,000.",
    )
    currency = serializers.ChoiceField(choices=Currency.choices, default=Currency.CNY)
    min_duration_hours = serializers.IntegerField(min_value=1, max_value=services.MAX_DURATION_HOURS, default=1)
    max_duration_hours = serializers.IntegerField(min_value=1, max_value=services.MAX_DURATION_HOURS, default=24 * 90)
    rentable_from = serializers.DateTimeField(required=False, allow_null=True, help_text="Start of the rentable period; null = now.")
    rentable_until = serializers.DateTimeField(required=False, allow_null=True, help_text="End of the rentable period; null = open-ended.")


class OfferFilter(filters.FilterSet):
    cluster = filters.ModelChoiceFilter(queryset=_own(selectors.cluster_list))
    site = filters.NumberFilter(field_name="cluster__site_id")
    accelerator_model = filters.CharFilter(field_name="accelerator_model__slug")
    is_active = StrictBooleanFilter(help_text="true: on the market; false: withdrawn.")

    class Meta:
        model = Offer
        fields = ["cluster", "site", "accelerator_model", "currency", "is_active"]


def _offer_fields(validated: dict) -> dict:
    fields = dict(validated)
    if "price_per_card_hour" in fields:
        fields["price_per_card_hour_minor"] = services.price_major_to_minor(price=fields.pop("price_per_card_hour"))
    return fields


@extend_schema_view(
    list=extend_schema(summary="Your offers", responses=OfferOutputSerializer(many=True)),
    retrieve=extend_schema(summary="One of your offers", responses=OfferOutputSerializer),
    create=extend_schema(summary="Offer cards of one model in one cluster at a price", request=OfferInputSerializer, responses={201: OfferOutputSerializer}),
    partial_update=extend_schema(summary="Change an offer's price, durations or rentable period", request=OfferInputSerializer, responses=OfferOutputSerializer),
    retire=extend_schema(summary="Withdraw an offer (kept for history)", request=None, responses={200: OfferOutputSerializer, 409: CAPACITY_BOOKED}),
)
class OfferViewSet(InventoryApiMixin, viewsets.GenericViewSet):
    serializer_class = OfferOutputSerializer
    filterset_class = OfferFilter
    http_method_names = ["get", "post", "patch", "head", "options"]

    selector = selectors.offer_list

    def list(self, request):
        page = self.paginate_queryset(self.filter_queryset(self.get_queryset()))
        return self.get_paginated_response(OfferOutputSerializer(page, many=True).data)

    def retrieve(self, request, pk=None):
        return Response(OfferOutputSerializer(self.get_object()).data)

    def create(self, request):
        data = OfferInputSerializer(data=request.data, context={"request": request})
        data.is_valid(raise_exception=True)
        offer = services.offer_create(actor=request.user, **_offer_fields(data.validated_data))
        return Response(OfferOutputSerializer(offer).data, status=status.HTTP_201_CREATED)

    def partial_update(self, request, pk=None):
        offer = self.get_object()
        data = OfferInputSerializer(data=request.data, partial=True, context={"request": request})
        data.is_valid(raise_exception=True)
        fields = _offer_fields(data.validated_data)
        fixed = {"cluster", "accelerator_model"} & set(fields)
        if fixed:
            raise ValidationError({name: [_("Fixed once listed: retire the offer and create a new one.")] for name in fixed})
        offer = services.offer_update(offer=offer, actor=request.user, **fields)
        return Response(OfferOutputSerializer(offer).data)

    @action(detail=True, methods=["post"])
    def retire(self, request, pk=None):
        offer = services.offer_retire(offer=self.get_object(), actor=request.user)
        return Response(OfferOutputSerializer(offer).data)


# ---------------------------------------------------------------------------------------------
# Maintenance windows
# ---------------------------------------------------------------------------------------------


class MaintenanceWindowOutputSerializer(serializers.ModelSerializer):
    start = serializers.SerializerMethodField()
    end = serializers.SerializerMethodField()
    device_count = serializers.IntegerField(read_only=True, help_text="Devices blacked out (0 once cancelled).")

    class Meta:
        model = MaintenanceWindow
        fields = ["id", "cluster", "node", "start", "end", "reason", "device_count", "cancelled_at", "created_at"]

    @extend_schema_field_datetime
    def get_start(self, window):
        return _iso(window.period.lower)

    @extend_schema_field_datetime
    def get_end(self, window):
        return _iso(window.period.upper)


class MaintenanceWindowInputSerializer(serializers.Serializer):
    cluster = OwnedPrimaryKeyField(selector=selectors.cluster_list, queryset=Cluster.objects.all(), help_text="One of your clusters.")
    node = OwnedPrimaryKeyField(
        selector=selectors.node_list, queryset=Node.objects.all(), required=False, allow_null=True,
        help_text="Only this node of the cluster; omit for the whole cluster.",
    )
    start = serializers.DateTimeField()
    end = serializers.DateTimeField(help_text="Exclusive: the window is [start, end).")
    reason = serializers.CharField(max_length=300, required=False, allow_blank=True, default="")


class MaintenanceWindowFilter(filters.FilterSet):
    cluster = filters.ModelChoiceFilter(queryset=_own(selectors.cluster_list))
    node = filters.ModelChoiceFilter(queryset=_own(selectors.node_list))
    active = StrictBooleanFilter(field_name="cancelled_at", lookup_expr="isnull", label="Not cancelled")

    class Meta:
        model = MaintenanceWindow
        fields = ["cluster", "node", "active"]


@extend_schema_view(
    list=extend_schema(summary="Your maintenance windows", responses=MaintenanceWindowOutputSerializer(many=True)),
    retrieve=extend_schema(summary="One maintenance window", responses=MaintenanceWindowOutputSerializer),
    create=extend_schema(
        summary="Black out a cluster or node for [start, end)",
        request=MaintenanceWindowInputSerializer,
        responses={201: MaintenanceWindowOutputSerializer, 409: OpenApiResponse(description="Overlaps a maintenance window or a booking.")},
    ),
    cancel=extend_schema(summary="Cancel a window: its devices return to the market", request=None, responses=MaintenanceWindowOutputSerializer),
)
class MaintenanceWindowViewSet(InventoryApiMixin, viewsets.GenericViewSet):
    serializer_class = MaintenanceWindowOutputSerializer
    filterset_class = MaintenanceWindowFilter
    http_method_names = ["get", "post", "head", "options"]

    selector = selectors.maintenance_window_list

    def list(self, request):
        page = self.paginate_queryset(self.filter_queryset(self.get_queryset()))
        return self.get_paginated_response(MaintenanceWindowOutputSerializer(page, many=True).data)

    def retrieve(self, request, pk=None):
        return Response(MaintenanceWindowOutputSerializer(self.get_object()).data)

    def create(self, request):
        data = MaintenanceWindowInputSerializer(data=request.data, context={"request": request})
        data.is_valid(raise_exception=True)
        window = services.maintenance_window_create(actor=request.user, **data.validated_data)
        return Response(MaintenanceWindowOutputSerializer(self.get_queryset().get(pk=window.pk)).data, status=status.HTTP_201_CREATED)

    @action(detail=True, methods=["post"])
    def cancel(self, request, pk=None):
        window = services.maintenance_window_cancel(window=self.get_object(), actor=request.user)
        return Response(MaintenanceWindowOutputSerializer(self.get_queryset().get(pk=window.pk)).data)
