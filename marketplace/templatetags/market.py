"""Template filters for the market pages: money in minor units, ECU, "not rated"."""

from django import template

from marketplace.pricing import format_minor

register = template.Library()


@register.filter
def money(amount, currency=""):
    """2500|money:"CNY" -> "25.00 CNY"; None -> "not rated"."""
    return format_minor(amount, currency).strip()


@register.filter
def ecu(value):
    return "not rated" if value is None else f"{value.normalize():f}"
