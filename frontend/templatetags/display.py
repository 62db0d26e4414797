"""Template filters every page uses to show a time: in the viewer's zone, with the zone named."""

from django import template

from accounts.timezones import format_local_time

register = template.Library()


@register.filter
def when(value, arg=""):
    """{{ r.start|when }} -> "2026-12-10 09:00 CST"; {{ x|when:"seconds" }} adds seconds; None -> ""."""
    return format_local_time(value, seconds=arg == "seconds")
