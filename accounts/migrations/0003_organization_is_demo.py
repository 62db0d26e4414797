from django.db import migrations, models

DEMO_DOMAIN = "demo.computeflow.test"


def mark_seeded_demo_organizations(apps, schema_editor):
    """Databases seeded before this field existed: the demo organizations are those seed_demo made,
    owned by a user of the demo mail domain (exactly that domain or a subdomain of it; .test cannot
    receive mail, so no real organization has such an owner). From now on seed_demo sets the flag."""
    Organization = apps.get_model("accounts", "Organization")
    Membership = apps.get_model("accounts", "Membership")
    owners = Membership.objects.filter(role="owner")
    demo_owned = owners.filter(user__email__iendswith=f"@{DEMO_DOMAIN}") | owners.filter(user__email__iendswith=f".{DEMO_DOMAIN}")
    Organization.objects.filter(pk__in=demo_owned.values("organization_id")).update(is_demo=True)


class Migration(migrations.Migration):
    dependencies = [("accounts", "0002_staff_groups")]

    operations = [
        migrations.AddField(model_name="organization", name="is_demo", field=models.BooleanField(default=False)),
        migrations.RunPython(mark_seeded_demo_organizations, migrations.RunPython.noop),
    ]
