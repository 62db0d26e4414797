"""Rating: what one reservation costs in one billing period. Pure functions, no database.

The rule, in order (see also billing/__init__.py):

1. Every instant is truncated to the whole second (floor, UTC) before anything else: segments,
   downtime and period boundaries are then integer seconds, so splitting time at any period boundary
   is exactly additive - no second is billed twice and none is lost across periods.
2. Billable time = each segment's [started_at, ended_at) clipped to the period [period_start,
   period_end), minus the recorded downtime of that segment's node where they overlap (a node down
   while its segment is still open); an open segment runs to the end
   of the period. Card-seconds = seconds x the segment's number of devices.
3. Charge = sum over segments of (price locked at booking per card-hour x card-seconds) / 3600,
   computed exactly and rounded ONCE per line by `round_minor` (half up to a whole minor unit).
4. Card-hours down = each recorded downtime interval of a node (overlapping ones merged), clipped to
   the period, x the cards the reservation held on that node (its segment there that started last at
   or before the downtime, else the first one after), at that segment's price. Independent of segment
   overlap: failover closes the failed node's segment at the last heartbeat, where the downtime
   starts, so the gap is already out of the segments (not charged) and is not subtracted again.
   SLA credit = N x (price per card-hour) x (card-hours down), N from the policy, rounded once by the
   same function, and never more than the charge it belongs to (capped at the line).
5. A failed or cancelled reservation rates to zero (no charge, no credit), whatever its segments say.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from fractions import Fraction

SECONDS_PER_HOUR = 3600
UNBILLED_STATUSES = frozenset({"failed", "cancelled"})  # marketplace.models.Reservation.UNBILLED, by value


def round_minor(exact: Fraction) -> int:
    """THE rounding rule of billing: an exact non-negative amount in minor units, rounded half up
    (0.5 -> 1) to a whole minor unit. Called once per invoice line (charge or credit), never per hour,
    card or segment. Integer arithmetic: no float ever touches money."""
    if exact < 0:
        raise ValueError("amounts are rated as non-negative magnitudes; the line's kind gives the sign")
    return (2 * exact.numerator + exact.denominator) // (2 * exact.denominator)


def epoch_second(instant: datetime) -> int:
    """Floor an aware instant to a whole UTC second (rule 1)."""
    if instant.tzinfo is None:
        raise ValueError("naive datetime: billing only takes aware instants")
    delta = instant.astimezone(UTC) - datetime(1970, 1, 1, tzinfo=UTC)
    return delta.days * 86400 + delta.seconds  # microseconds dropped: floor


@dataclass(frozen=True)
class Span:
    """One service segment of a reservation (marketplace.models.ReservationSegment)."""

    node_id: int
    device_ids: tuple[int, ...]
    started_at: datetime
    ended_at: datetime | None  # None: still running
    price_per_card_hour_minor: int


@dataclass(frozen=True)
class Downtime:
    """A recorded interval during which a node of the reservation did not serve it."""

    node_id: int
    started_at: datetime
    ended_at: datetime | None  # None: still down


@dataclass(frozen=True)
class SlaPolicy:
    # N: the buyer is credited N x the hourly price for each card-hour down (capped at the line).
    # A Fraction so the policy never brings a float into money; 0 switches credits off.
    credit_multiplier: Fraction = Fraction(1)


@dataclass(frozen=True)
class Rating:
    card_seconds: int  # billable card-seconds in the period (downtime removed)
    charge_minor: int  # what the card-seconds cost, rounded once
    down_card_seconds: int  # card-seconds of the period lost to downtime
    sla_credit_minor: int  # credit for the downtime, rounded once, <= charge_minor
    # (device id, hour start as epoch second) -> billable seconds of that device in that hour: the
    # evidence grid that every line's seconds add up to.
    device_hour_seconds: dict[tuple[int, int], int]

    @property
    def is_zero(self) -> bool:
        return self.card_seconds == 0 and self.down_card_seconds == 0


ZERO = Rating(card_seconds=0, charge_minor=0, down_card_seconds=0, sla_credit_minor=0, device_hour_seconds={})


def _subtract(interval: tuple[int, int], cuts: Sequence[tuple[int, int]]) -> list[tuple[int, int]]:
    """[a, b) minus the union of the cuts, as sorted disjoint non-empty pieces."""
    pieces = [interval]
    for cut_start, cut_end in cuts:
        next_pieces = []
        for start, end in pieces:
            if cut_end <= start or cut_start >= end:
                next_pieces.append((start, end))
                continue
            if start < cut_start:
                next_pieces.append((start, cut_start))
            if cut_end < end:
                next_pieces.append((cut_end, end))
        pieces = next_pieces
    return [piece for piece in pieces if piece[1] > piece[0]]


def _length(pieces: Iterable[tuple[int, int]]) -> int:
    return sum(end - start for start, end in pieces)


def _held_downtime(spans: Sequence[Span], downtimes: Sequence[Downtime]) -> list[tuple[int, int | None, Span]]:
    """Each node's downtime, overlapping records merged, as (start, end or None, the segment whose cards
    and price it concerns). Worked out on whole intervals, never on a period's clip of them, so that
    splitting time at any boundary stays additive. Nodes the spans never held are dropped (another
    provider's line, or nothing served there)."""
    held = []
    for node_id in sorted({d.node_id for d in downtimes}):
        on_node = sorted((s for s in spans if s.node_id == node_id), key=lambda s: epoch_second(s.started_at))
        if not on_node:
            continue
        merged: list[list] = []  # [start, end or None]
        for d in sorted((d for d in downtimes if d.node_id == node_id), key=lambda d: epoch_second(d.started_at)):
            start = epoch_second(d.started_at)
            end = epoch_second(d.ended_at) if d.ended_at is not None else None
            if end is not None and end <= start:
                continue
            if merged and (merged[-1][1] is None or start <= merged[-1][1]):
                if merged[-1][1] is not None:
                    merged[-1][1] = None if end is None else max(merged[-1][1], end)
                continue
            merged.append([start, end])
        for start, end in merged:
            before = [s for s in on_node if epoch_second(s.started_at) <= start]
            held.append((start, end, before[-1] if before else on_node[0]))
    return held


def rate_reservation(
    *,
    status: str,
    spans: Sequence[Span],
    downtimes: Sequence[Downtime],
    period_start: datetime,
    period_end: datetime,
    policy: SlaPolicy,
) -> Rating:
    """Rate one reservation over the half-open period [period_start, period_end) (see the module rule)."""
    if status in UNBILLED_STATUSES:
        return ZERO
    p_start, p_end = epoch_second(period_start), epoch_second(period_end)
    if p_end <= p_start:
        return ZERO
    charge_exact = Fraction(0)  # minor units x 3600, summed before the one rounding
    down_exact = Fraction(0)
    card_seconds = down_card_seconds = 0
    grid: dict[tuple[int, int], int] = defaultdict(int)
    for span in spans:
        start = max(epoch_second(span.started_at), p_start)
        end = min(epoch_second(span.ended_at) if span.ended_at is not None else p_end, p_end)
        if end <= start:
            continue
        cuts = sorted(
            (max(epoch_second(d.started_at), start), min(epoch_second(d.ended_at) if d.ended_at is not None else end, end))
            for d in downtimes if d.node_id == span.node_id
        )
        cuts = [cut for cut in cuts if cut[1] > cut[0]]
        served = _subtract((start, end), cuts)
        cards = len(span.device_ids)
        served_seconds = _length(served)
        card_seconds += cards * served_seconds
        charge_exact += Fraction(span.price_per_card_hour_minor * cards * served_seconds, SECONDS_PER_HOUR)
        for piece_start, piece_end in served:
            at = piece_start
            while at < piece_end:
                hour = at - at % SECONDS_PER_HOUR
                upto = min(hour + SECONDS_PER_HOUR, piece_end)
                for device_id in span.device_ids:
                    grid[(device_id, hour)] += upto - at
                at = upto
    for down_start, down_end, span in _held_downtime(spans, downtimes):
        seconds = min(p_end if down_end is None else down_end, p_end) - max(down_start, p_start)
        if seconds > 0:
            cards = len(span.device_ids)
            down_card_seconds += cards * seconds
            down_exact += Fraction(span.price_per_card_hour_minor * cards * seconds, SECONDS_PER_HOUR)
    charge = round_minor(charge_exact)
    credit = min(charge, round_minor(policy.credit_multiplier * down_exact))
    return Rating(
        card_seconds=card_seconds, charge_minor=charge, down_card_seconds=down_card_seconds,
        sla_credit_minor=credit, device_hour_seconds=dict(grid),
    )
