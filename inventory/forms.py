"""Browser forms of the provider pages. They only check the shape of the input; the rules live in
inventory.services, whose ValidationErrors are shown next to the same field names."""

from django import forms
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from inventory.importers import NODE_IMPORT_MAX_BYTES
from inventory.models import AcceleratorModel, Cluster, Currency, Node, Province, ReliabilityEvent, Site
from inventory.services import MAX_DURATION_HOURS, SITE_INITIAL_LIFECYCLES, SITE_TRANSITIONS
from inventory.templatetags.localnames import local_name, vendor_name

DATETIME_LOCAL = forms.DateTimeInput(attrs={"type": "datetime-local"}, format="%Y-%m-%dT%H:%M")


class SiteForm(forms.Form):
    name = forms.CharField(label=gettext_lazy("Name"), max_length=200)
    country = forms.CharField(
        label=gettext_lazy("Country"), min_length=2, max_length=2, initial="CN", help_text=gettext_lazy("ISO 3166-1 code, e.g. CN.")
    )
    province = forms.ModelChoiceField(
        label=gettext_lazy("Province"), queryset=Province.objects.select_related("hub"), required=False,
        help_text=gettext_lazy("The national hub follows from the province."),
    )
    city = forms.CharField(label=gettext_lazy("City"), max_length=100, required=False)
    lifecycle = forms.ChoiceField(label=gettext_lazy("Lifecycle"), choices=[])
    power_capacity_mw = forms.DecimalField(label=gettext_lazy("Power capacity (MW)"), max_digits=8, decimal_places=2, min_value=0, required=False)
    pue = forms.DecimalField(label="PUE", max_digits=4, decimal_places=2, min_value=1, max_value=3, required=False)
    certifications = forms.CharField(
        label=gettext_lazy("Certifications"), max_length=2000, required=False,
        help_text=gettext_lazy("Comma-separated, e.g. ISO 27001, Uptime Tier III."),
    )

    def __init__(self, *args, site: Site | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        if site is None:
            allowed = list(SITE_INITIAL_LIFECYCLES)
        else:
            allowed = [site.lifecycle, *[s for s in Site.Lifecycle.values if s in SITE_TRANSITIONS[site.lifecycle]]]
        self.fields["lifecycle"].choices = [(value, Site.Lifecycle(value).label) for value in allowed]
        self.fields["province"].label_from_instance = _province_label

    @staticmethod
    def initial_for(site: Site) -> dict:
        return {
            "name": site.name, "country": site.country, "province": site.province_id, "city": site.city,
            "lifecycle": site.lifecycle, "power_capacity_mw": site.power_capacity_mw, "pue": site.pue,
            "certifications": ", ".join(site.certifications),
        }

    def clean_certifications(self):
        return [item.strip() for item in self.cleaned_data["certifications"].split(",") if item.strip()]


def _province_label(province: Province) -> str:
    """A province with its national hub, both in the reader's language."""
    if province.hub is None:
        return local_name(province)
    return _("%(province)s (%(hub)s hub)") % {"province": local_name(province), "hub": local_name(province.hub)}


class ClusterForm(forms.Form):
    name = forms.CharField(label=gettext_lazy("Name"), max_length=100)
    fabric = forms.ChoiceField(
        label=gettext_lazy("Fabric"), choices=Cluster.Fabric.choices, help_text=gettext_lazy("The scale-out fabric the nodes share.")
    )
    fabric_bandwidth_gbps = forms.IntegerField(label=gettext_lazy("Fabric bandwidth (Gbit/s per node)"), min_value=1, max_value=51200)


class AcceleratorModelChoiceField(forms.ModelChoiceField):
    def label_from_instance(self, obj):
        return f"{vendor_name(obj.vendor)} {obj.name}"


class NodeForm(forms.Form):
    hostname = forms.CharField(label=gettext_lazy("Hostname"), max_length=253)
    accelerator_model = AcceleratorModelChoiceField(label=gettext_lazy("Accelerator model"), queryset=AcceleratorModel.objects.all())
    card_count = forms.IntegerField(label=gettext_lazy("Cards"), min_value=1, max_value=64, initial=8)
    cpu_model = forms.CharField(label=gettext_lazy("CPU model"), max_length=120, required=False)
    cpu_cores = forms.IntegerField(label=gettext_lazy("CPU cores"), min_value=1, max_value=4096)
    ram_gb = forms.IntegerField(label=gettext_lazy("RAM (GB)"), min_value=1, max_value=65536)
    disk_gb = forms.IntegerField(label=gettext_lazy("Disk (GB)"), min_value=1, max_value=10_000_000)


class NodeEditForm(forms.Form):
    """Model and card count are fixed once listed (devices and bookings hang off them)."""

    hostname = forms.CharField(label=gettext_lazy("Hostname"), max_length=253)
    cpu_model = forms.CharField(label=gettext_lazy("CPU model"), max_length=120, required=False)
    cpu_cores = forms.IntegerField(label=gettext_lazy("CPU cores"), min_value=1, max_value=4096)
    ram_gb = forms.IntegerField(label=gettext_lazy("RAM (GB)"), min_value=1, max_value=65536)
    disk_gb = forms.IntegerField(label=gettext_lazy("Disk (GB)"), min_value=1, max_value=10_000_000)
    status = forms.ChoiceField(label=gettext_lazy("Status"), choices=[])

    def __init__(self, *args, node: Node, **kwargs):
        from inventory.services import NODE_TRANSITIONS

        super().__init__(*args, **kwargs)
        allowed = [node.status, *[s for s in Node.Status.values if s in NODE_TRANSITIONS[node.status] and s != Node.Status.RETIRED]]
        self.fields["status"].choices = [(value, Node.Status(value).label) for value in allowed]


class OfferForm(forms.Form):
    accelerator_model = AcceleratorModelChoiceField(label=gettext_lazy("Accelerator model"), queryset=AcceleratorModel.objects.all())
    price_per_card_hour = forms.CharField(
        label=gettext_lazy("Price per card-hour"), max_length=32,
        help_text=gettext_lazy("In yuan or dollars, at most 2 decimals, e.g. 25.00."),
    )
    currency = forms.ChoiceField(label=gettext_lazy("Currency"), choices=Currency.choices)
    min_duration_hours = forms.IntegerField(label=gettext_lazy("Minimum rental (hours)"), min_value=1, max_value=MAX_DURATION_HOURS, initial=1)
    max_duration_hours = forms.IntegerField(label=gettext_lazy("Maximum rental (hours)"), min_value=1, max_value=MAX_DURATION_HOURS, initial=24 * 90)
    rentable_from = forms.DateTimeField(
        label=gettext_lazy("Rentable from"), required=False, widget=DATETIME_LOCAL, help_text=gettext_lazy("Empty: from now.")
    )
    rentable_until = forms.DateTimeField(
        label=gettext_lazy("Rentable until"), required=False, widget=DATETIME_LOCAL,
        help_text=gettext_lazy("Empty: no end. Ending it stops new bookings; bookings already made keep their cards."),
    )

    def __init__(self, *args, editing: bool = False, **kwargs):
        super().__init__(*args, **kwargs)
        if editing:
            del self.fields["accelerator_model"]


class MaintenanceWindowForm(forms.Form):
    node = forms.ModelChoiceField(
        label=gettext_lazy("Node"), queryset=Node.objects.none(), required=False, empty_label=gettext_lazy("The whole cluster")
    )
    start = forms.DateTimeField(label=gettext_lazy("Start"), widget=DATETIME_LOCAL)
    end = forms.DateTimeField(
        label=gettext_lazy("End"), widget=DATETIME_LOCAL, help_text=gettext_lazy("The window is [start, end), in your time zone.")
    )
    reason = forms.CharField(label=gettext_lazy("Reason"), max_length=300, required=False)

    def __init__(self, *args, cluster: Cluster, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["node"].queryset = cluster.nodes.exclude(status=Node.Status.RETIRED).order_by("hostname")


class NodeImportForm(forms.Form):
    file = forms.FileField(
        label=gettext_lazy("CSV file"),
        help_text=gettext_lazy("Header: hostname,cluster,accelerator_model,card_count,cpu_cores,ram_gb,disk_gb[,cpu_model]. At most 5 MB."),
    )

    def clean_file(self):
        upload = self.cleaned_data["file"]
        if upload.size > NODE_IMPORT_MAX_BYTES:
            raise forms.ValidationError(
                _("The file is %(size).1f MB; the limit is %(limit)d MB. Nothing was imported.")
                % {"size": upload.size / 1024 / 1024, "limit": NODE_IMPORT_MAX_BYTES // 1024 // 1024}
            )
        return upload


class NodeMarkFailedForm(forms.Form):
    """An operator declares a node failed (inventory.services.node_mark_failed)."""

    node = forms.IntegerField(min_value=1, label=gettext_lazy("Node id"),
                              help_text=gettext_lazy("The id from the lists above (or the admin, or the provider's node page)."))
    cause = forms.ChoiceField(label=gettext_lazy("Cause"), choices=ReliabilityEvent.Cause.choices, initial="host_fault")
    reason = forms.CharField(max_length=250, label=gettext_lazy("Why"), help_text=gettext_lazy("Kept in the node's audit trail."))
    confirm = forms.BooleanField(
        label=gettext_lazy("I confirm: this node's reservations move to other cards (or end if none are free).")
    )
