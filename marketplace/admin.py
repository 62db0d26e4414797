"""Reservations for platform operators (the `operator` staff group, or a superuser).

Operators find a reservation (filters by status, buyer, provider and date; search by id, buyer or
booker), read its timeline, and act on it only through the services the lifecycle allows
(reservation_cancel before the start, reservation_release after it), with a required note that the
buyer sees in the timeline and the operator recorded as the actor. Nothing here edits a status or a
period directly: the admin is read-only apart from those actions.
"""

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import ValidationError
from django.template.response import TemplateResponse

from accounts.selectors import user_is_operator
from accounts.timezones import format_local_time
from inventory.admin import ViewOnly
from inventory.pricing import format_money
from marketplace.models import (
    LaunchTemplate,
    LaunchTemplateImage,
    NodeAssignment,
    Reservation,
    ReservationDowntime,
    ReservationStatusChange,
)
from marketplace.services import BookingConflict, ReservationStateError, reservation_cancel, reservation_release


class OperatorOnly(ViewOnly):
    """Visible to operators only (model permissions do not open it), never editable: changes go through
    the services (the actions below)."""

    def has_module_permission(self, request):
        return user_is_operator(user=request.user)

    def has_view_permission(self, request, obj=None):
        return user_is_operator(user=request.user)


class ReservationStatusChangeInline(OperatorOnly, admin.TabularInline):
    model = ReservationStatusChange
    verbose_name = "status event"
    verbose_name_plural = "timeline"
    extra = 0
    fields = readonly_fields = ["at", "from_status", "to_status", "actor", "why"]
    ordering = ["created_at", "id"]

    @admin.display(description="when")
    def at(self, event):
        return format_local_time(event.created_at, seconds=True)

    @admin.display(description="why")
    def why(self, event):
        return event.reason_text


class ReservationDowntimeInline(OperatorOnly, admin.TabularInline):
    model = ReservationDowntime
    verbose_name = "downtime"
    verbose_name_plural = "downtime (node failures; for SLA credits)"
    extra = 0
    fields = readonly_fields = ["node", "started_at", "ended_at", "cause"]
    ordering = ["started_at", "id"]


class NodeAssignmentInline(OperatorOnly, admin.TabularInline):
    """What each node was told to run or stop, and what it reported (marketplace.provisioning)."""

    model = NodeAssignment
    verbose_name = "node assignment"
    verbose_name_plural = "provisioning (node assignments)"
    extra = 0
    fields = readonly_fields = ["node", "desired", "state", "reason", "ssh_port", "image", "deadline", "published_at",
                                "reported_at", "stop_requested_at", "stopped_at"]
    ordering = ["id"]


class OperatorNoteForm(forms.Form):
    reason = forms.CharField(
        label="Why (the buyer sees this in the reservation's timeline)", max_length=250,
        widget=forms.Textarea(attrs={"rows": 3, "cols": 60}),
    )


