"""Rating: billable seconds from segments clipped to the period, minus downtime, at the locked price,
rounded once; SLA credits from the downtime intervals x the cards held on the node, capped at the line; failed/cancelled rate to zero. Pure logic: no database."""

from datetime import UTC, datetime, timedelta
from fractions import Fraction

from hypothesis import given, settings
from hypothesis import strategies as st

from billing.rating import Downtime, SlaPolicy, Span, rate_reservation, round_minor
from marketplace.pricing import card_seconds_price_minor

T0 = datetime(2026, 3, 1, tzinfo=UTC)
H = timedelta(hours=1)
POLICY = SlaPolicy(credit_multiplier=Fraction(2))


def span(start, end, cards=8, price=2500, node=1):
    return Span(node_id=node, device_ids=tuple(range(node * 100, node * 100 + cards)), started_at=start, ended_at=end,
                price_per_card_hour_minor=price)


def rate(spans, downtimes=(), start=T0, end=T0 + 24 * H, status="completed", policy=POLICY):
    return rate_reservation(status=status, spans=spans, downtimes=list(downtimes), period_start=start, period_end=end, policy=policy)


def test_the_rounding_rule_is_half_up_to_a_whole_minor_unit():
    assert round_minor(Fraction(1, 2)) == 1
    assert round_minor(Fraction(3, 2)) == 2
    assert round_minor(Fraction(49, 100)) == 0
    assert round_minor(Fraction(7)) == 7


def test_a_segment_is_clipped_to_the_period_and_prorated_per_second():
    # Given a segment from 22:00 the day before to 01:30 of the period's first day, 2 cards at 25.00/h
    rating = rate([span(T0 - 2 * H, T0 + H + timedelta(minutes=30), cards=2)])
    # Then 1.5 h x 2 cards are billed: 3 card-hours x 2500
    assert rating.card_seconds == 2 * 5400
    assert rating.charge_minor == 7500


def test_an_open_segment_runs_to_the_end_of_the_period():
    rating = rate([span(T0 + 23 * H, None, cards=1, price=3600)], end=T0 + 24 * H)
    assert rating.card_seconds == 3600 and rating.charge_minor == 3600


def test_failed_and_cancelled_reservations_rate_to_zero():
    for status in ("failed", "cancelled"):
        rating = rate([span(T0, T0 + 5 * H)], status=status)
        assert rating.charge_minor == 0 and rating.card_seconds == 0 and rating.sla_credit_minor == 0


def test_downtime_is_not_billed_and_is_credited_n_times_the_hourly_price():
    # Given 10 h on 1 card at 1.00/h, with node 1 down for 2 h
    rating = rate([span(T0, T0 + 10 * H, cards=1, price=100)], [Downtime(node_id=1, started_at=T0 + H, ended_at=T0 + 3 * H)])
    assert rating.card_seconds == 8 * 3600
    assert rating.charge_minor == 800
    # Then the credit is 2 x 1.00 x 2 h
    assert rating.down_card_seconds == 2 * 3600 and rating.sla_credit_minor == 400


def test_failover_downtime_after_the_failed_nodes_segment_closed_is_credited_and_not_subtracted_again():
    # Given failover: node 1 served 8 cards until its last heartbeat at 2 h (segment closed there), down
    # from then until node 2 served at 2 h 09 (the gap is in no segment: not charged)
    spans = [span(T0, T0 + 2 * H, cards=8, price=2500, node=1), span(T0 + 2 * H + timedelta(minutes=9), T0 + 4 * H, node=2)]
    down = [Downtime(node_id=1, started_at=T0 + 2 * H, ended_at=T0 + 2 * H + timedelta(minutes=9))]
    rating = rate(spans, down, policy=SlaPolicy(credit_multiplier=Fraction(1)))
    # Then 9 min x the 8 cards held on node 1 are down and credited at its price, once
    assert rating.down_card_seconds == 8 * 9 * 60
    assert rating.sla_credit_minor == 8 * 2500 * 9 // 60 == 3000
    # and the charge is the segments only (the gap was never in them; nothing subtracted twice)
    assert rating.card_seconds == rate(spans).card_seconds == 8 * (4 * 3600 - 9 * 60)


