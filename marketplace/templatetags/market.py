"""Template filters for the market pages: money in minor units, ECU, "not rated"."""

from django import template
from django.utils.translation import gettext as _

from inventory.pricing import format_money

register = template.Library()


@register.filter
def money(amount, currency=""):
    """2500|money:"CNY" -> "CNY 25.00" (Chinese: "¥25.00"); None -> "not rated" (inventory.pricing.format_money)."""
    return format_money(amount, currency)


@register.filter
def ecu(value):
    """An ECU figure as it is ("1.979"), or "not rated" (未评级) in the active language."""
    return _("not rated") if value is None else f"{value.normalize():f}"
