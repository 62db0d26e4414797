"""The node-agent API: register, heartbeat, mismatch flags, stale agents, keys and bad input."""

import json
from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone
from rest_framework.test import APIClient

from accounts.models import Membership, Organization
from inventory.agent_services import (
    node_agent_authenticate,
    node_agent_heartbeat,
    node_agent_register,
    node_agent_token_create,
    node_agent_token_revoke,
    node_mismatch_check,
    nodes_mark_stale,
)
from inventory.allocations import rentable_devices
from inventory.models import Node, NodeAgentToken, NodeStatusChange
from inventory.tasks import nodes_mark_stale_task
from tests.factories import NodeFactory, OrganizationFactory, SiteFactory, accelerator, member

REGISTER = reverse("api:agent-register")
HEARTBEAT = reverse("api:agent-heartbeat")

H100_REPORT = {
    "model_name": "NVIDIA H100 80GB HBM3",
    "card_count": 8,
    "memory_gb": 80,
    "driver_version": "535.129.03",
    "software_versions": {"cuda": "12.2", "nodeagent": "0.1.0"},
}


@pytest.fixture
def node(catalog):
    """A listed 8x H100 SXM5 node whose agent has not reported yet."""
    return NodeFactory(status=Node.Status.REGISTERED)


@pytest.fixture
def agent_key(node):
    _token, key = node_agent_token_create(node=node)
    return key


def agent_client(key: str | None) -> APIClient:
    client = APIClient()
    if key is not None:
        client.credentials(HTTP_AUTHORIZATION=f"Agent {key}")
    return client


def register(key, report=None, **changes):
    body = dict(report or H100_REPORT, **changes)
    return agent_client(key).post(REGISTER, body, format="json")


def node_rentable(node) -> bool:
    return rentable_devices().filter(node=node).exists()


def assert_error(response, status_code: int, code: str | None = None):
    assert response.status_code == status_code, response.content
    error = response.json()["error"]
    assert set(error) == {"code", "message", "fields"}
    assert error["message"]
    if code:
        assert error["code"] == code
    return error


def assert_unchanged(node):
    """Nothing the agent reports reached the node."""
    fresh = Node.objects.get(pk=node.pk)
    assert fresh.status == node.status
    assert fresh.reported_model_name == node.reported_model_name
    assert fresh.reported_card_count == node.reported_card_count
    assert fresh.mismatch_reason == node.mismatch_reason
    assert fresh.last_heartbeat_at == node.last_heartbeat_at


# ---------------------------------------------------------------------------------------------
# Register
# ---------------------------------------------------------------------------------------------


