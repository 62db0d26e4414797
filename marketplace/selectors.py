"""Reads of the market: offer search, requirement-based quotes, reservations.

Free cards always come from the device calendar for the asked window (inventory.market_selectors),
never from the listing. See inventory/market_selectors.py for the availability design.
"""

import math
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal

from django.db.models import Min, Prefetch, Q, QuerySet
from django.http import Http404
from django.shortcuts import get_object_or_404
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from accounts.models import Organization
from config.i18n import local_text
from inventory.market_selectors import OfferCapacity, offer_capacity, offers_active, offers_listed
from inventory.models import Cluster, Offer, Site, SoftwareStack
from inventory.pricing import format_money, price_per_ecu_hour_minor, price_per_ecu_hour_minor_sql
from inventory.selectors import accelerator_models_for, vendor_names_for
from marketplace.launch import DEFAULT_LAUNCH_TEMPLATE, launch_template_get, launch_template_stacks, no_image_message
from marketplace.models import LaunchTemplate, Reservation, ReservationDowntime, ReservationSegment
from marketplace.pricing import card_seconds_price_minor, hours_between, total_price_minor
from marketplace.provisioning.selectors import running_assignments_queryset
from marketplace.windows import offer_terms_breach, offer_terms_q

# Without a window, search shows what is free in the coming hour.
DEFAULT_WINDOW = timedelta(hours=1)

SORTS = {
    # name: (key on an OfferRow, descending?) - ties broken by offer id
    "price": ("price_per_card_hour_minor", False),
    "-price": ("price_per_card_hour_minor", True),
    "price_per_ecu": ("price_per_ecu_hour_minor", False),
    "-price_per_ecu": ("price_per_ecu_hour_minor", True),
    "free_cards": ("cards_free", False),
    "-free_cards": ("cards_free", True),
    "ecu": ("ecu_per_card", False),
    "-ecu": ("ecu_per_card", True),
}
DEFAULT_SORT = "price_per_ecu"
# Sorts on money: ordered by currency first (CNY before USD), then by the price within each currency.
PRICE_SORT_KEYS = {"price_per_card_hour_minor", "price_per_ecu_hour_minor"}
# Sorts that need every candidate's free cards before a page can be cut.
SORTS_NEEDING_CAPACITY = {"free_cards", "-free_cards"}

_OFFER_FIELDS = {
    "offer_id": "id",
    "price_per_card_hour_minor": "price_per_card_hour_minor",
    "currency": "currency",
    "min_duration_hours": "min_duration_hours",
    "max_duration_hours": "max_duration_hours",
    "rentable_period": "rentable_period",
    "cluster_id": "cluster_id",
    "cluster_name": "cluster__name",
    "fabric": "cluster__fabric",
    "fabric_bandwidth_gbps": "cluster__fabric_bandwidth_gbps",
    "site_id": "cluster__site_id",
    "site_name": "cluster__site__name",
    "site_lifecycle": "cluster__site__lifecycle",
    "owner_name": "cluster__site__owner__name",
    "country": "cluster__site__country",
    "city": "cluster__site__city",
    "province_code": "cluster__site__province__code",
    "province_name": "cluster__site__province__name",
    "province_name_zh": "cluster__site__province__name_zh",
    "hub_id": "cluster__site__province__hub_id",
    "hub_name": "cluster__site__province__hub__name",
    "hub_name_zh": "cluster__site__province__hub__name_zh",
    "accelerator_model_id": "accelerator_model_id",
    "vendor": "accelerator_model__vendor",
    "model_name": "accelerator_model__name",
    "model_slug": "accelerator_model__slug",
    "memory_gb": "accelerator_model__memory_gb",
    "stack": "accelerator_model__stack",
    "ecu_per_card": "accelerator_model__ecu_per_card",
    # The provider's stored reliability score (inventory.reliability); NULL = no record yet = 100.
    "reliability": "cluster__site__owner__reliability__score",
}


