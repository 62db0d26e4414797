"""Money on offers: the one rule that turns a typed price into integer minor units, and the price per
ECU-hour shown beside every price per card-hour."""

from decimal import ROUND_HALF_UP, Decimal, InvalidOperation

from django.core.exceptions import ValidationError

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
        raise ValidationError({field: "Enter a price as a number, e.g. 25.00."}) from None
    if not value.is_finite():
        raise ValidationError({field: "Enter a price as a number, e.g. 25.00."})
    if value <= 0:
        raise ValidationError({field: "The price must be more than zero."})
    if value > MAX_PRICE_PER_CARD_HOUR_MAJOR:
        raise ValidationError(
            {field: f"{value} per card-hour is not a plausible price (the limit is {MAX_PRICE_PER_CARD_HOUR_MAJOR:,})."}
        )
    if value.as_tuple().exponent < -2 and value != value.quantize(Decimal("0.01")):
        raise ValidationError({field: "Use at most 2 decimals (the smallest unit is 0.01)."})
    return int((value * 100).quantize(Decimal("1"), rounding=ROUND_HALF_UP))


def price_minor_to_major(minor: int) -> Decimal:
    return (Decimal(minor) / 100).quantize(Decimal("0.01"))


def price_per_ecu_hour_minor(*, price_per_card_hour_minor: int, ecu_per_card: Decimal | None) -> int | None:
    """Price per ECU-hour in minor units (ROUND_HALF_UP); None when the card is not rated."""
    if ecu_per_card is None or ecu_per_card <= 0:
        return None
    return int((Decimal(price_per_card_hour_minor) / ecu_per_card).quantize(Decimal("1"), rounding=ROUND_HALF_UP))
