"""Money arithmetic of the market, in one place.

Prices are integer minor units (fen, cents) per card-hour. Rates derived from them (per ECU-hour)
are Decimals. A total is rounded once, half up, to a whole minor unit - never per hour or per card.
"""

from datetime import datetime
from decimal import ROUND_HALF_UP, Decimal

SECONDS_PER_HOUR = Decimal(3600)
RATE_QUANTUM = Decimal("0.01")  # per ECU-hour rates are shown to 1/100 of a minor unit


def hours_between(start: datetime, end: datetime) -> Decimal:
    return Decimal(int((end - start).total_seconds())) / SECONDS_PER_HOUR


def total_price_minor(*, price_per_card_hour_minor: int, card_count: int, start: datetime, end: datetime) -> int:
    """price x cards x hours, prorated by the second, rounded once (half up) to a minor unit."""
    seconds = Decimal(int((end - start).total_seconds()))
    exact = Decimal(price_per_card_hour_minor) * card_count * seconds / SECONDS_PER_HOUR
    return int(exact.quantize(Decimal(1), rounding=ROUND_HALF_UP))


def price_per_ecu_hour_minor(*, price_per_card_hour_minor: int, ecu_per_card: Decimal | None) -> Decimal | None:
    """Minor units per ECU-hour; None for a model that is not rated (never a guess)."""
    if ecu_per_card is None or ecu_per_card <= 0:
        return None
    return (Decimal(price_per_card_hour_minor) / Decimal(ecu_per_card)).quantize(RATE_QUANTUM, rounding=ROUND_HALF_UP)


def format_minor(amount, currency: str) -> str:
    """12345 CNY -> '123.45 CNY' (Decimals keep their extra digits: 2527.80 -> '25.2780')."""
    if amount is None:
        return "not rated"
    value = Decimal(amount) / 100
    return f"{value:,.2f} {currency}" if value == value.quantize(RATE_QUANTUM) else f"{value:,.4f} {currency}"