@dataclass
class OfferRow:
    """One offer as the market shows it, with its free cards in the asked window."""

    offer_id: int
    price_per_card_hour_minor: int
    currency: str
    min_duration_hours: int
    max_duration_hours: int
    rentable_period: object
    cluster_id: int
    cluster_name: str
    fabric: str
    fabric_bandwidth_gbps: int
    site_id: int
    site_name: str
    site_lifecycle: str
    owner_name: str
    country: str
    city: str
    province_code: str | None
    province_name: str | None
    province_name_zh: str | None
    hub_id: int | None
    hub_name: str | None
    hub_name_zh: str | None
    accelerator_model_id: int
    vendor: str
    model_name: str
    model_slug: str
    memory_gb: int | None
    stack: str
    ecu_per_card: Decimal | None
    reliability: int | None
    price_per_ecu_hour_minor: int | None = None  # inventory.pricing's rule: whole minor units
    capacity: OfferCapacity | None = None

    @property
    def cards_free(self) -> int:
        return self.capacity.cards_free if self.capacity else 0

    @property
    def is_rated(self) -> bool:
        return self.ecu_per_card is not None

    @property
    def fabric_label(self) -> str:
        """The fabric as people name it ("RoCE"), not its stored code ("roce")."""
        return _choice_label(Cluster.Fabric, self.fabric)

    @property
    def stack_label(self) -> str:
        return _choice_label(SoftwareStack, self.stack)

    @property
    def region_label(self) -> str:
        """The province (or the country when there is none) in the reader's language."""
        return local_text(self.province_name, self.province_name_zh) or self.country

    @property
    def hub_label(self) -> str:
        """The national hub in the reader's language ("" for none)."""
        return local_text(self.hub_name, self.hub_name_zh) or ""


def _choice_label(choices, value: str) -> str:
    try:
        return str(choices(value).label)
    except ValueError:  # a code the catalog no longer has: show it as stored
        return value


def _offer_rows(offers: QuerySet[Offer]) -> list[OfferRow]:
    names = list(_OFFER_FIELDS)
    rows = []
    for values in offers.values_list(*_OFFER_FIELDS.values()):
        row = OfferRow(**dict(zip(names, values, strict=True)))
        if row.reliability is None:
            row.reliability = 100  # a provider without a record has had no failure
        row.price_per_ecu_hour_minor = price_per_ecu_hour_minor(
            price_per_card_hour_minor=row.price_per_card_hour_minor, ecu_per_card=row.ecu_per_card
        )
        rows.append(row)
    return rows


def _sort_rows(rows: list[OfferRow], sort: str) -> list[OfferRow]:
    key_name, descending = SORTS[sort]
    present = [row for row in rows if getattr(row, key_name) is not None]
    missing = [row for row in rows if getattr(row, key_name) is None]  # "not rated" always last
    present.sort(key=lambda row: row.offer_id)
    present.sort(key=lambda row: getattr(row, key_name), reverse=descending)
    if key_name in PRICE_SORT_KEYS:
        # fen and cents are never compared: group by currency (A-Z, whatever the direction), then price
        present.sort(key=lambda row: row.currency)
    missing.sort(key=lambda row: row.offer_id)
    return present + missing


def _attach_capacity(rows: list[OfferRow], *, start: datetime, end: datetime, min_free_cards: int = 0) -> None:
    """Free cards for the rows that have none yet. With min_free_cards, rows that cannot reach it get
    an empty capacity without their calendar being read (the caller filters them out)."""
    capacity = offer_capacity(
        offer_ids=[row.offer_id for row in rows if row.capacity is None], start=start, end=end, min_free_cards=min_free_cards
    )
    for row in rows:
        if row.capacity is None:
            row.capacity = capacity.get(row.offer_id, OfferCapacity())
            if row.site_lifecycle != Site.Lifecycle.ONLINE:
                row.capacity = OfferCapacity(cards_total=row.capacity.cards_total)


