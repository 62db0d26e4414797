"""Fixtures for the provider inventory tests: two provider organizations with their own inventory."""

from dataclasses import dataclass

import pytest
from rest_framework.test import APIClient

from accounts.models import Membership, Organization, User
from accounts.services import api_token_create
from tests.factories import ClusterFactory, NodeFactory, OfferFactory, OrganizationFactory, SiteFactory, member


@dataclass
class Provider:
    organization: Organization
    user: User
    site: object
    cluster: object
    node: object
    offer: object

    def api(self, user: User | None = None) -> APIClient:
        client = APIClient()
        _, key = api_token_create(user=user or self.user, organization=self.organization, name="tests")
        client.credentials(HTTP_AUTHORIZATION=f"Token {key}")
        return client


def provider_with_inventory(name: str) -> Provider:
    organization = OrganizationFactory(name=name, kind=Organization.Kind.PROVIDER)
    user = member(organization=organization, role=Membership.Role.OWNER)
    site = SiteFactory(owner=organization, name=f"{name} DC1")
    cluster = ClusterFactory(site=site, name="c1")
    node = NodeFactory(cluster=cluster, hostname=f"{name.lower()}-node-1", card_count=4)
    offer = OfferFactory(cluster=cluster, accelerator_model=node.accelerator_model)
    return Provider(organization=organization, user=user, site=site, cluster=cluster, node=node, offer=offer)


@pytest.fixture
def provider(catalog) -> Provider:
    return provider_with_inventory("Alpha")


@pytest.fixture
def other_provider(catalog) -> Provider:
    return provider_with_inventory("Bravo")


@pytest.fixture
def api(provider) -> APIClient:
    return provider.api()
