"""Allocation history: the booked period, and when and why a row was released or truncated.

Existing rows get booked_period = period (what they were booked for, as far as anyone can tell now:
earlier truncations overwrote the period in place) and no release stamp.
"""

import django.contrib.postgres.fields.ranges
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("inventory", "0006_allocation_offer_busy_slim_index")]

    operations = [
        migrations.AddField(
            model_name="deviceallocation",
            name="booked_period",
            field=django.contrib.postgres.fields.ranges.DateTimeRangeField(null=True),
        ),
        migrations.RunSQL(
            "UPDATE inventory_deviceallocation SET booked_period = period WHERE booked_period IS NULL",
            reverse_sql=migrations.RunSQL.noop,
        ),
        migrations.AlterField(
            model_name="deviceallocation",
            name="booked_period",
            field=django.contrib.postgres.fields.ranges.DateTimeRangeField(),
        ),
        migrations.AddField(
            model_name="deviceallocation",
            name="released_at",
            field=models.DateTimeField(blank=True, null=True),
        ),
        migrations.AddField(
            model_name="deviceallocation",
            name="release_reason",
            field=models.CharField(
                blank=True,
                choices=[
                    ("cancelled", "Cancelled before the start"),
                    ("released_early", "Released early"),
                    ("failed", "The reservation failed"),
                    ("rehomed", "Moved to other devices"),
                    ("maintenance_cancelled", "Maintenance window called off"),
                ],
                default="",
                max_length=24,
            ),
            preserve_default=False,
        ),
    ]