class OfferSearchResults:
    """The matching offers, sorted. Sliced by the paginator; free cards are computed for what is shown
    (or for every candidate when a filter or the sort needs them) in one set-based query."""

    def __init__(self, rows: list[OfferRow], *, start: datetime, end: datetime):
        self.rows = rows
        self.start = start
        self.end = end

    def __len__(self) -> int:
        return len(self.rows)

    def count(self) -> int:
        return len(self.rows)

    def __iter__(self):
        return iter(self[:])

    def __getitem__(self, item):
        if isinstance(item, slice):
            page = self.rows[item]
            _attach_capacity(page, start=self.start, end=self.end)
            return page
        row = self.rows[item]
        _attach_capacity([row], start=self.start, end=self.end)
        return row


def search_window(*, start: datetime | None, end: datetime | None) -> tuple[datetime, datetime]:
    if start is None and end is None:
        start = timezone.now().replace(microsecond=0)
        return start, start + DEFAULT_WINDOW
    return start, end


def offer_search(
    *,
    start: datetime | None = None,
    end: datetime | None = None,
    vendor: str | None = None,
    accelerator_model: str | None = None,
    min_memory_gb: int | None = None,
    min_free_cards: int | None = None,
    stacks: list[str] | None = None,
    country: str | None = None,
    province: str | None = None,
    hub: int | None = None,
    fabric: str | None = None,
    currency: str | None = None,
    max_price_per_card_hour_minor: int | None = None,
    max_price_per_ecu_hour_minor: int | None = None,
    launch_template: LaunchTemplate | None = None,
    min_reliability: int | None = None,
    sort: str = DEFAULT_SORT,
) -> OfferSearchResults:
    """Active offers on online sites that match every filter, with free cards in [start, end).

    Offers whose rentable period or duration limits do not admit the window are left out (they
    could not be booked for it). A max price per ECU-hour leaves out "not rated" models.
    """
    start, end = search_window(start=start, end=end)
    offers = offers_listed()
    if vendor:
        # inventory's one matching rule: case-insensitive, "Huawei" finds "Huawei (HiSilicon)"
        offers = offers.filter(accelerator_model__vendor__in=vendor_names_for(vendor))
    if accelerator_model:
        offers = offers.filter(accelerator_model__in=accelerator_models_for(accelerator_model))  # slug or name
    if min_memory_gb is not None:
        offers = offers.filter(accelerator_model__memory_gb__gte=min_memory_gb)
    if stacks:
        offers = offers.filter(accelerator_model__stack__in=stacks)
    if launch_template is not None:  # only hardware whose stack has an image for the workload
        offers = offers.filter(accelerator_model__stack__in=launch_template_stacks(template=launch_template))
    if min_reliability is not None:  # the stored provider score; a provider without a row has 100
        offers = offers.exclude(cluster__site__owner__reliability__score__lt=min_reliability)
    if country:
        offers = offers.filter(cluster__site__country__iexact=country)
    if province:
        offers = offers.filter(cluster__site__province__code__iexact=province)
    if hub is not None:
        offers = offers.filter(cluster__site__province__hub_id=hub)
    if fabric:
        offers = offers.filter(cluster__fabric=fabric)
    if currency:
        offers = offers.filter(currency=currency)
    if max_price_per_card_hour_minor is not None:
        offers = offers.filter(price_per_card_hour_minor__lte=max_price_per_card_hour_minor)
    if max_price_per_ecu_hour_minor is not None:
        # the figure the buyer sees (inventory's one rounding rule, in SQL), not the unrounded ratio
        offers = offers.filter(accelerator_model__ecu_per_card__gt=0).annotate(_ppe=price_per_ecu_hour_minor_sql()).filter(
            _ppe__lte=max_price_per_ecu_hour_minor
        )
    offers = offers.filter(offer_terms_q(start=start, end=end))
    rows = _offer_rows(offers)
    if min_free_cards is not None or sort in SORTS_NEEDING_CAPACITY:
        _attach_capacity(rows, start=start, end=end, min_free_cards=min_free_cards or 0)
        if min_free_cards is not None:
            rows = [row for row in rows if row.cards_free >= min_free_cards]
    return OfferSearchResults(_sort_rows(rows, sort), start=start, end=end)


def offer_row_get(*, offer_id: int, start: datetime | None = None, end: datetime | None = None) -> OfferRow:
    """One active offer with its free cards in [start, end) (default: the coming hour). 404 if absent."""
    start, end = search_window(start=start, end=end)
    rows = _offer_rows(offers_active().filter(pk=offer_id))
    if not rows:
        raise Http404(_("No such offer on the market."))
    _attach_capacity(rows, start=start, end=end)
    return rows[0]


