"""Buyer pages. Anyone - signed in or not - may search, quote and look at offers (buyers browse
before they sign up); booking and "my reservations" need a member of a buyer organization, and a
member only ever sees their own organization's reservations."""

import uuid
from datetime import timedelta

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.core.paginator import EmptyPage, PageNotAnInteger, Paginator
from django.http import Http404, HttpResponseNotAllowed
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.utils.translation import gettext as _
from django.views.decorators.http import require_POST

from accounts.selectors import user_can
from accounts.views import add_service_errors
from config.api import MAX_PAGE_SIZE
from inventory.market_selectors import offer_get
from marketplace.forms import BookingForm, ExtendForm, OfferSearchForm, QuoteForm
from marketplace.launch import DEFAULT_LAUNCH_TEMPLATE
from marketplace.provisioning.selectors import reservation_connections
from marketplace.reasons import ReasonCode
from marketplace.selectors import offer_row_get, offer_search, quote_build, reservation_get, reservation_list
from marketplace.services import (
    BookingConflict,
    IdempotencyKeyReused,
    InsufficientCapacity,
    ReservationStateError,
    reservation_cancel,
    reservation_create,
    reservation_extend,
    reservation_release,
)

PAGE_SIZE = 25


def _can_book(request) -> bool:
    return request.user.is_authenticated and user_can(user=request.user, organization=request.organization, action="book")


def _page_size(request, errors: list[str]) -> int:
    raw = request.GET.get("page_size")
    if raw is None:
        return PAGE_SIZE
    try:
        size = int(raw)
    except ValueError:
        size = 0
    if not 1 <= size <= MAX_PAGE_SIZE:
        errors.append(_("page_size: must be a whole number between 1 and %(max)s.") % {"max": MAX_PAGE_SIZE})
        return PAGE_SIZE
    return size


def search(request):
    form = OfferSearchForm(request.GET)
    page = None
    errors: list[str] = []
    page_size = _page_size(request, errors)
    status = 200
    if form.is_valid() and not errors:
        results = offer_search(**form.search_kwargs())
        paginator = Paginator(results, page_size)
        try:
            page = paginator.page(request.GET.get("page") or 1)
        except (EmptyPage, PageNotAnInteger):
            errors.append(_("page: no such page."))
            status = 400
    else:
        status = 400
    query = request.GET.copy()
    query.pop("page", None)
    window = (form.cleaned_data.get("start"), form.cleaned_data.get("end")) if form.is_bound and form.is_valid() else (None, None)
    no_results = page is not None and page.paginator.count == 0
    return render(request, "market/search.html", {
        "form": form, "page": page, "errors": errors, "query": query.urlencode(), "window": window,
        "no_results": no_results, "filters_set": _filters_set(request, form) if no_results else [],
        "suggested_window": _suggested_window(),
    }, status=status)


def _suggested_window():
    """Tomorrow from the next whole hour, for 24 hours: a window most offers' duration limits admit."""
    start = timezone.now().replace(minute=0, second=0, microsecond=0) + timedelta(days=1, hours=1)
    return start, start + timedelta(hours=24)


# Filters that are not narrowing the search (dropping them never brings an offer back).
_NOT_FILTERS = {"page", "page_size", "sort"}


def _filters_set(request, form) -> list[dict]:
    """Each filter the buyer set, with what it is set to and a link to the same search without it - the
    concrete "try ..." of an empty result. The window (start and end) is one filter."""
    filters = []
    names = [name for name in form.fields if name not in _NOT_FILTERS and name not in ("start", "end") and request.GET.getlist(name)]
    if request.GET.get("start") or request.GET.get("end"):
        names.append("window")
    for name in names:
        query = request.GET.copy()
        for key in ("start", "end") if name == "window" else (name,):
            query.pop(key, None)
        query.pop("page", None)
        if name == "window":
            label, shown = _("Window"), None
        else:
            field = form[name]
            label = str(field.label)
            values = request.GET.getlist(name)
            choices = dict(_flat_choices(field.field.widget.choices)) if hasattr(field.field.widget, "choices") else {}
            shown = ", ".join(str(choices.get(value, value)) for value in values)
        filters.append({"name": name, "label": label, "value": shown, "url": f"?{query.urlencode()}"})
    return filters


