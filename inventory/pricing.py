"""Money on offers: the one rule that turns a typed amount into integer minor units, and the one rule
for the price per ECU-hour shown beside every price per card-hour.

Both apps use these functions (marketplace depends on inventory, so inventory owns them): the
provider pages, /api/offers/, the market search, quotes and reservations all show the same figure,
and the search filter on price per ECU-hour compares that same rounded figure in SQL.
"""

from decimal import ROUND_HALF_UP, Decimal, InvalidOperation

from babel.numbers import format_currency
from django.core.exceptions import ValidationError
from django.db.models import DecimalField, ExpressionWrapper, F, Func
from django.db.models.functions import NullIf, Round
from django.utils import translation
from django.utils.translation import gettext as _

# A card-hour above this (in major units: yuan / dollars) is a typo, not a price: an H100 rents for
# tens of yuan an hour. Refused with a message that says so.
MAX_PRICE_PER_CARD_HOUR_MAJOR = Decimal("100000")
MAX_DURATION_HOURS = 24 * 366


def price_major_to_minor(*, price: str | Decimal | int, field: str = "price_per_card_hour") -> int:
    """'25.00' (yuan or dollars) -> 2500 (fen or cents).

    The rule, documented once: a price has at most 2 decimals (the minor unit) - more are refused,
    never silently rounded; the value is then quantized to the minor unit with ROUND_HALF_UP (a no-op
    for a valid price, kept so the conversion has exactly one rounding rule). Zero, negative, NaN and
    prices above MAX_PRICE_PER_CARD_HOUR_MAJOR are refused.
    """
    try:
        value = Decimal(str(price).strip())
    except (InvalidOperation, ValueError):
        raise ValidationError({field: _("Enter a price as a number, e.g. 25.00.")}) from None
    if not value.is_finite():
        raise ValidationError({field: _("Enter a price as a number, e.g. 25.00.")})
    if value <= 0:
        raise ValidationError({field: _("The price must be more than zero.")})
    if value > MAX_PRICE_PER_CARD_HOUR_MAJOR:
        raise ValidationError(
            {field: _("%(price)s per card-hour is not a plausible price (the limit is %(limit)s).") % {
                "price": value, "limit": f"{MAX_PRICE_PER_CARD_HOUR_MAJOR:,}",
            }}
        )
    if value.as_tuple().exponent < -2 and value != value.quantize(Decimal("0.01")):
        raise ValidationError({field: _("Use at most 2 decimals (the smallest unit is 0.01).")})
    return major_to_minor(value)


def major_to_minor(amount: Decimal | str | int) -> int:
    """The one major-to-minor conversion: 25.00 -> 2500, quantized to the minor unit with ROUND_HALF_UP.

    Callers that take user input (prices, price filters, budgets) refuse more than 2 decimals before
    calling it, so the rounding is a no-op for them; it is kept so there is exactly one rule.
    """
    return int((Decimal(str(amount)) * 100).quantize(Decimal("1"), rounding=ROUND_HALF_UP))


def price_minor_to_major(minor: int) -> Decimal:
    return (Decimal(minor) / 100).quantize(Decimal("0.01"))


# The Babel locale that formats money for each interface language other than English. English keeps
# the house format ("CNY 1,640.00"); Chinese readers get their own: "¥1,640.00", "US$1,640.00" (CLDR's
# zh_Hans_CN symbols: ¥ is the yuan there, and the dollar is told apart as US$).
MONEY_LOCALES = {"zh-hans": "zh_Hans_CN"}


def format_money(amount_minor: int | None, currency: str) -> str:
    """THE way an amount is shown, in the active language. English: 164000 CNY -> 'CNY 1,640.00' (ISO
    code first, so CNY and USD, which share no symbol a reader can trust - JPY is also '¥' - are never
    confused). Chinese: '¥1,640.00', 'US$1,640.00' (Babel, CLDR zh_Hans_CN). None -> 'not rated' (未评级).

    Every page, timeline reason, notification and quote message formats money through this function;
    amounts are whole minor units, so the two decimals are exact. Grouping is by thousands with a
    comma in both languages (Django's USE_THOUSAND_SEPARATOR stays off: plain numbers are not grouped).
    """
    if amount_minor is None:
        return _("not rated")
    major = price_minor_to_major(amount_minor)
    babel_locale = MONEY_LOCALES.get(translation.get_language() or "")
    if babel_locale is None or not currency:
        return f"{currency} {major:,.2f}".strip()
    # currency_digits=False: always the two decimals of our minor units (CLDR would drop them for JPY).
    return format_currency(major, currency, locale=babel_locale, currency_digits=False)


def price_per_ecu_hour_minor(*, price_per_card_hour_minor: int, ecu_per_card: Decimal | None) -> int | None:
    """THE rule for price per ECU-hour: price per card-hour / ECU per card, rounded once, half up, to a
    whole minor unit (fen, cent). None when the card is not rated (never a guess).

    price_per_ecu_hour_minor_sql is the same rule in SQL; keep the two together.
    """
    if ecu_per_card is None or ecu_per_card <= 0:
        return None
    return int((Decimal(price_per_card_hour_minor) / Decimal(ecu_per_card)).quantize(Decimal("1"), rounding=ROUND_HALF_UP))


def price_per_ecu_hour_minor_sql(*, price: str = "price_per_card_hour_minor", ecu: str = "accelerator_model__ecu_per_card") -> Func:
    """price_per_ecu_hour_minor as a database expression, for filters that must agree with the shown
    figure. PostgreSQL's round(numeric) rounds halves away from zero, which for these positive
    prices is ROUND_HALF_UP. NULL for a model that is not rated (an ECU of 0 never divides)."""
    ratio = ExpressionWrapper(F(price) / NullIf(F(ecu), 0), output_field=DecimalField(max_digits=30, decimal_places=10))
    return Round(ratio, output_field=DecimalField(max_digits=20, decimal_places=0))
