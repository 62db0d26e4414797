"""Money arithmetic of the market, in one place.

Prices are integer minor units (fen, cents) per card-hour. A total is rounded once, half up, to a
whole minor unit - never per hour or per card. The price per ECU-hour is inventory's one rule
(inventory.pricing.price_per_ecu_hour_minor: half up to a whole minor unit), re-exported here, as is
inventory.pricing.format_money, the one way an amount is shown.
"""

from datetime import datetime
from decimal import ROUND_HALF_UP, Decimal

from inventory.pricing import format_money, price_per_ecu_hour_minor

__all__ = ["card_seconds_price_minor", "format_money", "hours_between", "price_per_ecu_hour_minor", "total_price_minor"]

SECONDS_PER_HOUR = Decimal(3600)


def hours_between(start: datetime, end: datetime) -> Decimal:
    return Decimal(int((end - start).total_seconds())) / SECONDS_PER_HOUR


def total_price_minor(*, price_per_card_hour_minor: int, card_count: int, start: datetime, end: datetime) -> int:
    """price x cards x hours, prorated by the second, rounded once (half up) to a minor unit."""
    return card_seconds_price_minor([(price_per_card_hour_minor, card_count * int((end - start).total_seconds()))])


def card_seconds_price_minor(parts: list[tuple[int, int]]) -> int:
    """The cost of (price per card-hour in minor units, card-seconds) parts: summed exactly, then
    rounded once (half up) to a minor unit - a reservation billed in several segments is rounded once,
    never per segment."""
    exact = sum((Decimal(price) * Decimal(card_seconds) for price, card_seconds in parts), Decimal(0)) / SECONDS_PER_HOUR
    return int(exact.quantize(Decimal(1), rounding=ROUND_HALF_UP))
