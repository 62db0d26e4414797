"""Reasons of reservation status events become a code with parameters (marketplace.reasons).

Existing rows keep their free text in `reason` (the fallback shown for a row without a code). Rows
whose text is one of the sentences the services used to write get the matching code and parameters,
so they render in the reader's zone and money format too; anything else (a buyer's or a demo's own
words) keeps only its text. The patterns are copied here on purpose: a migration must not change
meaning when the application's code changes later.
"""

import re
from datetime import UTC, datetime

from django.db import migrations, models

EXACT = {
    "The start time was reached.": "start_reached",
    "Devices handed over.": "handed_over",
    "The booked period ended.": "period_ended",
    "Cancelled by the buyer before the start; nothing to pay.": "cancelled_by_buyer",
    (
        "The booked period ended before the cards were handed over (the scheduler was not running); "
        "it never became active, so nothing is billed."
    ): "never_handed_over",
}
BOOKED = re.compile(r"^Booked (?P<cards>\d+) cards at (?P<minor>\d+) (?P<currency>[A-Z]{3}) minor units per card-hour\.$")
RELEASED = re.compile(r"^Released early by the buyer \(booked until (?P<until>[^)]+)\)\.(?P<never> It never became active\.)?$")
EXTENDED = re.compile(r"^Extended from (?P<old>\S+) to (?P<new>\S+) on the same cards\.$")
UNHEALTHY = re.compile(
    r"^(?P<count>\d+) of the (?P<cards>\d+) cards sit on a node that is not online or is flagged, or on a site that "
    r"is not online; billing starts only after the node passes its health check, so nothing is billed\.$"
)


def _utc(text: str) -> str:
    value = datetime.fromisoformat(text)
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).isoformat()


def code_for(reason: str) -> tuple[str, dict] | None:
    if reason in EXACT:
        return EXACT[reason], {}
    if match := BOOKED.match(reason):
        return "booked", {"cards": int(match["cards"]), "price": {"minor": int(match["minor"]), "currency": match["currency"]}}
    if match := RELEASED.match(reason):
        return ("released_before_active" if match["never"] else "released_early"), {"booked_until": _utc(match["until"])}
    if match := EXTENDED.match(reason):
        return "extended", {"old_end": _utc(match["old"]), "new_end": _utc(match["new"])}
    if match := UNHEALTHY.match(reason):
        return "unhealthy_at_activation", {"count": int(match["count"]), "cards": int(match["cards"])}
    return None


def forwards(apps, schema_editor):
    ReservationStatusChange = apps.get_model("marketplace", "ReservationStatusChange")
    changed = []
    for event in ReservationStatusChange.objects.exclude(reason="").only("id", "reason").iterator(chunk_size=2000):
        try:
            found = code_for(event.reason)
        except ValueError:  # a time that does not parse: keep the text only
            found = None
        if found is not None:
            event.reason_code, event.reason_params = found
            changed.append(event)
    ReservationStatusChange.objects.bulk_update(changed, ["reason_code", "reason_params"], batch_size=2000)


class Migration(migrations.Migration):
    dependencies = [("marketplace", "0001_initial")]

    operations = [
        migrations.AddField(
            model_name="reservationstatuschange",
            name="reason_code",
            field=models.CharField(blank=True, max_length=40),
        ),
        migrations.AddField(
            model_name="reservationstatuschange",
            name="reason_params",
            field=models.JSONField(blank=True, default=dict),
        ),
        # The old text stays: it is the fallback for rows the patterns above do not recognise.
        migrations.RunPython(forwards, migrations.RunPython.noop),
    ]