class TestRegister:
    def test_a_matching_report_brings_the_node_online_and_on_the_market(self, node, agent_key):
        # given a registered node that is not rentable yet
        assert not node_rentable(node)

        # when its agent reports 8 x "NVIDIA H100 80GB HBM3"
        response = register(agent_key)

        # then the report is stored, the node is online and unflagged, and its cards are rentable
        assert response.status_code == 200, response.content
        body = response.json()
        assert body["node"]["status"] == "online"
        assert body["node"]["flagged"] is False
        assert body["node"]["listed_model"] == "H100 SXM5 80GB"
        assert body["heartbeat_timeout_seconds"] == 180
        node.refresh_from_db()
        assert node.status == Node.Status.ONLINE
        assert node.mismatch_reason == ""
        assert node.reported_model_name == "NVIDIA H100 80GB HBM3"
        assert (node.reported_card_count, node.reported_memory_gb) == (8, 80)
        assert node.driver_version == "535.129.03"
        assert node.software_versions == {"cuda": "12.2", "nodeagent": "0.1.0"}
        assert node.last_heartbeat_at is not None
        assert rentable_devices().filter(node=node).count() == 8
        change = NodeStatusChange.objects.get(node=node)
        assert (change.from_status, change.to_status, change.reason) == (
            "registered",
            "online",
            "node agent registered",
        )

    def test_fewer_cards_flag_the_node_and_take_it_off_the_market(self, node, agent_key):
        # when the agent sees only 6 of the 8 listed cards
        response = register(agent_key, card_count=6)

        # then the node is online (its agent is alive) but flagged, and not rentable
        assert response.status_code == 200
        assert response.json()["node"]["flagged"] is True
        assert response.json()["node"]["mismatch_reason"] == "agent sees 6 cards, listing says 8"
        node.refresh_from_db()
        assert node.status == Node.Status.ONLINE
        assert node.mismatch_reason == "agent sees 6 cards, listing says 8"
        assert not node_rentable(node)

    def test_another_model_flags_the_node_naming_both(self, node, agent_key):
        register(agent_key, model_name="NVIDIA A100-SXM4-80GB")

        node.refresh_from_db()
        assert node.mismatch_reason == 'agent sees "NVIDIA A100-SXM4-80GB", listing says "H100 SXM5 80GB"'
        assert not node_rentable(node)

    def test_a_matching_report_clears_an_earlier_mismatch(self, node, agent_key):
        # given a node flagged for a missing card
        register(agent_key, card_count=7)
        assert not node_rentable(Node.objects.get(pk=node.pk))

        # when the card is back and the agent reports again
        response = register(agent_key)

        # then the flag is gone and the node is back on the market
        assert response.json()["node"]["flagged"] is False
        node.refresh_from_db()
        assert node.mismatch_reason == ""
        assert node_rentable(node)

    def test_an_ascend_node_matches_what_npu_smi_prints(self, catalog):
        node = NodeFactory(status=Node.Status.REGISTERED, accelerator_model=accelerator("huawei-ascend-910b3"))
        _token, key = node_agent_token_create(node=node)

        register(key, model_name="910B3", memory_gb=64, driver_version="23.0.7", software_versions={"cann": "8.0.0"})

        node.refresh_from_db()
        assert (node.status, node.mismatch_reason) == (Node.Status.ONLINE, "")

    def test_a_report_without_memory_is_accepted(self, node, agent_key):
        response = register(agent_key, memory_gb=None)

        assert response.status_code == 200
        node.refresh_from_db()
        assert node.reported_memory_gb is None
        assert node.mismatch_reason == ""

    def test_a_node_in_maintenance_keeps_its_status_but_records_the_report(self, catalog):
        node = NodeFactory(status=Node.Status.MAINTENANCE)
        _token, key = node_agent_token_create(node=node)

        register(key, card_count=4)

        node.refresh_from_db()
        assert node.status == Node.Status.MAINTENANCE
        assert node.mismatch_reason == "agent sees 4 cards, listing says 8"

    def test_a_retired_node_refuses_reports_and_changes_nothing(self, catalog):
        node = NodeFactory(status=Node.Status.RETIRED)
        _token, key = node_agent_token_create(node=node)

        response = register(key)

        assert_error(response, 409, "node_retired")
        assert_unchanged(node)


# ---------------------------------------------------------------------------------------------
# Heartbeat
# ---------------------------------------------------------------------------------------------


class TestHeartbeat:
    def test_a_heartbeat_before_any_report_is_refused(self, node, agent_key):
        response = agent_client(agent_key).post(HEARTBEAT, {}, format="json")

        assert_error(response, 409, "register_first")
        assert_unchanged(node)

    def test_heartbeats_are_idempotent_and_keep_the_node_online(self, node, agent_key):
        # given a registered, online node
        register(agent_key)
        first = Node.objects.get(pk=node.pk).last_heartbeat_at

        # when the agent sends two heartbeats
        responses = [agent_client(agent_key).post(HEARTBEAT) for _ in range(2)]

        # then both answer the node's state, the heartbeat time moves on, and no status changes
        assert [r.status_code for r in responses] == [200, 200]
        assert responses[1].json()["status"] == "online"
        assert responses[1].json()["flagged"] is False
        node.refresh_from_db()
        assert node.last_heartbeat_at > first
        assert NodeStatusChange.objects.filter(node=node).count() == 1

    def test_a_heartbeat_of_an_online_node_is_one_update(self, node, agent_key, django_assert_num_queries):
        # given an online node whose key was used a moment ago (authenticated as the API would)
        register(agent_key)
        token = node_agent_authenticate(key=agent_key)

        # when it heartbeats, then that costs a single UPDATE
        with django_assert_num_queries(1) as captured:
            node_agent_heartbeat(token=token)
        assert captured.captured_queries[0]["sql"].startswith("UPDATE")

    def test_a_heartbeat_with_data_is_refused(self, node, agent_key):
        register(agent_key)
        node.refresh_from_db()

        response = agent_client(agent_key).post(HEARTBEAT, {"card_count": 3}, format="json")

        error = assert_error(response, 400, "invalid")
        assert error["fields"] == {"card_count": ["Unknown field."]}
        assert_unchanged(node)


