"""Dashboard pages: the network (operators), a buyer organization's, a provider organization's.
Thin: each view checks who may look, calls one selector of marketplace.dashboard and turns its
figures into chart specs; every chart's figures are also in a table on the same page."""

from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.shortcuts import render
from django.utils.translation import gettext as _
from django.utils.translation import pgettext

from accounts.selectors import user_can, user_is_operator
from config.i18n import in_chinese
from inventory.models import NationalHub, Province
from inventory.pricing import format_money
from inventory.templatetags.localnames import vendor_name
from marketplace import dashboard


def _line_chart(*, chart_id: str, title: str, labels: list, series: list[tuple[str, list]]) -> dict:
    """What static/frontend/charts.js draws (Chart.js config); the page's table holds the same figures."""
    return {
        "id": chart_id,
        "title": title,
        "config": {
            "type": "line",
            "data": {"labels": [str(label) for label in labels],
                     "datasets": [{"label": name, "data": values} for name, values in series]},
        },
    }


def _bar_chart(*, chart_id: str, title: str, labels: list, series: list[tuple[str, list]]) -> dict:
    chart = _line_chart(chart_id=chart_id, title=title, labels=labels, series=series)
    chart["config"]["type"] = "bar"
    return chart


def history_chart(history: list[dict], *, chart_id: str) -> dict:
    return _line_chart(
        chart_id=chart_id,
        title=_("Card-hours per day"),
        labels=[row["day"] for row in history],
        series=[
            (_("Listed"), [row["listed_card_hours"] for row in history]),
            (_("Rented"), [row["rented_card_hours"] for row in history]),
            (_("Busy"), [row["busy_card_hours"] for row in history]),
        ],
    )


@login_required
def network(request):
    if not user_is_operator(user=request.user):
        raise PermissionDenied(_("The network dashboard is for platform operators."))
    figures = _localized(dashboard.network_dashboard_cached())
    charts = {"history": history_chart(figures["history"], chart_id="network-history")}
    for group in figures["by"]:
        rows = group["rows"][:12]  # the chart shows the largest; the table below it has every row
        dimension = str(group["label"]).lower()
        group["heading"] = _("By %(dimension)s") % {"dimension": dimension}
        charts[group["key"]] = _bar_chart(
            chart_id=f"network-by-{group['key']}",
            title=_("Cards by %(dimension)s") % {"dimension": dimension},
            labels=[row["name"] for row in rows],
            series=[(_("Listed"), [row["listed_cards"] for row in rows]), (_("Rented"), [row["rented_cards"] for row in rows]),
                    (_("Busy (mean over the window)"), [row["busy_cards"] for row in rows])],
        )
        group["chart"] = charts[group["key"]]
    return render(request, "dashboards/network.html", {"figures": figures, "history_chart": charts["history"]})


def _hub_role(role: str) -> str:
    # Translators: the role of a national hub in "East Data, West Computing" (东数西算).
    return pgettext("national hub role", "Demand hub (east)") if role == NationalHub.Role.DEMAND else pgettext(
        "national hub role", "Resource hub (west)")


def _localized(figures: dict) -> dict:
    """The cached figures (shared by every reader) with names in the reader's language: hub and province
    names from the catalog's name_zh on a Chinese page, vendors as the catalog page names them, the "no hub" group and the hubs' roles as words.
    A copy: the cached dict is never changed."""
    hub_zh = province_zh = {}
    if in_chinese():
        hub_zh = dict(NationalHub.objects.exclude(name_zh="").values_list("name", "name_zh"))
        province_zh = dict(Province.objects.exclude(name_zh="").values_list("name", "name_zh"))
    names = {"hub": hub_zh, "province": province_zh}

    def name(key: str, value: str) -> str:
        if value == dashboard.NO_GROUP:
            return _("(none)")
        if key == "vendor":
            return vendor_name(value)  # "Huawei (HiSilicon)" -> 华为, as on the catalog page
        return names.get(key, {}).get(value, value)

    labels = dict(dashboard.DIMENSIONS)
    by = [{**group, "label": labels.get(group["key"], group["label"]),
           "rows": [{**row, "name": name(group["key"], row["name"])} for row in group["rows"]]}
          for group in figures["by"]]
    hubs = [{**hub, "local_name": hub_zh.get(hub["name"], hub["name"]), "role": _hub_role(hub["role"])} for hub in figures["hubs"]]
    return {**figures, "by": by, "hubs": hubs}


@login_required
def buyer(request):
    organization = request.organization
    if organization is None or not organization.is_buyer or not user_can(
        user=request.user, organization=organization, action="view"
    ):
        raise PermissionDenied(_("The buyer dashboard is for members of a buyer organization."))
    figures = dashboard.buyer_dashboard(organization=organization)
    # Money is for those who may see the organization's finances (as on the billing pages): a member sees usage only.
    if not user_can(user=request.user, organization=organization, action="view_finance"):
        return render(request, "dashboards/buyer.html", {"figures": figures, "show_money": False})
    currencies = figures["currencies"]
    spend_chart = _bar_chart(
        chart_id="buyer-spend", title=_("Spend per day"),
        labels=[row["day"] for row in figures["spend"]],
        # Chart.js draws numbers: major units; the table shows the exact formatted amounts.
        series=[(currency, [row["amounts"][i] / 100 for row in figures["spend"]]) for i, currency in enumerate(currencies)]
        or [(_("Spend"), [0 for _day in figures["spend"]])],  # nothing spent yet: an empty chart with its days
    )
    spend_rows = [
        {"day": row["day"], "amounts": [format_money(amount, currency) for amount, currency in zip(row["amounts"], currencies, strict=True)]}
        for row in figures["spend"]
    ]
    totals = [format_money(amount, currency) for currency, amount in figures["spend_totals"].items()]
    return render(request, "dashboards/buyer.html", {
        "figures": figures, "spend_chart": spend_chart, "spend_rows": spend_rows, "spend_totals": totals, "show_money": True,
    })


@login_required
def provider(request):
    organization = request.organization
    if organization is None or not organization.is_provider or not user_can(
        user=request.user, organization=organization, action="view"
    ):
        raise PermissionDenied(_("The provider dashboard is for members of a provider organization."))
    figures = dashboard.provider_dashboard(organization=organization)
    rows = figures["per_site_model"]
    # Earnings only for those who may see the organization's finances (as on the billing pages).
    show_money = user_can(user=request.user, organization=organization, action="view_finance")
    for row in rows:
        row["earnings_text"] = (", ".join(format_money(minor, currency) for currency, minor in row["earnings"]) or "-") if show_money else ""
    utilization_chart = _bar_chart(
        chart_id="provider-utilization", title=_("Utilization per site and model (%)"),
        labels=[f"{row['site']} / {row['model']}" for row in rows],
        series=[(_("Utilization %"), [row["utilization_percent"] or 0 for row in rows]),
                (_("Rented now %"), [row["rented_percent"] or 0 for row in rows])],
    )
    return render(request, "dashboards/provider.html", {
        "figures": figures, "utilization_chart": utilization_chart, "show_money": show_money,
        "history_chart": history_chart(figures["history"], chart_id="provider-history"),
    })
