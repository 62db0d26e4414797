"""Money in the viewer's locale: English keeps the house format (ISO code first), Chinese gets CLDR's
zh_Hans_CN format through Babel; "not rated" in both languages; the template filters agree."""

from decimal import Decimal

import pytest
from django.utils import translation

from inventory.pricing import format_money
from marketplace.templatetags.market import ecu, money


@pytest.mark.parametrize(("language", "minor", "currency", "shown"), [
    ("en", 164000, "CNY", "CNY 1,640.00"),
    ("en", 164000, "USD", "USD 1,640.00"),
    ("en", 5, "CNY", "CNY 0.05"),
    ("en", None, "CNY", "not rated"),
    ("zh-hans", 164000, "CNY", "¥1,640.00"),
    ("zh-hans", 164000, "USD", "US$1,640.00"),
    ("zh-hans", 123456789, "CNY", "¥1,234,567.89"),
    ("zh-hans", -1640, "CNY", "-¥16.40"),
    # two decimals always: amounts are minor units, whatever CLDR says of the currency's digits
    ("zh-hans", 164000, "JPY", "JP¥1,640.00"),
    ("zh-hans", None, "CNY", "未评级"),
])
def test_an_amount_is_shown_in_the_active_language(language, minor, currency, shown):
    with translation.override(language):
        assert format_money(minor, currency) == shown
        assert money(minor, currency) == shown


def test_without_a_currency_the_figure_is_still_grouped_in_both_languages():
    for language in ("en", "zh-hans"):
        with translation.override(language):
            assert format_money(164000, "") == "1,640.00"


def test_ecu_figures_stay_plain_and_not_rated_is_translated():
    with translation.override("zh-hans"):
        assert ecu(Decimal("1.9790")) == "1.979" and ecu(None) == "未评级"
    with translation.override("en"):
        assert ecu(None) == "not rated"