# ---------------------------------------------------------------------------------------------
# Stale agents
# ---------------------------------------------------------------------------------------------


class TestStale:
    def test_a_node_without_heartbeats_turns_unhealthy_and_comes_back_with_the_next(self, node, agent_key, settings):
        # given three online nodes: one heard from long ago, one just now, one never
        settings.NODE_HEARTBEAT_TIMEOUT_SECONDS = 180
        register(agent_key)
        now = timezone.now()
        Node.objects.filter(pk=node.pk).update(last_heartbeat_at=now - timedelta(seconds=181))
        fresh = NodeFactory(status=Node.Status.ONLINE, last_heartbeat_at=now - timedelta(seconds=10))
        never = NodeFactory(status=Node.Status.ONLINE, last_heartbeat_at=None)

        # when the stale sweep runs (twice: it is safe to repeat)
        moved = nodes_mark_stale(now=now)
        again = nodes_mark_stale(now=now)

        # then the quiet node and the never-heard-from one are unhealthy, with an audit row, off the market
        assert sorted(moved) == sorted([node.pk, never.pk])
        assert again == []
        node.refresh_from_db()
        assert node.status == Node.Status.UNHEALTHY
        assert not node_rentable(node)
        assert (
            NodeStatusChange.objects.filter(node=node, to_status="unhealthy")
            .get()
            .reason.startswith("no agent heartbeat")
        )
        assert Node.objects.get(pk=fresh.pk).status == Node.Status.ONLINE
        assert Node.objects.get(pk=never.pk).status == Node.Status.UNHEALTHY

        # when the agent's next heartbeat arrives, then the node is online and rentable again
        response = agent_client(agent_key).post(HEARTBEAT)
        assert response.json()["status"] == "online"
        node.refresh_from_db()
        assert node.status == Node.Status.ONLINE
        assert node_rentable(node)

    def test_the_celery_task_runs_the_sweep(self, node, agent_key):
        register(agent_key)
        Node.objects.filter(pk=node.pk).update(last_heartbeat_at=timezone.now() - timedelta(hours=1))

        result = nodes_mark_stale_task()

        assert result == {"marked_unhealthy": [node.pk]}
        assert Node.objects.get(pk=node.pk).status == Node.Status.UNHEALTHY

    def test_the_sweep_is_in_the_beat_schedule(self, settings):
        schedule = {entry["task"] for entry in settings.CELERY_BEAT_SCHEDULE.values()}
        assert "inventory.nodes_mark_stale" in schedule


# ---------------------------------------------------------------------------------------------
# Bad credentials and bad input: a clear 4xx, nothing changes
# ---------------------------------------------------------------------------------------------