# ---------------------------------------------------------------------------------------------
# Quotes
# ---------------------------------------------------------------------------------------------


class Exclusion:
    """Why an offer is not a placement for a request. A fixed set: each has a human message."""

    NOT_ENOUGH_FREE_CARDS = "not_enough_free_cards"
    MEMORY_TOO_SMALL = "memory_too_small"
    STACK_NOT_ACCEPTED = "stack_not_accepted"
    REGION_EXCLUDED = "region_excluded"
    OVER_BUDGET = "over_budget"
    SITE_NOT_ONLINE = "site_not_online"
    NODE_FLAGGED = "node_flagged"
    NODE_NOT_ONLINE = "node_not_online"
    MAINTENANCE = "maintenance"
    MODEL_NOT_RATED = "model_not_rated"
    DIFFERENT_CURRENCY = "different_currency"
    DURATION_OUT_OF_RANGE = "duration_out_of_range"
    OUTSIDE_RENTABLE_PERIOD = "outside_rentable_period"
    NO_IMAGE_FOR_TEMPLATE = "no_image_for_template"
    LOW_RELIABILITY = "low_reliability"

    LABELS = {
        NOT_ENOUGH_FREE_CARDS: gettext_lazy("Not enough free cards in the window"),
        MEMORY_TOO_SMALL: gettext_lazy("Memory per card too small"),
        STACK_NOT_ACCEPTED: gettext_lazy("Software stack not accepted"),
        REGION_EXCLUDED: gettext_lazy("Region excluded"),
        OVER_BUDGET: gettext_lazy("Over budget"),
        SITE_NOT_ONLINE: gettext_lazy("Site not online"),
        NODE_FLAGGED: gettext_lazy("Node flagged by its agent"),
        NODE_NOT_ONLINE: gettext_lazy("Nodes not online"),
        MAINTENANCE: gettext_lazy("Maintenance in the window"),
        MODEL_NOT_RATED: gettext_lazy("Model not rated (no ECU figure)"),
        DIFFERENT_CURRENCY: gettext_lazy("Priced in a different currency"),
        DURATION_OUT_OF_RANGE: gettext_lazy("Duration outside the offer's limits"),
        OUTSIDE_RENTABLE_PERIOD: gettext_lazy("Outside the offer's rentable period"),
        NO_IMAGE_FOR_TEMPLATE: gettext_lazy("No image for the chosen workload on this hardware"),
        LOW_RELIABILITY: gettext_lazy("Provider reliability below your minimum"),
    }
    ALL = tuple(LABELS)


@dataclass
class Reason:
    code: str
    message: str

    @property
    def label(self) -> str:
        return str(Exclusion.LABELS[self.code])


@dataclass
class Placement:
    offer: OfferRow
    card_count: int
    total_price_minor: int
    price_per_ecu_hour_minor: Decimal | None
    total_ecu: Decimal | None


@dataclass
class ExcludedOffer:
    offer: OfferRow
    reasons: list[Reason]


@dataclass
class Quote:
    start: datetime
    end: datetime
    hours: Decimal
    currency: str
    cards: int | None
    total_ecu: Decimal | None
    launch_template: LaunchTemplate | None = None  # the workload asked for (None: any)
    placements: list[Placement] = field(default_factory=list)
    excluded: list[ExcludedOffer] = field(default_factory=list)


def _region_excluded_message(row: OfferRow) -> str:
    if row.hub_label:
        return _("The site is in %(region)s (%(hub)s hub), outside the regions you chose.") % {
            "region": row.region_label, "hub": row.hub_label}
    return _("The site is in %(region)s, outside the regions you chose.") % {"region": row.region_label}


