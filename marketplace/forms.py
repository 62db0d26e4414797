"""Input validation shared by the buyer pages and the REST API.

The search form validates the GET query string of both GET /market/ and GET /api/offers/, so a
shared search URL means the same thing in both places. Prices in filters are in major units
(25.00 = 25 CNY) and need a currency: CNY is never compared with USD.
"""

from datetime import timedelta
from decimal import Decimal

from django import forms
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from inventory.models import Cluster, Currency, NationalHub, Province, SoftwareStack
from inventory.pricing import major_to_minor
from inventory.selectors import (
    accelerator_model_choices,
    accelerator_models_for,
    catalog_vendor_choices,
    vendor_names_for,
)
from inventory.services import CALENDAR_HORIZON_MESSAGE, beyond_calendar_horizon
from inventory.templatetags.localnames import local_name
from marketplace.launch import launch_template_list
from marketplace.selectors import DEFAULT_SORT
from marketplace.services import MAX_CARDS_PER_BOOKING
from marketplace.windows import window_errors

SORT_LABELS = {
    "price_per_ecu": gettext_lazy("Price per ECU-hour (low first)"),
    "-price_per_ecu": gettext_lazy("Price per ECU-hour (high first)"),
    "price": gettext_lazy("Price per card-hour (low first)"),
    "-price": gettext_lazy("Price per card-hour (high first)"),
    "-free_cards": gettext_lazy("Free cards (most first)"),
    "free_cards": gettext_lazy("Free cards (fewest first)"),
    "-ecu": gettext_lazy("ECU per card (most first)"),
    "ecu": gettext_lazy("ECU per card (least first)"),
}
PAGINATION_PARAMS = {"page", "page_size"}


def to_minor(amount: Decimal | None) -> int | None:
    """A filter or budget in major units -> minor units, by inventory's one conversion rule (the
    fields allow at most 2 decimals, so nothing is rounded away)."""
    return None if amount is None else major_to_minor(amount)


class WindowMixin:
    """start/end as a half-open window [start, end): both or neither, end after start, not in the past."""

    window_required = False

    def clean_window(self, cleaned):
        start, end = cleaned.get("start"), cleaned.get("end")
        if "start" in self.errors or "end" in self.errors:
            return
        if (start is None) != (end is None):
            self.add_error("end" if end is None else "start", _("Give both the start and the end of the window."))
            return
        if start is None:
            if self.window_required:
                self.add_error("start", _("This field is required."))
            return
        for name, messages in window_errors(start=start, end=end).items():
            for message in messages:
                self.add_error(name, message)


def _province_choices():
    return [("", _("Any province"))] + [(p.code, f"{local_name(p)} ({p.code})") for p in Province.objects.order_by("name")]


def _with_current(choices: list, value: str | None) -> list:
    """Keep a typed value (a shared URL's "huawei") selected in a select box of catalog choices."""
    known = {key for key, label in choices if not isinstance(label, list | tuple)} | {
        key for _key, group in choices if isinstance(group, list | tuple) for key, _label in group
    }
    return choices if not value or value in known else [*choices, (value, value)]


WORKLOAD_LABEL = gettext_lazy("Workload")
ANY_WORKLOAD_LABEL = gettext_lazy("Any workload")


def launch_template_field(*, label=WORKLOAD_LABEL, any_label=ANY_WORKLOAD_LABEL) -> forms.ModelChoiceField:
    """A template picked by slug, from the active templates (one select in every form, one rule in the API).
    Optional: left out, a filter does not filter and a booking runs the default template."""
    return forms.ModelChoiceField(
        required=False, queryset=launch_template_list(), to_field_name="slug", label=label, empty_label=any_label,
        error_messages={"invalid_choice": gettext_lazy("No such launch template: pick one of GET /api/launch-templates/ (by slug).")},
    )