def test_overlapping_downtime_records_of_a_node_count_once():
    spans = [span(T0, T0 + 10 * H, cards=1, price=100)]
    down = [Downtime(node_id=1, started_at=T0 + H, ended_at=T0 + 3 * H), Downtime(node_id=1, started_at=T0 + 2 * H, ended_at=T0 + 4 * H)]
    rating = rate(spans, down)
    assert rating.down_card_seconds == 3 * 3600 and rating.card_seconds == 7 * 3600


def test_downtime_of_another_node_changes_nothing():
    rating = rate([span(T0, T0 + 10 * H, cards=1, price=100)], [Downtime(node_id=2, started_at=T0, ended_at=T0 + 5 * H)])
    assert rating.charge_minor == 1000 and rating.sla_credit_minor == 0


def test_the_sla_credit_is_capped_at_the_line():
    # 1 h served, 9 h down, N = 2: uncapped the credit would be 18 h of price
    rating = rate([span(T0, T0 + 10 * H, cards=1, price=100)], [Downtime(node_id=1, started_at=T0 + H, ended_at=None)])
    assert rating.charge_minor == 100
    assert rating.sla_credit_minor == 100


def test_a_line_is_rounded_once_not_per_segment():
    # Three segments of 1 second each at 1 minor unit per hour: 3/3600 each, rounded once -> 0 (never 3 x 0,
    # and 1800 seconds -> 0.5 -> 1)
    spans = [span(T0 + timedelta(seconds=i * 10), T0 + timedelta(seconds=i * 10 + 1), cards=1, price=1) for i in range(3)]
    assert rate(spans).charge_minor == 0
    assert rate([span(T0, T0 + timedelta(seconds=1800), cards=1, price=1)]).charge_minor == 1


def test_sub_second_instants_are_floored_to_the_second():
    rating = rate([span(T0 + timedelta(microseconds=999_999), T0 + timedelta(seconds=10, microseconds=1), cards=1)])
    assert rating.card_seconds == 10


def test_the_evidence_grid_adds_up_to_the_billed_seconds():
    rating = rate([span(T0 + timedelta(minutes=30), T0 + 3 * H, cards=2)], [Downtime(node_id=1, started_at=T0 + H, ended_at=T0 + 2 * H)])
    assert sum(rating.device_hour_seconds.values()) == rating.card_seconds == 2 * 5400
    assert rating.device_hour_seconds[(100, int(T0.timestamp()))] == 1800
    assert (100, int((T0 + H).timestamp())) not in rating.device_hour_seconds


# --- properties ----------------------------------------------------------------------------------------------------

instants = st.integers(min_value=0, max_value=40 * 24 * 3600).map(lambda s: T0 + timedelta(seconds=s, microseconds=s % 7 * 1000))


@st.composite
def usage(draw):
    spans = []
    for node in range(1, draw(st.integers(1, 3)) + 1):
        a, b = sorted([draw(instants), draw(instants)])
        spans.append(span(a, draw(st.one_of(st.just(None), st.just(b))), cards=draw(st.integers(1, 8)),
                          price=draw(st.integers(0, 10_000_000)), node=node))
    downtimes = []
    for _ in range(draw(st.integers(0, 3))):
        a, b = sorted([draw(instants), draw(instants)])
        downtimes.append(Downtime(node_id=draw(st.integers(1, 3)), started_at=a, ended_at=b))
    cuts = sorted(draw(st.lists(instants, min_size=1, max_size=4)))
    return spans, downtimes, cuts


@settings(max_examples=300, deadline=None)
@given(usage())
def test_splitting_time_into_periods_never_bills_a_second_twice_or_loses_one(case):
    spans, downtimes, cuts = case
    start, end = T0 - 24 * H, T0 + 41 * 24 * H
    whole = rate(spans, downtimes, start=start, end=end)
    boundaries = [start, *cuts, end]
    parts = [rate(spans, downtimes, start=a, end=b) for a, b in zip(boundaries, boundaries[1:], strict=False)]
    assert sum(p.card_seconds for p in parts) == whole.card_seconds
    assert sum(p.down_card_seconds for p in parts) == whole.down_card_seconds
    # each period is rounded once: the parts differ from the whole by at most half a unit per part
    assert abs(sum(p.charge_minor for p in parts) - whole.charge_minor) <= len(parts)
    for p in [whole, *parts]:
        assert 0 <= p.sla_credit_minor <= p.charge_minor
        assert sum(p.device_hour_seconds.values()) == p.card_seconds