def quote_build(
    *,
    start: datetime,
    end: datetime,
    cards: int | None = None,
    total_ecu: Decimal | None = None,
    min_memory_gb: int | None = None,
    stacks: list[str] | None = None,
    countries: list[str] | None = None,
    provinces: list[str] | None = None,
    hubs: list[int] | None = None,
    currency: str = "CNY",
    max_total_price_minor: int | None = None,
    max_price_per_ecu_hour_minor: Decimal | None = None,
    launch_template: LaunchTemplate | None = None,
    min_reliability: int | None = None,
) -> Quote:
    """Rank every active offer that can take the whole request (one offer = one cluster, so a
    multi-node job stays inside one fabric); for every other active offer, say all the reasons why.

    Placements are ranked by price per ECU-hour (not rated last), then by total price. Prices in
    another currency are never compared: they are excluded with DIFFERENT_CURRENCY.
    """
    if (cards is None) == (total_ecu is None):
        raise ValueError("Give exactly one of cards or total_ecu.")
    hours = hours_between(start, end)
    quote = Quote(start=start, end=end, hours=hours, currency=currency, cards=cards, total_ecu=total_ecu,
                  launch_template=launch_template)
    rows = _offer_rows(Offer.objects.filter(is_active=True).order_by("id"))
    _attach_capacity(rows, start=start, end=end)
    region_wanted = bool(countries or provinces or hubs)
    countries_upper = {c.upper() for c in countries or []}
    provinces_upper = {p.upper() for p in provinces or []}
    hubs_set = set(hubs or [])
    # No workload named: booking will use the default one, so offers it cannot run are excluded too
    # (a Book button on a placement that booking then refuses would be a lie).
    checked_template = launch_template or launch_template_get(slug=DEFAULT_LAUNCH_TEMPLATE)
    template_stacks = launch_template_stacks(template=checked_template) if checked_template is not None else None

    for row in rows:
        reasons: list[Reason] = []
        capacity = row.capacity
        if row.site_lifecycle != Site.Lifecycle.ONLINE:
            reasons.append(Reason(Exclusion.SITE_NOT_ONLINE, _("The site %(site)s is %(lifecycle)s, not online.") % {"site": row.site_name, "lifecycle": str(Site.Lifecycle(row.site_lifecycle).label).lower()}))
        if min_memory_gb is not None and (row.memory_gb is None or row.memory_gb < min_memory_gb):
            reasons.append(Reason(Exclusion.MEMORY_TOO_SMALL, _("%(model)s has %(memory)s GB per card; you need at least %(minimum)s GB.") % {
                "model": row.model_name, "memory": row.memory_gb or _("unknown"), "minimum": min_memory_gb}))
        if stacks and row.stack not in stacks:
            reasons.append(Reason(Exclusion.STACK_NOT_ACCEPTED, _("%(model)s runs %(stack)s; you accept %(stacks)s.") % {"model": row.model_name, "stack": row.stack, "stacks": ", ".join(stacks)}))
        if template_stacks is not None and row.stack not in template_stacks:
            reasons.append(Reason(Exclusion.NO_IMAGE_FOR_TEMPLATE, no_image_message(template=checked_template, stack=row.stack)))
        if region_wanted and not (
            row.country.upper() in countries_upper
            or (row.province_code or "").upper() in provinces_upper
            or (row.hub_id is not None and row.hub_id in hubs_set)
        ):
            reasons.append(Reason(Exclusion.REGION_EXCLUDED, _region_excluded_message(row)))
        if min_reliability is not None and row.reliability < min_reliability:
            reasons.append(Reason(Exclusion.LOW_RELIABILITY, _("%(provider)s's reliability score is %(score)s; you asked for at least %(minimum)s.") % {
                "provider": row.owner_name, "score": row.reliability, "minimum": min_reliability}))
        if row.currency != currency:
            reasons.append(Reason(Exclusion.DIFFERENT_CURRENCY, _("Priced in %(offer_currency)s; this quote is in %(currency)s (currencies are never converted silently).") % {
                "offer_currency": row.currency, "currency": currency}))
        needs_rating = total_ecu is not None or max_price_per_ecu_hour_minor is not None
        if needs_rating and not row.is_rated:
            reasons.append(Reason(Exclusion.MODEL_NOT_RATED, _("%(model)s has no published dense BF16/FP16 figure, so it has no ECU rating.") % {"model": row.model_name}))
        breach = offer_terms_breach(min_duration_hours=row.min_duration_hours, max_duration_hours=row.max_duration_hours,
                                    rentable_period=row.rentable_period, start=start, end=end)
        if breach.duration:
            reasons.append(Reason(Exclusion.DURATION_OUT_OF_RANGE, _("This offer rents for %(min)s to %(max)s hours; you asked for %(hours)s.") % {
                "min": row.min_duration_hours, "max": row.max_duration_hours, "hours": f"{hours.normalize():f}"}))
        if breach.rentable_period:
            reasons.append(Reason(Exclusion.OUTSIDE_RENTABLE_PERIOD, _("The window is outside the period in which this capacity may be rented.")))

        if cards is not None:
            needed = cards
        elif row.is_rated:
            needed = max(1, math.ceil(Decimal(total_ecu) / row.ecu_per_card))
        else:
            needed = None

        if needed is not None and row.site_lifecycle == Site.Lifecycle.ONLINE and capacity.cards_free < needed:
            reasons.append(Reason(Exclusion.NOT_ENOUGH_FREE_CARDS, _("Only %(free)s of the %(needed)s cards you need are free in that window (%(booked)s booked).") % {
                "free": capacity.cards_free, "needed": needed, "booked": capacity.cards_booked}))
            if capacity.cards_flagged:
                reasons.append(Reason(Exclusion.NODE_FLAGGED, _("%(cards)s cards sit on nodes whose agent report contradicts the listing.") % {"cards": capacity.cards_flagged}))
            if capacity.cards_not_online:
                reasons.append(Reason(Exclusion.NODE_NOT_ONLINE, _("%(cards)s cards sit on nodes that are not online.") % {"cards": capacity.cards_not_online}))
            if capacity.cards_in_maintenance:
                reasons.append(Reason(Exclusion.MAINTENANCE, _("%(cards)s cards are in a maintenance window.") % {"cards": capacity.cards_in_maintenance}))

        total = ppe = None
        if needed is not None:
            total = total_price_minor(price_per_card_hour_minor=row.price_per_card_hour_minor, card_count=needed, start=start, end=end)
            ppe = row.price_per_ecu_hour_minor
            if row.currency == currency:
                over = []
                if max_total_price_minor is not None and total > max_total_price_minor:
                    over.append(_("The placement costs %(total)s, over your %(budget)s.") % {
                        "total": format_money(total, currency), "budget": format_money(max_total_price_minor, currency)})
                if max_price_per_ecu_hour_minor is not None and ppe is not None and ppe > max_price_per_ecu_hour_minor:
                    over.append(_("The placement costs %(price)s per ECU-hour, over your %(budget)s.") % {
                        "price": format_money(ppe, currency), "budget": format_money(max_price_per_ecu_hour_minor, currency)})
                if over:
                    reasons.append(Reason(Exclusion.OVER_BUDGET, " ".join(over)))

        if reasons:
            quote.excluded.append(ExcludedOffer(offer=row, reasons=reasons))
        else:
            total_ecu_placed = row.ecu_per_card * needed if row.is_rated else None
            quote.placements.append(
                Placement(offer=row, card_count=needed, total_price_minor=total, price_per_ecu_hour_minor=ppe, total_ecu=total_ecu_placed)
            )
    quote.placements.sort(
        key=lambda p: (p.price_per_ecu_hour_minor is None, p.price_per_ecu_hour_minor or 0, p.total_price_minor, p.offer.offer_id)
    )
    return quote