class OfferSearchForm(WindowMixin, forms.Form):
    # Text fields shown as select boxes of the catalog: the page offers choices, the API (same form)
    # also takes typed text, matched by inventory's rules (vendor_names_for, accelerator_models_for).
    vendor = forms.CharField(required=False, max_length=64, label=gettext_lazy("Vendor"), widget=forms.Select)
    model = forms.CharField(required=False, max_length=128, label=gettext_lazy("Accelerator model"), widget=forms.Select)
    min_memory_gb = forms.IntegerField(required=False, min_value=1, max_value=10_000, label=gettext_lazy("Min memory per card (GB)"))
    min_free_cards = forms.IntegerField(required=False, min_value=1, max_value=MAX_CARDS_PER_BOOKING, label=gettext_lazy("Min free cards"))
    stack = forms.MultipleChoiceField(required=False, choices=SoftwareStack.choices, label=gettext_lazy("Software stack"),
                                      widget=forms.SelectMultiple(attrs={"size": 4}))
    country = forms.CharField(required=False, min_length=2, max_length=2, label=gettext_lazy("Country (ISO code)"))
    province = forms.ChoiceField(required=False, choices=(), label=gettext_lazy("Province"))
    hub = forms.ModelChoiceField(required=False, queryset=NationalHub.objects.all(), label=gettext_lazy("National hub"), empty_label=gettext_lazy("Any hub"))
    fabric = forms.ChoiceField(required=False, choices=[("", gettext_lazy("Any fabric")), *Cluster.Fabric.choices], label=gettext_lazy("Fabric"))
    currency = forms.ChoiceField(required=False, choices=[("", gettext_lazy("Any currency")), *Currency.choices], label=gettext_lazy("Currency"))
    max_price_per_card_hour = forms.DecimalField(required=False, min_value=Decimal("0.01"), max_digits=12, decimal_places=2,
                                                 label=gettext_lazy("Max price per card-hour"))
    max_price_per_ecu_hour = forms.DecimalField(required=False, min_value=Decimal("0.01"), max_digits=12, decimal_places=2,
                                                label=gettext_lazy("Max price per ECU-hour"))
    start = forms.DateTimeField(required=False, label=gettext_lazy("Window start"),
                                widget=forms.DateTimeInput(attrs={"type": "datetime-local"}, format="%Y-%m-%dT%H:%M"))
    end = forms.DateTimeField(required=False, label=gettext_lazy("Window end"),
                              widget=forms.DateTimeInput(attrs={"type": "datetime-local"}, format="%Y-%m-%dT%H:%M"))
    sort = forms.ChoiceField(required=False, choices=[(key, SORT_LABELS[key]) for key in SORT_LABELS], label=gettext_lazy("Sort"))
    # Only hardware that can run the workload (its stack has an image for the template).
    launch_template = launch_template_field(label=gettext_lazy("Runs workload"))
    min_reliability = forms.IntegerField(required=False, min_value=0, max_value=100, label=gettext_lazy("Min provider reliability (0-100)"))

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["province"].choices = _province_choices()
        self.fields["hub"].label_from_instance = local_name
        # Callables: the catalog is read only when a page renders the select boxes, not for an API call.
        self.fields["vendor"].widget.choices = lambda: [("", _("Any vendor")), *_with_current(catalog_vendor_choices(), self.data.get("vendor"))]
        self.fields["model"].widget.choices = lambda: [("", _("Any model")), *_with_current(accelerator_model_choices(), self.data.get("model"))]

    def clean_vendor(self):
        vendor = " ".join((self.cleaned_data.get("vendor") or "").split())
        if vendor and not vendor_names_for(vendor):
            known = ", ".join(name for name, _label in catalog_vendor_choices())
            raise forms.ValidationError(_('No vendor in the catalog matches "%(vendor)s". Vendors: %(known)s.') % {"vendor": vendor, "known": known})
        return vendor

    def clean_model(self):
        model = " ".join((self.cleaned_data.get("model") or "").split())
        if model and not accelerator_models_for(model).exists():
            raise forms.ValidationError(
                _('No accelerator model in the catalog is called "%(model)s": give its name (e.g. "H100 SXM5 80GB") or slug.')
                % {"model": model}
            )
        return model

    def unknown_parameters(self) -> list[str]:
        return sorted(set(self.data) - set(self.fields) - PAGINATION_PARAMS)

    def clean(self):
        cleaned = super().clean()
        self.clean_window(cleaned)
        unknown = self.unknown_parameters()
        if unknown:
            raise forms.ValidationError(_("Unknown filter(s): %(names)s.") % {"names": ", ".join(unknown)}, code="unknown")
        if (cleaned.get("max_price_per_card_hour") or cleaned.get("max_price_per_ecu_hour")) and not cleaned.get("currency"):
            self.add_error("currency", _("Give the currency of the maximum price (CNY and USD are never compared)."))
        return cleaned

    def search_kwargs(self) -> dict:
        data = self.cleaned_data
        return {
            "start": data.get("start"),
            "end": data.get("end"),
            "vendor": data.get("vendor") or None,
            "accelerator_model": data.get("model") or None,
            "min_memory_gb": data.get("min_memory_gb"),
            "min_free_cards": data.get("min_free_cards"),
            "stacks": data.get("stack") or None,
            "country": data.get("country") or None,
            "province": data.get("province") or None,
            "hub": data["hub"].pk if data.get("hub") else None,
            "fabric": data.get("fabric") or None,
            "currency": data.get("currency") or None,
            "max_price_per_card_hour_minor": to_minor(data.get("max_price_per_card_hour")),
            "max_price_per_ecu_hour_minor": to_minor(data.get("max_price_per_ecu_hour")),
            "launch_template": data.get("launch_template"),
            "min_reliability": data.get("min_reliability"),
            "sort": data.get("sort") or DEFAULT_SORT,
        }