@settings(max_examples=200, deadline=None)
@given(usage())
def test_without_downtime_a_whole_period_costs_what_marketplace_shows(case):
    # Marketplace's reservation price (segments x locked price, rounded once, half up) and billing agree
    # for a period covering every segment, when instants are whole seconds.
    spans, _, _ = case
    spans = [Span(s.node_id, s.device_ids, s.started_at.replace(microsecond=0), (s.ended_at or T0 + 41 * 24 * H).replace(microsecond=0),
                  s.price_per_card_hour_minor) for s in spans]
    rating = rate(spans, start=T0 - H, end=T0 + 42 * 24 * H)
    expected = card_seconds_price_minor([(s.price_per_card_hour_minor, len(s.device_ids) * int((s.ended_at - s.started_at).total_seconds()))
                                         for s in spans])
    assert rating.charge_minor == expected


def test_the_outage_after_a_segment_failover_closed_is_credited_not_billed():
    # Given failover's records: node 1's segment closed at its last heartbeat (2 h), the outage from there
    # until the new node 2 was healthy (2.5 h), and node 2's segment from then on
    spans = [span(T0, T0 + 2 * H, cards=1, price=100, node=1), span(T0 + 2.5 * H, T0 + 4 * H, cards=1, price=100, node=2)]
    rating = rate(spans, [Downtime(node_id=1, started_at=T0 + 2 * H, ended_at=T0 + 2.5 * H)])
    # Then 3.5 h are billed and the half hour down is credited (N = 2)
    assert rating.card_seconds == int(3.5 * 3600) and rating.charge_minor == 350
    assert rating.down_card_seconds == 1800 and rating.sla_credit_minor == 100


def test_nothing_free_credits_the_outage_to_the_booked_end_within_the_period():
    # The reservation ended at the last heartbeat (2 h) and the record runs to the booked end (6 h)
    rating = rate([span(T0, T0 + 2 * H, cards=2, price=100)], [Downtime(node_id=1, started_at=T0 + 2 * H, ended_at=T0 + 6 * H)],
                  policy=SlaPolicy(credit_multiplier=Fraction(1, 4)))
    assert rating.charge_minor == 400 and rating.down_card_seconds == 2 * 4 * 3600 and rating.sla_credit_minor == 200
    # and split at 3 h, each period gets its own part of the outage, nothing twice
    first = rate([span(T0, T0 + 2 * H, cards=2, price=100)], [Downtime(node_id=1, started_at=T0 + 2 * H, ended_at=T0 + 6 * H)],
                 end=T0 + 3 * H)
    second = rate([span(T0, T0 + 2 * H, cards=2, price=100)], [Downtime(node_id=1, started_at=T0 + 2 * H, ended_at=T0 + 6 * H)],
                  start=T0 + 3 * H)
    assert first.down_card_seconds + second.down_card_seconds == rating.down_card_seconds


def test_cards_back_on_the_same_node_end_the_credited_outage_of_the_earlier_segment():
    # the same card serves again on node 1 from 3 h, inside a recorded outage of 2 h -> 5 h
    spans = [span(T0, T0 + 2 * H, cards=1, price=100), span(T0 + 3 * H, T0 + 4 * H, cards=1, price=100)]
    rating = rate(spans, [Downtime(node_id=1, started_at=T0 + 2 * H, ended_at=T0 + 5 * H)])
    # the first segment's lost time stops where the card serves again (2 h -> 3 h), the second segment is
    # cut (3 h -> 4 h) and lost until the outage ends (4 h -> 5 h): each second down counted once
    assert rating.card_seconds == 2 * 3600
    assert rating.down_card_seconds == 3 * 3600
