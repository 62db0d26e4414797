"""Loads the launch templates and their images per software stack (marketplace.launch.LAUNCH_TEMPLATES).

Only creates what is missing, so operators' edits in the admin survive; reversing leaves the rows
(reservations may point at them)."""

from django.db import migrations


def load(apps, schema_editor):
    from marketplace.launch import load_launch_templates

    load_launch_templates(
        template_cls=apps.get_model("marketplace", "LaunchTemplate"),
        image_cls=apps.get_model("marketplace", "LaunchTemplateImage"),
    )


class Migration(migrations.Migration):
    dependencies = [("marketplace", "0005_launch_templates")]

    operations = [migrations.RunPython(load, migrations.RunPython.noop)]
