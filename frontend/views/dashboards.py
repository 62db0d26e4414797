"""Dashboard pages: the network (operators), a buyer organization's, a provider organization's.
Thin: each view checks who may look, calls one selector of marketplace.dashboard and turns its
figures into chart specs; every chart's figures are also in a table on the same page."""

from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.shortcuts import render

from accounts.selectors import user_can, user_is_operator
from inventory.pricing import format_money
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
        title="Card-hours per day",
        labels=[row["day"] for row in history],
        series=[
            ("Listed", [row["listed_card_hours"] for row in history]),
            ("Rented", [row["rented_card_hours"] for row in history]),
            ("Busy", [row["busy_card_hours"] for row in history]),
        ],
    )


@login_required
def network(request):
    if not user_is_operator(user=request.user):
        raise PermissionDenied("The network dashboard is for platform operators.")
    figures = dashboard.network_dashboard_cached()
    charts = {"history": history_chart(figures["history"], chart_id="network-history")}
    for group in figures["by"]:
        rows = group["rows"][:12]  # the chart shows the largest; the table below it has every row
        charts[group["key"]] = _bar_chart(
            chart_id=f"network-by-{group['key']}",
            title=f"Cards by {group['label'].lower()}",
            labels=[row["name"] for row in rows],
            series=[("Listed", [row["listed_cards"] for row in rows]), ("Rented", [row["rented_cards"] for row in rows]),
                    ("Busy (mean over the window)", [row["busy_cards"] for row in rows])],
        )
        group["chart"] = charts[group["key"]]
    return render(request, "dashboards/network.html", {"figures": figures, "history_chart": charts["history"]})


@login_required
def buyer(request):
    organization = request.organization
    if organization is None or not organization.is_buyer or not user_can(
        user=request.user, organization=organization, action="view"
    ):
        raise PermissionDenied("The buyer dashboard is for members of a buyer organization.")
    figures = dashboard.buyer_dashboard(organization=organization)
    # Money is for those who may see the organization's finances (as on the billing pages): a member sees usage only.
    if not user_can(user=request.user, organization=organization, action="view_finance"):
        return render(request, "dashboards/buyer.html", {"figures": figures, "show_money": False})
    currencies = figures["currencies"]
    spend_chart = _bar_chart(
        chart_id="buyer-spend", title="Spend per day",
        labels=[row["day"] for row in figures["spend"]],
        # Chart.js draws numbers: major units; the table shows the exact formatted amounts.
        series=[(currency, [row["amounts"][i] / 100 for row in figures["spend"]]) for i, currency in enumerate(currencies)]
        or [("Spend", [0 for _ in figures["spend"]])],  # nothing spent yet: an empty chart with its days
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
        raise PermissionDenied("The provider dashboard is for members of a provider organization.")
    figures = dashboard.provider_dashboard(organization=organization)
    rows = figures["per_site_model"]
    # Earnings only for those who may see the organization's finances (as on the billing pages).
    show_money = user_can(user=request.user, organization=organization, action="view_finance")
    for row in rows:
        row["earnings_text"] = (", ".join(format_money(minor, currency) for currency, minor in row["earnings"]) or "-") if show_money else ""
    utilization_chart = _bar_chart(
        chart_id="provider-utilization", title="Utilization per site and model (%)",
        labels=[f"{row['site']} / {row['model']}" for row in rows],
        series=[("Utilization %", [row["utilization_percent"] or 0 for row in rows]),
                ("Rented now %", [row["rented_percent"] or 0 for row in rows])],
    )
    return render(request, "dashboards/provider.html", {
        "figures": figures, "utilization_chart": utilization_chart, "show_money": show_money,
        "history_chart": history_chart(figures["history"], chart_id="provider-history"),
    })
