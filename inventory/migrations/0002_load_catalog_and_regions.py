"""Load the accelerator catalog and the regions from inventory/data/*.csv (re-runnable: upserts)."""

from django.db import migrations

from inventory.catalog import load_catalog, load_regions


def forwards(apps, schema_editor):
    load_catalog(accelerator_model_cls=apps.get_model("inventory", "AcceleratorModel"))
    load_regions(national_hub_cls=apps.get_model("inventory", "NationalHub"), province_cls=apps.get_model("inventory", "Province"))


class Migration(migrations.Migration):
    dependencies = [("inventory", "0001_initial")]
    operations = [migrations.RunPython(forwards, migrations.RunPython.noop)]