class TestRefused:
    @pytest.mark.parametrize(
        "header",
        [
            None,
            "Agent cfa_thisisnotarealkeyatallxxxxxxxxxxxxxxx",
            "Agent",
            "Agent a b",
            "Token cf_whatever",
            "Agent short",
        ],
    )
    def test_a_missing_or_wrong_key_is_401(self, node, header):
        client = APIClient()
        if header:
            client.credentials(HTTP_AUTHORIZATION=header)

        response = client.post(REGISTER, H100_REPORT, format="json")

        assert_error(response, 401)
        assert response["WWW-Authenticate"] == "Agent"
        assert_unchanged(node)

    def test_a_key_with_a_valid_prefix_but_wrong_secret_is_401(self, node, agent_key):
        response = register(agent_key[:12] + "x" * (len(agent_key) - 12))

        error = assert_error(response, 401, "authentication_failed")
        assert error["message"] == "Invalid or revoked agent key."
        assert_unchanged(node)

    def test_a_revoked_key_is_401_for_register_and_heartbeat(self, node, agent_key):
        register(agent_key)
        node.refresh_from_db()
        node_agent_token_revoke(token=NodeAgentToken.objects.get(node=node))

        assert_error(register(agent_key, card_count=2), 401, "authentication_failed")
        assert_error(agent_client(agent_key).post(HEARTBEAT), 401, "authentication_failed")
        assert_unchanged(node)

    @pytest.mark.parametrize(
        ("changes", "field"),
        [
            ({"card_count": 0}, "card_count"),
            ({"card_count": 65}, "card_count"),
            ({"card_count": "eight"}, "card_count"),
            ({"card_count": None}, "card_count"),
            ({"model_name": ""}, "model_name"),
            ({"model_name": "H" * 201}, "model_name"),
            ({"model_name": "H100\x00; DROP"}, "model_name"),
            ({"model_name": ["H100"]}, "model_name"),
            ({"memory_gb": 0}, "memory_gb"),
            ({"memory_gb": 100000}, "memory_gb"),
            ({"memory_gb": "lots"}, "memory_gb"),
            ({"driver_version": "5" * 101}, "driver_version"),
            ({"software_versions": "cuda 12"}, "software_versions"),
            ({"software_versions": {"cuda": "1" * 65}}, "software_versions"),
            ({"software_versions": {"bad key!": "1"}}, "software_versions"),
            ({"software_versions": {f"lib{i}": "1" for i in range(33)}}, "software_versions"),
            ({"software_versions": {"cuda": {"major": 12}}}, "software_versions"),
            ({"cards": 8}, "cards"),
        ],
    )
    def test_a_malformed_report_is_400_naming_the_field(self, node, agent_key, changes, field):
        response = register(agent_key, **changes)

        error = assert_error(response, 400, "invalid")
        assert field in error["fields"]
        assert_unchanged(node)

    def test_a_report_missing_required_fields_names_them(self, node, agent_key):
        response = agent_client(agent_key).post(REGISTER, {"driver_version": "1"}, format="json")

        error = assert_error(response, 400, "invalid")
        assert {"model_name", "card_count"} <= set(error["fields"])
        assert_unchanged(node)

    @pytest.mark.parametrize(
        ("body", "content_type"),
        [("{not json", "application/json"), ("[1, 2]", "application/json"), ("null", "application/json")],
    )
    def test_a_body_that_is_not_a_json_object_is_400(self, node, agent_key, body, content_type):
        response = agent_client(agent_key).post(REGISTER, body, content_type=content_type)

        assert_error(response, 400)
        assert_unchanged(node)

    def test_an_oversized_report_is_413(self, node, agent_key):
        body = json.dumps(dict(H100_REPORT, padding="x" * 20000))

        response = agent_client(agent_key).post(REGISTER, body, content_type="application/json")

        assert_error(response, 413, "too_large")
        assert_unchanged(node)


# ---------------------------------------------------------------------------------------------
# Provider endpoints: keys and resolving a mismatch
# ---------------------------------------------------------------------------------------------


@pytest.fixture
def provider(node):
    """A member of the organization that owns `node`'s site, signed in."""
    user = member(organization=node.cluster.site.owner, role=Membership.Role.MEMBER)
    client = APIClient()
    client.force_login(user)
    return client


