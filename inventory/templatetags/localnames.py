"""Names of national hubs, provinces and the like in the reader's language.

The catalog stores each such name in English (`name`) and in Chinese (`name_zh`, from
shared/data/regions.csv); a page in Chinese shows the Chinese one when there is one.

    {% load localnames %}{{ hub|local_name }}
"""

from django import template
from django.utils.translation import get_language

register = template.Library()


@register.filter
def local_name(obj):
    """obj.name_zh when the active language is Chinese and it has one, else obj.name ("" for None)."""
    if obj is None:
        return ""
    name_zh = getattr(obj, "name_zh", "")
    if name_zh and (get_language() or "").lower().startswith("zh"):
        return name_zh
    return getattr(obj, "name", str(obj))