class QuoteForm(WindowMixin, forms.Form):
    """What the job needs: cards (or total ECU), memory, stacks, regions, when, and a budget."""

    window_required = True

    cards = forms.IntegerField(required=False, min_value=1, max_value=MAX_CARDS_PER_BOOKING, label=gettext_lazy("Cards"))
    total_ecu = forms.DecimalField(required=False, min_value=Decimal("0.0001"), max_value=Decimal("100000"),
                                   max_digits=12, decimal_places=4, label=gettext_lazy("Or total ECU (PFLOP/s dense BF16)"))
    min_memory_gb = forms.IntegerField(required=False, min_value=1, max_value=10_000, label=gettext_lazy("Min memory per card (GB)"))
    stacks = forms.MultipleChoiceField(required=False, choices=SoftwareStack.choices, label=gettext_lazy("Acceptable software stacks"),
                                       widget=forms.SelectMultiple(attrs={"size": 5}))
    provinces = forms.MultipleChoiceField(required=False, choices=(), label=gettext_lazy("Provinces"),
                                          widget=forms.SelectMultiple(attrs={"size": 5}))
    hubs = forms.ModelMultipleChoiceField(required=False, queryset=NationalHub.objects.all(), label=gettext_lazy("National hubs"),
                                          widget=forms.SelectMultiple(attrs={"size": 4}))
    countries = forms.CharField(required=False, max_length=200, label=gettext_lazy("Countries (ISO codes, comma separated)"))
    start = forms.DateTimeField(label=gettext_lazy("Start"),
                                widget=forms.DateTimeInput(attrs={"type": "datetime-local"}, format="%Y-%m-%dT%H:%M"))
    end = forms.DateTimeField(required=False, label=gettext_lazy("End"), widget=forms.DateTimeInput(attrs={"type": "datetime-local"}, format="%Y-%m-%dT%H:%M"),
                              help_text=gettext_lazy("Or give a duration."))
    duration_hours = forms.IntegerField(required=False, min_value=1, max_value=24 * 366, label=gettext_lazy("Duration (hours)"))
    currency = forms.ChoiceField(choices=Currency.choices, initial=Currency.CNY, label=gettext_lazy("Currency"))
    max_total_price = forms.DecimalField(required=False, min_value=Decimal("0.01"), max_digits=14, decimal_places=2,
                                         label=gettext_lazy("Budget: max total price"))
    max_price_per_ecu_hour = forms.DecimalField(required=False, min_value=Decimal("0.01"), max_digits=12, decimal_places=2,
                                                label=gettext_lazy("Budget: max price per ECU-hour"))
    # Offers whose stack has no image for it are excluded with their own reason.
    launch_template = launch_template_field()
    min_reliability = forms.IntegerField(required=False, min_value=0, max_value=100, label=gettext_lazy("Min provider reliability (0-100)"))

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["provinces"].choices = _province_choices()[1:]
        self.fields["hubs"].label_from_instance = local_name

    def clean_countries(self):
        raw = self.cleaned_data.get("countries") or ""
        codes = [code.strip().upper() for code in raw.split(",") if code.strip()]
        bad = [code for code in codes if len(code) != 2 or not code.isalpha()]
        if bad:
            raise forms.ValidationError(_("Not a two-letter country code: %(codes)s.") % {"codes": ", ".join(bad)})
        return codes

    def clean(self):
        cleaned = super().clean()
        start = cleaned.get("start")
        if beyond_calendar_horizon(start):
            # Checked before start + duration is computed: near year 9999 that addition overflows.
            self.add_error("start", CALENDAR_HORIZON_MESSAGE)
            return cleaned
        if start and cleaned.get("end") is None and cleaned.get("duration_hours"):
            cleaned["end"] = start + timedelta(hours=cleaned["duration_hours"])
        elif start and cleaned.get("end") is None and "duration_hours" not in self.errors:
            self.add_error("duration_hours", _("Give a duration or an end."))
        self.clean_window(cleaned)
        if "cards" not in self.errors and "total_ecu" not in self.errors:
            if (cleaned.get("cards") is None) == (cleaned.get("total_ecu") is None):
                self.add_error("cards", _("Give the number of cards or the total ECU (one of them)."))
        return cleaned

    def quote_kwargs(self) -> dict:
        data = self.cleaned_data
        return {
            "start": data["start"],
            "end": data["end"],
            "cards": data.get("cards"),
            "total_ecu": data.get("total_ecu"),
            "min_memory_gb": data.get("min_memory_gb"),
            "stacks": data.get("stacks") or None,
            "countries": data.get("countries") or None,
            "provinces": data.get("provinces") or None,
            "hubs": [hub.pk for hub in data.get("hubs") or []] or None,
            "currency": data["currency"],
            "max_total_price_minor": to_minor(data.get("max_total_price")),
            "max_price_per_ecu_hour_minor": to_minor(data.get("max_price_per_ecu_hour")),
            "launch_template": data.get("launch_template"),
            "min_reliability": data.get("min_reliability"),
        }


