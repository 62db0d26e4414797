"""Helpers for the metering tests: an agent's samples, and the agent API over the test client."""

import json
import uuid
from datetime import UTC, datetime, timedelta

from django.urls import reverse
from rest_framework.test import APIClient

USAGE = reverse("api:agent-usage")


def minute(now: datetime, minutes_ago: int) -> datetime:
    """The start of a whole minute `minutes_ago` minutes before now (UTC)."""
    return now.astimezone(UTC).replace(second=0, microsecond=0) - timedelta(minutes=minutes_ago)


def sample(device_id: int, start: datetime, *, seconds: int = 60, utilization: float = 50.0, **changes) -> dict:
    body = {
        "sample_id": str(uuid.uuid4()),
        "device": device_id,
        "window_start": start.isoformat().replace("+00:00", "Z"),
        "window_end": (start + timedelta(seconds=seconds)).isoformat().replace("+00:00", "Z"),
        "busy_seconds": seconds * utilization / 100,
        "utilization_percent": utilization,
        "memory_used_mib": 40_000,
        "power_watts": 500.0,
    }
    body.update(changes)
    return body


def agent_api(key: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Agent {key}")
    return client


def post_usage(key: str, samples: list[dict]):
    # json.dumps, not the test client's encoder: it writes NaN as an agent in another language might.
    return agent_api(key).generic("POST", USAGE, json.dumps({"samples": samples}), content_type="application/json")


def book(offer, *, cards: int, start: datetime, end: datetime):
    """A buyer's reservation of `cards` cards of the offer for [start, end), through the booking service."""
    from marketplace.services import reservation_create
    from tests.factories import member

    buyer = member(kind="buyer")
    reservation, _ = reservation_create(
        organization=buyer.memberships.get().organization, created_by=buyer, offer=offer, card_count=cards, start=start, end=end
    )
    return reservation
