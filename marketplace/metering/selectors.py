"""Reads of metering for billing (evidence beside each line) and the dashboards.

Billable time is NOT here: it comes from the reservation's active periods (see __init__.py).
"""

from django.db.models import F, FloatField, Max, QuerySet, Sum
from django.db.models.functions import Coalesce

from marketplace.models import Reservation, UsageHourly


def reservation_usage_hours(*, reservation: Reservation) -> QuerySet[UsageHourly]:
    """The reservation's hourly usage rows (one per device and hour), oldest first."""
    return UsageHourly.objects.filter(reservation=reservation).order_by("hour", "device_id")


def reservation_usage_summary(*, reservation: Reservation) -> dict:
    """Totals over the reservation's hours: samples, busy seconds, energy (Wh), peak memory, and the
    mean utilization weighted by each hour's samples (so a half-measured hour counts half)."""
    totals = UsageHourly.objects.filter(reservation=reservation).aggregate(
        total_samples=Coalesce(Sum("samples"), 0),
        total_busy_seconds=Coalesce(Sum("busy_seconds"), 0.0),
        total_energy_wh=Coalesce(Sum("energy_wh"), 0.0),
        peak_memory_mib=Max("memory_max_mib"),
        weighted_utilization=Sum(F("utilization_mean") * F("samples"), output_field=FloatField()),
    )
    samples = totals["total_samples"]
    return {
        "samples": samples,
        "busy_seconds": totals["total_busy_seconds"],
        "energy_wh": totals["total_energy_wh"],
        "memory_max_mib": totals["peak_memory_mib"],
        "utilization_mean": totals["weighted_utilization"] / samples if samples else None,
    }


def reservations_usage_hours_between(*, reservation_ids: list[int], start, end) -> QuerySet[UsageHourly]:
    """The hourly usage rows of several reservations with `hour` in [start, end): what billing shows
    beside each invoice line as its evidence (one query for a whole billing period of a buyer)."""
    return UsageHourly.objects.filter(reservation_id__in=reservation_ids, hour__gte=start, hour__lt=end).order_by("hour", "device_id")