class TestKeys:
    def test_a_provider_creates_a_key_that_is_shown_once_and_works(self, node, provider):
        # when the provider creates a key for the node
        response = provider.post(reverse("api:agent-node-keys", args=[node.pk]))

        # then the key is in the answer once, and the agent can use it
        assert response.status_code == 201, response.content
        created = response.json()
        assert created["key"].startswith("cfa_")
        assert created["prefix"] == created["key"][:12]
        assert created["node"] == node.pk
        assert register(created["key"]).status_code == 200

        # and listing the keys shows prefixes only, with the time of last use
        listed = provider.get(reverse("api:agent-node-keys", args=[node.pk])).json()
        assert [key["prefix"] for key in listed] == [created["prefix"]]
        assert "key" not in listed[0]
        assert listed[0]["last_used_at"] is not None

    def test_a_revoked_key_stops_working_and_revoking_again_is_harmless(self, node, provider):
        created = provider.post(reverse("api:agent-node-keys", args=[node.pk])).json()
        register(created["key"])

        first = provider.post(reverse("api:agent-key-revoke", args=[created["id"]]))
        second = provider.post(reverse("api:agent-key-revoke", args=[created["id"]]))

        assert first.status_code == 200 and second.status_code == 200
        assert first.json()["revoked_at"] == second.json()["revoked_at"] is not None
        assert_error(agent_client(created["key"]).post(HEARTBEAT), 401)

    def test_another_organizations_node_and_key_are_404(self, node, agent_key, catalog):
        # given a provider from another organization
        stranger = member(kind=Organization.Kind.PROVIDER)
        client = APIClient()
        client.force_login(stranger)
        token = NodeAgentToken.objects.get(node=node)

        # then our node and our key do not exist for them
        assert_error(client.post(reverse("api:agent-node-keys", args=[node.pk])), 404)
        assert_error(client.get(reverse("api:agent-node-keys", args=[node.pk])), 404)
        assert_error(client.post(reverse("api:agent-key-revoke", args=[token.pk])), 404)
        assert_error(client.post(reverse("api:agent-node-mismatch-resolve", args=[node.pk])), 404)
        assert NodeAgentToken.objects.filter(node=node).count() == 1
        assert NodeAgentToken.objects.get(pk=token.pk).revoked_at is None

    def test_a_finance_viewer_may_not_create_keys(self, node):
        viewer = member(organization=node.cluster.site.owner, role=Membership.Role.FINANCE_VIEWER)
        client = APIClient()
        client.force_login(viewer)

        assert_error(client.post(reverse("api:agent-node-keys", args=[node.pk])), 403)
        assert not NodeAgentToken.objects.filter(node=node).exists()

    def test_an_anonymous_caller_gets_401(self, node):
        assert_error(APIClient().post(reverse("api:agent-node-keys", args=[node.pk])), 401)

    def test_an_api_token_of_the_owning_organization_works(self, node):
        from accounts.services import api_token_create

        user = member(organization=node.cluster.site.owner)
        _token, key = api_token_create(user=user, organization=node.cluster.site.owner, name="ci")
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Token {key}")

        assert client.post(reverse("api:agent-node-keys", args=[node.pk])).status_code == 201


class TestResolve:
    def test_a_mismatch_cannot_be_resolved_while_the_report_contradicts_the_listing(self, node, agent_key, provider):
        register(agent_key, card_count=6)

        response = provider.post(reverse("api:agent-node-mismatch-resolve", args=[node.pk]))

        error = assert_error(response, 400, "invalid")
        assert "agent sees 6 cards, listing says 8" in error["message"]
        assert Node.objects.get(pk=node.pk).mismatch_reason == "agent sees 6 cards, listing says 8"

    def test_correcting_the_listing_resolves_the_mismatch(self, node, agent_key, provider):
        # given a node flagged for showing 6 of 8 cards
        register(agent_key, card_count=6)

        # when the provider corrects the listing to 6 cards (the listing service's job; a stand-in here)
        Node.objects.filter(pk=node.pk).update(card_count=6)
        response = provider.post(reverse("api:agent-node-mismatch-resolve", args=[node.pk]))

        # then the flag is cleared and the node is back on the market
        assert response.status_code == 200, response.content
        assert response.json()["flagged"] is False
        node.refresh_from_db()
        assert node.mismatch_reason == ""
        assert node_rentable(node)

    def test_a_listing_change_that_contradicts_the_last_report_flags_the_node(self, node, agent_key):
        register(agent_key)
        Node.objects.filter(pk=node.pk).update(accelerator_model=accelerator("nvidia-h200-sxm-141gb"))

        node = node_mismatch_check(node=node)

        assert node.mismatch_reason == (
            'agent sees "NVIDIA H100 80GB HBM3", listing says "H200 SXM 141GB"; '
            "agent sees 80 GB per card, listing says 141 GB"
        )


def test_services_can_be_used_without_http(node):
    """The service layer alone, as a Celery task or a management command would use it."""
    token, _key = node_agent_token_create(node=node)

    registered = node_agent_register(token=token, report=dict(H100_REPORT))
    beat = node_agent_heartbeat(token=token)

    assert registered.status == beat.status == Node.Status.ONLINE


def test_the_site_owner_decides_the_scope(catalog):
    """A node's organization is its site's owner (not whoever created the node)."""
    site = SiteFactory(owner=OrganizationFactory(kind=Organization.Kind.PROVIDER))
    node = NodeFactory(cluster__site=site)
    from inventory.agent_services import organization_node_get

    assert organization_node_get(organization=site.owner, node_id=node.pk) == node
    assert organization_node_get(organization=OrganizationFactory(), node_id=node.pk) is None
