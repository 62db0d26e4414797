"""Marketplace fixtures: a buyer's API client (the small offer, the buyer and `soon` are in tests/conftest.py)."""


import pytest
from rest_framework.test import APIClient


@pytest.fixture
def buyer_client(buyer):
    client = APIClient()
    client.force_login(buyer)
    return client