class BookingForm(WindowMixin, forms.Form):
    window_required = True

    card_count = forms.IntegerField(min_value=1, max_value=MAX_CARDS_PER_BOOKING, label=gettext_lazy("Cards"))
    start = forms.DateTimeField(label=gettext_lazy("Start"),
                                widget=forms.DateTimeInput(attrs={"type": "datetime-local"}, format="%Y-%m-%dT%H:%M"))
    end = forms.DateTimeField(label=gettext_lazy("End"), widget=forms.DateTimeInput(attrs={"type": "datetime-local"}, format="%Y-%m-%dT%H:%M"))
    # The select offers no "any": the page always sends one. reservation_create checks that the offer's
    # stack has an image for it, and runs DEFAULT_LAUNCH_TEMPLATE when a post leaves it out.
    launch_template = launch_template_field(any_label=None)
    # Failover's last resort (marketplace.failover): other models that may replace these cards.
    accepted_alternatives = forms.MultipleChoiceField(
        required=False, choices=accelerator_model_choices, label=gettext_lazy("Accept other models if this one fails"),
        help_text=gettext_lazy("If the node fails and no card of this model is free nearby, your work may move to the same number "
                               "of cards of one of these (same price). Leave empty to accept only this model."),
        widget=forms.SelectMultiple(attrs={"size": 4}),
    )
    # Generated when the form is shown: a double submit books once.
    idempotency_key = forms.CharField(widget=forms.HiddenInput, max_length=200, required=False)

    def clean(self):
        cleaned = super().clean()
        self.clean_window(cleaned)
        return cleaned


class ExtendForm(forms.Form):
    end = forms.DateTimeField(label=gettext_lazy("New end"),
                              widget=forms.DateTimeInput(attrs={"type": "datetime-local"}, format="%Y-%m-%dT%H:%M"))
