"""Browser forms of the provider pages. They only check the shape of the input; the rules live in
inventory.services, whose ValidationErrors are shown next to the same field names."""

from django import forms

from inventory.importers import NODE_IMPORT_MAX_BYTES
from inventory.models import AcceleratorModel, Cluster, Currency, Node, Province, Site
from inventory.services import MAX_DURATION_HOURS, SITE_INITIAL_LIFECYCLES, SITE_TRANSITIONS

DATETIME_LOCAL = forms.DateTimeInput(attrs={"type": "datetime-local"}, format="%Y-%m-%dT%H:%M")


class SiteForm(forms.Form):
    name = forms.CharField(max_length=200)
    country = forms.CharField(min_length=2, max_length=2, initial="CN", help_text="ISO 3166-1 code, e.g. CN.")
    province = forms.ModelChoiceField(
        queryset=Province.objects.select_related("hub"), required=False,
        help_text="The national computing hub follows from the province.",
    )
    city = forms.CharField(max_length=100, required=False)
    lifecycle = forms.ChoiceField(choices=[])
    power_capacity_mw = forms.DecimalField(label="Power capacity (MW)", max_digits=8, decimal_places=2, min_value=0, required=False)
    pue = forms.DecimalField(label="PUE", max_digits=4, decimal_places=2, min_value=1, max_value=3, required=False)
    certifications = forms.CharField(
        max_length=2000, required=False, help_text="Comma-separated, e.g. ISO 27001, Uptime Tier III."
    )

    def __init__(self, *args, site: Site | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        if site is None:
            allowed = list(SITE_INITIAL_LIFECYCLES)
        else:
            allowed = [site.lifecycle, *[s for s in Site.Lifecycle.values if s in SITE_TRANSITIONS[site.lifecycle]]]
        self.fields["lifecycle"].choices = [(value, Site.Lifecycle(value).label) for value in allowed]
        self.fields["province"].label_from_instance = lambda p: f"{p.name} ({p.hub.name} hub)" if p.hub else p.name

    @staticmethod
    def initial_for(site: Site) -> dict:
        return {
            "name": site.name, "country": site.country, "province": site.province_id, "city": site.city,
            "lifecycle": site.lifecycle, "power_capacity_mw": site.power_capacity_mw, "pue": site.pue,
            "certifications": ", ".join(site.certifications),
        }

    def clean_certifications(self):
        return [item.strip() for item in self.cleaned_data["certifications"].split(",") if item.strip()]


class ClusterForm(forms.Form):
    name = forms.CharField(max_length=100)
    fabric = forms.ChoiceField(choices=Cluster.Fabric.choices, help_text="The scale-out fabric the nodes share.")
    fabric_bandwidth_gbps = forms.IntegerField(label="Fabric bandwidth (Gbit/s per node)", min_value=1, max_value=51200)


class AcceleratorModelChoiceField(forms.ModelChoiceField):
    def label_from_instance(self, obj):
        return f"{obj.vendor} {obj.name}"


class NodeForm(forms.Form):
    hostname = forms.CharField(max_length=253)
    accelerator_model = AcceleratorModelChoiceField(queryset=AcceleratorModel.objects.all())
    card_count = forms.IntegerField(min_value=1, max_value=64, initial=8)
    cpu_model = forms.CharField(label="CPU model", max_length=120, required=False)
    cpu_cores = forms.IntegerField(label="CPU cores", min_value=1, max_value=4096)
    ram_gb = forms.IntegerField(label="RAM (GB)", min_value=1, max_value=65536)
    disk_gb = forms.IntegerField(label="Disk (GB)", min_value=1, max_value=10_000_000)


class NodeEditForm(forms.Form):
    """Model and card count are fixed once listed (devices and bookings hang off them)."""

    hostname = forms.CharField(max_length=253)
    cpu_model = forms.CharField(label="CPU model", max_length=120, required=False)
    cpu_cores = forms.IntegerField(label="CPU cores", min_value=1, max_value=4096)
    ram_gb = forms.IntegerField(label="RAM (GB)", min_value=1, max_value=65536)
    disk_gb = forms.IntegerField(label="Disk (GB)", min_value=1, max_value=10_000_000)
    status = forms.ChoiceField(choices=[])

    def __init__(self, *args, node: Node, **kwargs):
        from inventory.services import NODE_TRANSITIONS

        super().__init__(*args, **kwargs)
        allowed = [node.status, *[s for s in Node.Status.values if s in NODE_TRANSITIONS[node.status] and s != Node.Status.RETIRED]]
        self.fields["status"].choices = [(value, Node.Status(value).label) for value in allowed]


class OfferForm(forms.Form):
    accelerator_model = AcceleratorModelChoiceField(queryset=AcceleratorModel.objects.all())
    price_per_card_hour = forms.CharField(
        label="Price per card-hour", max_length=32, help_text="In yuan or dollars, at most 2 decimals, e.g. 25.00."
    )
    currency = forms.ChoiceField(choices=Currency.choices)
    min_duration_hours = forms.IntegerField(label="Minimum rental (hours)", min_value=1, max_value=MAX_DURATION_HOURS, initial=1)
    max_duration_hours = forms.IntegerField(label="Maximum rental (hours)", min_value=1, max_value=MAX_DURATION_HOURS, initial=24 * 90)
    rentable_from = forms.DateTimeField(required=False, widget=DATETIME_LOCAL, help_text="Empty: from now.")
    rentable_until = forms.DateTimeField(
        required=False, widget=DATETIME_LOCAL,
        help_text="Empty: open-ended. Ending it stops new bookings; bookings already made keep their cards.",
    )

    def __init__(self, *args, editing: bool = False, **kwargs):
        super().__init__(*args, **kwargs)
        if editing:
            del self.fields["accelerator_model"]


class MaintenanceWindowForm(forms.Form):
    node = forms.ModelChoiceField(queryset=Node.objects.none(), required=False, empty_label="The whole cluster")
    start = forms.DateTimeField(widget=DATETIME_LOCAL)
    end = forms.DateTimeField(widget=DATETIME_LOCAL, help_text="The window is [start, end), in your time zone.")
    reason = forms.CharField(max_length=300, required=False)

    def __init__(self, *args, cluster: Cluster, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["node"].queryset = cluster.nodes.exclude(status=Node.Status.RETIRED).order_by("hostname")


class NodeImportForm(forms.Form):
    file = forms.FileField(
        label="CSV file",
        help_text="Header: hostname,cluster,accelerator_model,card_count,cpu_cores,ram_gb,disk_gb[,cpu_model]. At most 5 MB.",
    )

    def clean_file(self):
        upload = self.cleaned_data["file"]
        if upload.size > NODE_IMPORT_MAX_BYTES:
            raise forms.ValidationError(
                f"The file is {upload.size / 1024 / 1024:.1f} MB; the limit is {NODE_IMPORT_MAX_BYTES // 1024 // 1024} MB. Nothing was imported."
            )
        return upload


class NodeMarkFailedForm(forms.Form):
    """An operator declares a node failed (inventory.services.node_mark_failed)."""

    node = forms.IntegerField(min_value=1, label="Node id", help_text="The id from the lists above (or the admin, or the provider's node page).")
    cause = forms.ChoiceField(choices=[
        ("host_fault", "Host fault"), ("network", "Network"), ("maintenance", "Declared maintenance"),
    ], initial="host_fault")
    reason = forms.CharField(max_length=250, label="Why", help_text="Kept in the node's audit trail.")
    confirm = forms.BooleanField(label="I confirm: this node's reservations move to other cards (or end if none are free).")
