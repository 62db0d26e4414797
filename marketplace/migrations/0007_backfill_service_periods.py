"""Give reservations that were active or completed before service periods existed (0004) their active
period and segments, so an existing database does not show them as 0.00 nor leave them unbillable.

What could be known then: the reservation turned active when its `active` status change was written
(else at its start), and a completed one ran to its end (an early release set `end` to the release).
One segment per node, from the reservation's allocations. Uses the historical models only.
"""

from django.db import migrations

SERVED = ("active", "migrating", "completed")


def backfill(apps, schema_editor):
    Reservation = apps.get_model("marketplace", "Reservation")
    ReservationStatusChange = apps.get_model("marketplace", "ReservationStatusChange")
    ReservationSegment = apps.get_model("marketplace", "ReservationSegment")
    DeviceAllocation = apps.get_model("inventory", "DeviceAllocation")
    pending = Reservation.objects.filter(status__in=SERVED, active_from__isnull=True).select_related("offer__cluster__site")
    for reservation in pending.iterator():
        turned_active = (
            ReservationStatusChange.objects.filter(reservation_id=reservation.pk, to_status="active")
            .order_by("created_at").values_list("created_at", flat=True).first()
        )
        active_from = max(turned_active or reservation.start, reservation.start)
        active_to = reservation.end if reservation.status == "completed" else None
        if active_to is not None and active_to < active_from:
            active_from = active_to
        devices_by_node: dict[int, list[int]] = {}
        for device_id, node_id in DeviceAllocation.objects.filter(
            reservation_id=reservation.pk, purpose="reservation", is_active=True
        ).values_list("device_id", "node_id"):
            devices_by_node.setdefault(node_id, []).append(device_id)
        for node_id, device_ids in sorted(devices_by_node.items()):
            ReservationSegment.objects.create(
                reservation_id=reservation.pk, node_id=node_id, device_ids=sorted(device_ids),
                provider_id=reservation.offer.cluster.site.owner_id, offer_id=reservation.offer_id,
                started_at=active_from, ended_at=active_to,
                price_per_card_hour_minor=reservation.price_per_card_hour_minor, currency=reservation.currency,
            )
        Reservation.objects.filter(pk=reservation.pk).update(active_from=active_from, active_to=active_to)


class Migration(migrations.Migration):
    dependencies = [("marketplace", "0006_load_launch_templates")]

    operations = [migrations.RunPython(backfill, migrations.RunPython.noop)]