def _flat_choices(choices):
    for key, label in choices:
        if isinstance(label, list | tuple):
            yield from label
        else:
            yield key, label


def quote(request):
    form = QuoteForm(request.GET) if request.GET else QuoteForm(initial=_quote_initial())
    result = None
    status = 200
    if form.is_bound:
        if form.is_valid():
            result = quote_build(**form.quote_kwargs())
        else:
            status = 400
    return render(request, "market/quote.html", {
        "form": form, "quote": result, "can_book": _can_book(request), "booking_key": uuid.uuid4().hex,
        "default_launch_template": DEFAULT_LAUNCH_TEMPLATE,
    }, status=status)


def _quote_initial() -> dict:
    start = timezone.localtime(timezone.now().replace(minute=0, second=0, microsecond=0) + timedelta(days=1))
    return {"cards": 8, "start": start.strftime("%Y-%m-%dT%H:%M"), "duration_hours": 24, "currency": "CNY"}


def offer_detail(request, offer_id: int):
    if request.method not in ("GET", "POST"):
        return HttpResponseNotAllowed(["GET", "POST"])
    status = 200
    if request.method == "POST":
        if not request.user.is_authenticated:
            return redirect(f"{reverse('accounts:login')}?next={request.path}")
        form = BookingForm(request.POST)
        if not _can_book(request):
            form.add_error(None, _("Only members of a buyer organization with booking rights can book."))
            status = 403
        elif form.is_valid():
            offer = offer_get(offer_id=offer_id)
            if offer is None:
                raise Http404
            try:
                reservation, _created = reservation_create(
                    organization=request.organization, created_by=request.user, offer=offer,
                    card_count=form.cleaned_data["card_count"], start=form.cleaned_data["start"], end=form.cleaned_data["end"],
                    idempotency_key=form.cleaned_data.get("idempotency_key") or "",
                    launch_template=getattr(form.cleaned_data.get("launch_template"), "slug", None),
                    accepted_alternatives=form.cleaned_data.get("accepted_alternatives") or [],
                )
            except BookingConflict as conflict:
                # too few free cards is about the card count (shown next to it); a lost race is about the booking
                form.add_error("card_count" if isinstance(conflict, InsufficientCapacity) else None, conflict.message)
                status = 409
            except IdempotencyKeyReused as error:
                form.add_error(None, str(error))
                status = 422
            except ValidationError as error:
                add_service_errors(form, error)
                status = 400
            else:
                return redirect(f"{reverse('frontend:market-reservation', args=[reservation.pk])}?booked=1")
        else:
            status = 400
        window = (form.cleaned_data.get("start"), form.cleaned_data.get("end")) if form.is_valid() else (None, None)
    else:
        window_form = OfferSearchForm({k: v for k, v in request.GET.items() if k in ("start", "end")})
        window = (None, None)
        if window_form.is_valid():
            window = (window_form.cleaned_data.get("start"), window_form.cleaned_data.get("end"))
        start = window[0] or timezone.localtime(timezone.now().replace(minute=0, second=0, microsecond=0) + timedelta(hours=1))
        end = window[1] or start + timedelta(hours=24)
        form = BookingForm(initial={
            "card_count": request.GET.get("cards") or 8,
            "start": timezone.localtime(start).strftime("%Y-%m-%dT%H:%M"),
            "end": timezone.localtime(end).strftime("%Y-%m-%dT%H:%M"),
            "idempotency_key": uuid.uuid4().hex,
            "launch_template": request.GET.get("launch_template") or DEFAULT_LAUNCH_TEMPLATE,
        })
    try:
        row = offer_row_get(offer_id=offer_id, start=window[0], end=window[1])
    except Http404:
        raise
    return render(request, "market/offer.html", {
        "offer": row, "form": form, "can_book": _can_book(request), "window": window,
    }, status=status)