# ---------------------------------------------------------------------------------------------
# Reservations
# ---------------------------------------------------------------------------------------------


def reservation_list(*, organization: Organization | None) -> QuerySet[Reservation]:
    """The organization's reservations, newest start first. Nobody else's, ever."""
    if organization is None:
        return Reservation.objects.none()
    # Every relation the API and the pages show per row, read in the same query (no query per row).
    return Reservation.objects.filter(buyer=organization).select_related(
        "buyer", "accelerator_model", "cluster__site__owner", "cluster__site__province", "offer", "launch_template"
    ).prefetch_related(
        "segments", "launch_template__images",  # the price is read from the segments: one query for the whole list
        "accepted_alternatives", "downtimes__node",
        # connection details (marketplace.provisioning.selectors.reservation_connections): one query for the list
        Prefetch("assignments", queryset=running_assignments_queryset(), to_attr="running_assignments"),
    )


def reservation_get(*, organization: Organization | None, reservation_id: int) -> Reservation:
    """One of the organization's reservations; 404 for anyone else's (no hint that it exists)."""
    return get_object_or_404(reservation_list(organization=organization).prefetch_related("status_changes__actor"), pk=reservation_id)


def reservation_device_ids(*, reservation: Reservation) -> list[int]:
    from inventory.allocations import device_allocations_for_reservation

    return sorted({allocation.device_id for allocation in device_allocations_for_reservation(reservation_id=reservation.pk)})