@admin.register(Reservation)
class ReservationAdmin(OperatorOnly, admin.ModelAdmin):
    list_display = ["id", "buyer", "provider", "accelerator_model", "card_count", "starts", "ends", "status", "total"]
    list_filter = [
        "status",
        ("buyer", admin.RelatedOnlyFieldListFilter),
        ("cluster__site__owner", admin.RelatedOnlyFieldListFilter),
        ("start", admin.DateFieldListFilter),
    ]
    search_fields = ["id__exact", "buyer__name", "created_by__email"]
    list_select_related = ["buyer", "cluster__site__owner", "accelerator_model"]
    date_hierarchy = "start"
    ordering = ["-start", "-id"]
    fields = readonly_fields = [
        "buyer", "created_by", "offer", "cluster", "accelerator_model", "card_count", "launch_template", "status", "starts", "ends",
        "booked_until", "released", "active_from", "active_to", "locked_price", "total",
    ]
    inlines = [ReservationStatusChangeInline, NodeAssignmentInline, ReservationDowntimeInline]
    actions = ["cancel_reservations", "release_reservations"]

    def get_queryset(self, request):
        return super().get_queryset(request).prefetch_related("segments")  # the total reads them: one query per page

    def has_operate_permission(self, request):
        return user_is_operator(user=request.user)

    def get_actions(self, request):
        actions = super().get_actions(request)
        actions.pop("delete_selected", None)
        return actions

    @admin.display(description="provider", ordering="cluster__site__owner__name")
    def provider(self, reservation):
        return reservation.cluster.site.owner

    @admin.display(description="start", ordering="start")
    def starts(self, reservation):
        return format_local_time(reservation.start)

    @admin.display(description="end", ordering="end")
    def ends(self, reservation):
        return format_local_time(reservation.end)

    @admin.display(description="booked until")
    def booked_until(self, reservation):
        return format_local_time(reservation.booked_end)

    @admin.display(description="released early at")
    def released(self, reservation):
        return format_local_time(reservation.released_at) or "-"

    @admin.display(description="locked price per card-hour")
    def locked_price(self, reservation):
        return format_money(reservation.price_per_card_hour_minor, reservation.currency)

    @admin.display(description="total")
    def total(self, reservation):
        return format_money(reservation.total_price_minor, reservation.currency)

    @admin.action(description="Cancel before the start (nothing to pay), with a note", permissions=["operate"])
    def cancel_reservations(self, request, queryset):
        return self._act(request, queryset, verb="cancel", service=reservation_cancel)

    @admin.action(description="Release now (billing ends now), with a note", permissions=["operate"])
    def release_reservations(self, request, queryset):
        return self._act(request, queryset, verb="release", service=reservation_release)

    def _act(self, request, queryset, *, verb: str, service):
        """First show the chosen reservations and ask for the note; then run the service on each, as the
        operator. A reservation the lifecycle does not allow it for is reported and left as it is."""
        form = OperatorNoteForm(request.POST if "apply" in request.POST else None)
        if not form.is_valid():
            return TemplateResponse(request, "admin/marketplace/reservation/operator_action.html", {
                **self.admin_site.each_context(request),
                "title": f"{verb.capitalize()} reservations",
                "opts": self.model._meta,
                "verb": verb,
                "action": request.POST.get("action"),
                "reservations": queryset.select_related("buyer"),
                "form": form,
            })
        done, refused = [], []
        for reservation in queryset.order_by("pk"):
            try:
                service(reservation=reservation, actor=request.user, reason=form.cleaned_data["reason"], by_operator=True)
            except (ReservationStateError, BookingConflict, ValidationError) as error:
                message = getattr(error, "message", None) or "; ".join(getattr(error, "messages", [str(error)]))
                refused.append(f"#{reservation.pk}: {message}")
            else:
                done.append(f"#{reservation.pk}")
        if done:
            self.message_user(request, f"{verb.capitalize()}: {', '.join(done)}.", messages.SUCCESS)
        if refused:
            self.message_user(request, f"Not {verb}ed - " + " ".join(refused), messages.ERROR)
        return None


class OperatorEditable:
    """Operators maintain this catalog (image names age): they view, add and change it. Deleting a
    template a reservation used is refused by the database (PROTECT); deactivate it instead."""

    def has_module_permission(self, request):
        return user_is_operator(user=request.user)

    def has_view_permission(self, request, obj=None):
        return user_is_operator(user=request.user)

    def has_add_permission(self, request, obj=None):
        return user_is_operator(user=request.user)

    def has_change_permission(self, request, obj=None):
        return user_is_operator(user=request.user)

    def has_delete_permission(self, request, obj=None):
        return user_is_operator(user=request.user)


class LaunchTemplateImageInline(OperatorEditable, admin.TabularInline):
    model = LaunchTemplateImage
    extra = 0
    fields = ["stack", "image", "notes"]


@admin.register(LaunchTemplate)
class LaunchTemplateAdmin(OperatorEditable, admin.ModelAdmin):
    list_display = ["name", "slug", "workload_kind", "is_active", "stacks"]
    list_filter = ["workload_kind", "is_active"]
    search_fields = ["name", "slug", "images__image"]
    inlines = [LaunchTemplateImageInline]

    def get_queryset(self, request):
        return super().get_queryset(request).prefetch_related("images")

    @admin.display(description="stacks with an image")
    def stacks(self, obj):
        return ", ".join(sorted(image.stack for image in obj.images.all())) or "none"
