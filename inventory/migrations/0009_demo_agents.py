"""The demo's stand-in beat task (inventory.nodes_demo_heartbeat) is gone: simulated agents speak for the
demo nodes over the agent API (manage.py run_demo_agents). The database scheduler keeps the periodic tasks
it once read from CELERY_BEAT_SCHEDULE, so the old entry is removed here; otherwise beat would send a
task no worker knows every 30 seconds."""

from django.db import migrations

OLD_ENTRY = "nodes-demo-heartbeat"
OLD_TASK = "inventory.nodes_demo_heartbeat"


def forwards(apps, schema_editor):
    PeriodicTask = apps.get_model("django_celery_beat", "PeriodicTask")
    PeriodicTask.objects.filter(name=OLD_ENTRY, task=OLD_TASK).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("inventory", "0008_reliability"),
        ("django_celery_beat", "0019_alter_periodictasks_options"),
    ]

    operations = [migrations.RunPython(forwards, migrations.RunPython.noop)]
