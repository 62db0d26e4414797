"""Place and vendor names, and what the system says about a node, in the reader's language.

    {% load localnames %}{{ hub|local_name }}  {{ province|local_name }}  {{ province|local_name:"hub_cluster" }}
    {{ model.vendor|vendor_name }}  ("Huawei (HiSilicon)" -> "华为" on a Chinese page, unchanged otherwise)

Hubs, provinces and hub clusters carry their Chinese names as data (`name_zh`, `hub_cluster_zh`, from
inventory/data/regions.csv): a Chinese page shows those, any other page - or a row without one - the
English name. Vendor names are catalog entries instead (context "accelerator vendor"), see
locale/GLOSSARY.md: there are few of them and they are the same words on every page.
"""

from django import template
from django.utils.translation import pgettext_lazy

from config.i18n import in_chinese

register = template.Library()

# The vendors with a Chinese name of their own, by the catalog's vendor value (inventory/data/
# accelerators.csv spells some with their brand in brackets); NVIDIA, AMD, Intel... stay as they are.
# Lazy, so that makemessages puts them in the catalog and each page shows its own language.
_HUAWEI = pgettext_lazy("accelerator vendor", "Huawei")
_METAX = pgettext_lazy("accelerator vendor", "MetaX")
VENDOR_NAMES = {
    "Huawei": _HUAWEI,
    "Huawei (HiSilicon)": _HUAWEI,
    "Cambricon": pgettext_lazy("accelerator vendor", "Cambricon"),
    "Hygon": pgettext_lazy("accelerator vendor", "Hygon"),
    "MetaX": _METAX,
    "MetaX (Muxi)": _METAX,
}


@register.filter
def local_name(obj, field="name"):
    """obj.<field>_zh when the page is in Chinese and the object has one, else obj.<field>; "" for None."""
    if obj is None or obj == "":
        return ""
    english = getattr(obj, field, "") or ""
    if in_chinese():
        return getattr(obj, f"{field}_zh", "") or english
    return english


@register.filter
def vendor_name(vendor):
    """A vendor's name in the reader's language ("Huawei" -> "华为"); unknown vendors unchanged."""
    vendor = str(vendor or "")
    if vendor in VENDOR_NAMES and in_chinese():
        return str(VENDOR_NAMES[vendor])
    return vendor


@register.filter
def node_reason(text):
    """{{ change.reason|node_reason }}: what the system stored in English, in the reader's language."""
    from inventory.display import node_reason_display

    return node_reason_display(str(text or ""))


@register.filter
def mismatch_reason(node):
    """{{ node|mismatch_reason }}: why the node is flagged, worded for the reader from its last report."""
    from inventory.agent_services import mismatch_reason_display

    if not node.mismatch_reason:
        return ""
    # a flag whose report no longer explains it (set by hand, or by an older version): as stored
    return mismatch_reason_display(node) or node.mismatch_reason