def reservation_billed_price_minor(*, reservation: Reservation, now: datetime | None = None) -> int:
    """What a reservation's service periods cost: each segment's cards x seconds at its locked price,
    an open segment counted up to `now`, summed and rounded once (marketplace.pricing). Reads the
    prefetched segments when the caller prefetched them (lists), else one query.

    This is the time rule billing reads: billable seconds come from the segments (healthy to released,
    a move's gap left out), never from usage samples."""
    now = now or timezone.now()
    parts = []
    for segment in reservation.segments.all():
        end = segment.ended_at or max(now, segment.started_at)
        parts.append((segment.price_per_card_hour_minor, len(segment.device_ids) * int((end - segment.started_at).total_seconds())))
    return card_seconds_price_minor(parts)


def reservation_segments_open(*, reservation_id: int) -> QuerySet[ReservationSegment]:
    return ReservationSegment.objects.filter(reservation_id=reservation_id, ended_at__isnull=True)


def reservation_segments_of_buyer_between(*, buyer_id: int, start: datetime, end: datetime) -> QuerySet[ReservationSegment]:
    """The service segments of the buyer's reservations that overlap [start, end) (an open segment
    overlaps every later range), with their reservation: what billing rates for a period."""
    return (
        ReservationSegment.objects.filter(reservation__buyer_id=buyer_id, started_at__lt=end)
        .filter(Q(ended_at__isnull=True) | Q(ended_at__gt=start))
        .select_related("reservation")
        .order_by("reservation_id", "started_at", "node_id")
    )


def reservation_segments_first_start(*, buyer_id: int) -> datetime | None:
    """When the buyer's first service segment began (None: never served)."""
    return ReservationSegment.objects.filter(reservation__buyer_id=buyer_id).aggregate(first=Min("started_at"))["first"]


def reservations_segments(*, reservation_ids: list[int]) -> QuerySet[ReservationSegment]:
    """Every service segment of the given reservations, with the reservation (billing re-rates invoiced
    time with them to find segments that changed after they were invoiced)."""
    return ReservationSegment.objects.filter(reservation_id__in=reservation_ids).select_related("reservation").order_by(
        "reservation_id", "started_at", "node_id")


# ---------------------------------------------------------------------------------------------
# Operations (platform operators only: the views check)
# ---------------------------------------------------------------------------------------------


def reservations_migrating() -> QuerySet[Reservation]:
    """Reservations being moved to other cards (every buyer's: for operators), with their open downtime."""
    return (
        Reservation.objects.filter(status=Reservation.Status.MIGRATING)
        .select_related("buyer", "accelerator_model", "cluster__site__owner")
        .prefetch_related("downtimes__node")
        .order_by("pk")
    )


def reservation_downtimes_between(*, reservation_ids: list[int], start: datetime, end: datetime) -> QuerySet[ReservationDowntime]:
    """Recorded downtime (failover) of these reservations overlapping [start, end); an open record
    (still down) overlaps every later range. Billing reads it for SLA credits."""
    return (
        ReservationDowntime.objects.filter(reservation_id__in=reservation_ids, started_at__lt=end)
        .filter(Q(ended_at__isnull=True) | Q(ended_at__gt=start))
        .order_by("reservation_id", "started_at", "id")
    )