@login_required
def reservations(request):
    if not user_can(user=request.user, organization=request.organization, action="view"):
        raise Http404
    paginator = Paginator(reservation_list(organization=request.organization), PAGE_SIZE)
    page = paginator.get_page(request.GET.get("page"))
    return render(request, "market/reservations.html", {"page": page})


FAILOVER_CODES = (ReasonCode.FAILOVER_MOVED, ReasonCode.FAILOVER_NO_CAPACITY, ReasonCode.FAILOVER_NOT_MOVED)


@login_required
def reservation_detail(request, reservation_id: int):
    if not user_can(user=request.user, organization=request.organization, action="view"):
        raise Http404
    reservation = reservation_get(organization=request.organization, reservation_id=reservation_id)
    now = timezone.now()
    extend_form = ExtendForm(initial={"end": timezone.localtime(reservation.end + timedelta(hours=24)).strftime("%Y-%m-%dT%H:%M")})
    return render(request, "market/reservation.html", _reservation_context(request, reservation, now, extend_form))


def _reservation_context(request, reservation, now, extend_form, action_error=None):
    holding = reservation.status in reservation.HOLDING and now < reservation.end
    can_book = _can_book(request)
    timeline = list(reservation.status_changes.all())
    # The latest failover news, shown above the timeline so a buyer whose cards moved (or whose
    # reservation ended) sees why without reading the whole history.
    failover_news = next((c for c in reversed(timeline) if c.reason_code in FAILOVER_CODES), None)
    return {
        "failover_news": failover_news,
        "downtimes": reservation.downtimes.select_related("node"),
        "reservation": reservation,
        "booked": request.GET.get("booked") == "1",
        "can_cancel": can_book and holding and now < reservation.start,
        "can_release": can_book and holding and now >= reservation.start,
        "can_extend": can_book and holding,
        "extend_form": extend_form,
        "action_error": action_error,
        "timeline": timeline,
        # only while active (reservation_connections decides); the page is the buyer organization's only
        "connections": reservation_connections(reservation=reservation),
        "failure": _failure_reason(reservation),
    }


def _failure_reason(reservation) -> str:
    """Why a failed reservation failed (its last coded reason), shown above the timeline."""
    if reservation.status != reservation.Status.FAILED:
        return ""
    last = next((change for change in reversed(list(reservation.status_changes.all())) if change.to_status == reservation.Status.FAILED), None)
    return last.reason_text if last else ""


@login_required
@require_POST
def reservation_action(request, reservation_id: int, action: str):
    if action not in ("cancel", "release", "extend"):
        raise Http404
    reservation = reservation_get(organization=request.organization, reservation_id=reservation_id)
    extend_form = ExtendForm(request.POST if action == "extend" else None)
    error = None
    status = 200
    if not _can_book(request):
        error, status = _("Only members with booking rights can change a reservation."), 403
    else:
        try:
            if action == "cancel":
                reservation_cancel(reservation=reservation, actor=request.user)
                messages.success(request, _("Reservation cancelled - nothing to pay."))
            elif action == "release":
                reservation_release(reservation=reservation, actor=request.user)
                messages.success(request, _("Cards released - billing ends now."))
            elif extend_form.is_valid():
                reservation_extend(reservation=reservation, end=extend_form.cleaned_data["end"], actor=request.user)
                messages.success(request, _("Reservation extended on the same cards."))
            else:
                status = 400
        except (ReservationStateError, BookingConflict) as conflict:
            error, status = getattr(conflict, "message", None) or str(conflict), 409
        except ValidationError as invalid:
            add_service_errors(extend_form, invalid)
            status = 400
    if status == 200:
        return redirect("frontend:market-reservation", reservation_id=reservation.pk)
    reservation = reservation_get(organization=request.organization, reservation_id=reservation_id)
    return render(request, "market/reservation.html",
                  _reservation_context(request, reservation, timezone.now(), extend_form, action_error=error), status=status)
