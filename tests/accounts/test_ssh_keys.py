"""Buyers' SSH public keys: adding, revoking, the selectors provisioning calls, the API and the page."""

import pytest
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from rest_framework.test import APIClient

from accounts.models import Membership, SshPublicKey
from accounts.selectors import ssh_keys_for_organization, ssh_keys_for_users
from accounts.services import MAX_ACTIVE_SSH_KEYS, api_token_create, ssh_key_add, ssh_key_revoke
from tests.accounts import ssh_key_samples as samples
from tests.factories import member

pytestmark = pytest.mark.django_db

ED25519_FINGERPRINT = samples.ACCEPTED[samples.ED25519][2]


def _api(user) -> APIClient:
    client = APIClient()
    _, key = api_token_create(user=user, organization=user.memberships.first().organization, name="test")
    client.credentials(HTTP_AUTHORIZATION=f"Token {key}")
    return client


# -- services ------------------------------------------------------------------------------------


def test_an_added_key_keeps_its_type_fingerprint_comment_and_authorized_keys_line():
    user = member()
    key = ssh_key_add(user=user, name=" laptop ", public_key=samples.ED25519 + "\n")
    stored = SshPublicKey.objects.get(pk=key.pk)
    assert (stored.name, stored.key_type, stored.bits, stored.fingerprint) == ("laptop", "ssh-ed25519", 256, ED25519_FINGERPRINT)
    assert stored.comment == "ed25519@example.test"
    assert stored.authorized_keys_line == samples.ED25519
    assert stored.is_active


def test_a_key_without_a_name_is_named_after_its_comment_and_one_without_either_is_refused():
    user = member()
    assert ssh_key_add(user=user, name="", public_key=samples.ED25519).name == "ed25519@example.test"
    bare = " ".join(samples.ECDSA_256.split()[:2])
    with pytest.raises(ValidationError) as caught:
        ssh_key_add(user=user, name="  ", public_key=bare)
    assert set(caught.value.message_dict) == {"name"}


def test_a_malformed_key_is_a_field_error_on_public_key_and_stores_nothing():
    user = member()
    with pytest.raises(ValidationError) as caught:
        ssh_key_add(user=user, name="oops", public_key="-----BEGIN OPENSSH PRIVATE KEY-----\nb3Bl\n-----END OPENSSH PRIVATE KEY-----")
    assert "PRIVATE key" in caught.value.message_dict["public_key"][0]
    assert not SshPublicKey.objects.exists()


def test_the_same_key_twice_is_refused_but_after_revoking_it_can_be_added_again():
    # given a user with an active key
    user = member()
    first = ssh_key_add(user=user, name="laptop", public_key=samples.ED25519)
    # when the same key is added again (with another comment: the fingerprint is what counts)
    with pytest.raises(ValidationError) as caught:
        ssh_key_add(user=user, name="again", public_key=" ".join(samples.ED25519.split()[:2]) + " other-comment")
    # then it is refused, naming the key it duplicates
    assert "already added this key (as 'laptop'" in caught.value.message_dict["public_key"][0]
    # and once revoked, the key may come back (the revoked row stays, for the history)
    ssh_key_revoke(key=first)
    again = ssh_key_add(user=user, name="laptop again", public_key=samples.ED25519)
    assert SshPublicKey.objects.filter(user=user, fingerprint=ED25519_FINGERPRINT).count() == 2
    assert again.is_active and not SshPublicKey.objects.get(pk=first.pk).is_active


def test_two_users_may_hold_the_same_public_key():
    ssh_key_add(user=member(), name="shared", public_key=samples.ED25519)
    ssh_key_add(user=member(), name="shared", public_key=samples.ED25519)
    assert SshPublicKey.objects.count() == 2


def test_the_database_refuses_a_second_active_row_with_the_same_fingerprint_for_a_user():
    # given an active key; when a second active row with its fingerprint is written past the service
    user = member()
    key = ssh_key_add(user=user, name="laptop", public_key=samples.ED25519)
    with pytest.raises(IntegrityError), transaction.atomic():
        SshPublicKey.objects.create(user=user, name="dup", key_type=key.key_type, key_data=key.key_data, bits=256,
                                    fingerprint=key.fingerprint)


def test_a_user_has_at_most_the_limit_of_active_keys():
    user = member()
    # Rows written directly: MAX_ACTIVE_SSH_KEYS distinct real keys would be slow to generate.
    SshPublicKey.objects.bulk_create(
        SshPublicKey(user=user, name=f"k{i}", key_type="ssh-ed25519", key_data="x", bits=256, fingerprint=f"SHA256:{i}")
        for i in range(MAX_ACTIVE_SSH_KEYS)
    )
    with pytest.raises(ValidationError) as caught:
        ssh_key_add(user=user, name="one more", public_key=samples.ED25519)
    assert "revoke one" in caught.value.message_dict["public_key"][0]


def test_revoking_twice_keeps_the_first_revocation_time():
    key = ssh_key_add(user=member(), name="laptop", public_key=samples.ED25519)
    first = ssh_key_revoke(key=key).revoked_at
    assert ssh_key_revoke(key=SshPublicKey.objects.get(pk=key.pk)).revoked_at == first


# -- what provisioning reads ---------------------------------------------------------------------


def test_provisioning_gets_the_active_keys_of_the_given_users_only():
    alice, bob, carol = member(), member(), member()
    alice_key = ssh_key_add(user=alice, name="a", public_key=samples.ED25519)
    bob_old = ssh_key_add(user=bob, name="old", public_key=samples.ECDSA_256)
    bob_new = ssh_key_add(user=bob, name="new", public_key=samples.RSA_2048)
    ssh_key_add(user=carol, name="c", public_key=samples.SK_ED25519)
    ssh_key_revoke(key=bob_old)
    keys = list(ssh_keys_for_users(user_ids=[alice.pk, bob.pk]))
    assert set(keys) == {alice_key, bob_new}


def test_a_deactivated_users_keys_are_not_handed_out():
    user = member()
    ssh_key_add(user=user, name="a", public_key=samples.ED25519)
    user.is_active = False
    user.save(update_fields=["is_active"])
    assert not ssh_keys_for_users(user_ids=[user.pk]).exists()


def test_an_organizations_keys_are_its_working_members_active_keys():
    # given an organization with an owner, a member, a finance viewer, and someone from elsewhere
    owner = member()
    organization = owner.memberships.get().organization
    colleague = member(organization=organization, role=Membership.Role.MEMBER)
    accountant = member(organization=organization, role=Membership.Role.FINANCE_VIEWER)
    outsider = member()
    owner_key = ssh_key_add(user=owner, name="o", public_key=samples.ED25519)
    colleague_key = ssh_key_add(user=colleague, name="c", public_key=samples.ECDSA_384)
    revoked = ssh_key_add(user=colleague, name="old", public_key=samples.ECDSA_521)
    ssh_key_revoke(key=revoked)
    ssh_key_add(user=accountant, name="f", public_key=samples.ECDSA_256)
    ssh_key_add(user=outsider, name="x", public_key=samples.RSA_2048)
    # when provisioning asks for the organization's keys
    keys = list(ssh_keys_for_organization(organization=organization))
    # then it gets the owner's and the member's active keys, each once; not the finance viewer's, nor anyone else's
    assert sorted(k.pk for k in keys) == sorted([owner_key.pk, colleague_key.pk])


def test_reading_many_users_keys_is_one_query(django_assert_num_queries):
    users = [member() for _ in range(3)]
    for user, key in zip(users, [samples.ED25519, samples.ECDSA_256, samples.RSA_2048], strict=True):
        ssh_key_add(user=user, name="k", public_key=key)
    with django_assert_num_queries(1):
        lines = [(k.user.email, k.authorized_keys_line) for k in ssh_keys_for_users(user_ids=[u.pk for u in users])]
    assert len(lines) == 3


# -- API -----------------------------------------------------------------------------------------


def test_the_api_adds_lists_and_revokes_the_callers_keys():
    user = member()
    client = _api(user)
    created = client.post("/api/ssh-keys/", {"name": "laptop", "public_key": samples.ED25519}, format="json")
    assert created.status_code == 201, created.content
    body = created.json()
    assert (body["fingerprint"], body["key_type"], body["public_key"], body["is_active"]) == (
        ED25519_FINGERPRINT, "ssh-ed25519", samples.ED25519, True)
    listed = client.get("/api/ssh-keys/").json()
    assert listed["count"] == 1 and listed["results"][0]["id"] == body["id"]
    revoked = client.post(f"/api/ssh-keys/{body['id']}/revoke/")
    assert revoked.status_code == 200 and revoked.json()["is_active"] is False and revoked.json()["revoked_at"]
    assert client.get("/api/ssh-keys/").json()["results"][0]["is_active"] is False  # still listed, as revoked


def test_another_users_key_is_invisible_and_cannot_be_revoked_even_in_the_same_organization():
    # given two members of one organization, one of them with a key
    owner = member()
    colleague = member(organization=owner.memberships.get().organization, role=Membership.Role.ADMIN)
    key = ssh_key_add(user=owner, name="owner's", public_key=samples.ED25519)
    client = _api(colleague)
    # then the colleague sees no key and revoking it answers 404 in the error shape, changing nothing
    assert client.get("/api/ssh-keys/").json()["count"] == 0
    response = client.post(f"/api/ssh-keys/{key.pk}/revoke/")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"
    assert SshPublicKey.objects.get(pk=key.pk).is_active


@pytest.mark.parametrize(
    ("body", "field", "says"),
    [
        ({"name": "x", "public_key": samples.DSA}, "public_key", "DSA"),
        ({"name": "x", "public_key": samples.RSA_1024}, "public_key", "at least 2048"),
        ({"name": "x", "public_key": "ssh-ed25519 AAAA@@@"}, "public_key", "base64"),
        ({"name": "x"}, "public_key", "required"),
        ({"name": "x", "public_key": samples.ED25519, "options": "from=*"}, "options", "Unknown field"),
        ({"name": "x" * 101, "public_key": samples.ED25519}, "name", "100"),
    ],
)
def test_a_bad_key_answers_400_naming_the_field_and_stores_nothing(body, field, says):
    client = _api(member())
    response = client.post("/api/ssh-keys/", body, format="json")
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "invalid" and says in error["fields"][field][0]
    assert not SshPublicKey.objects.exists()


def test_the_api_refuses_a_duplicate_key_with_400():
    user = member()
    client = _api(user)
    assert client.post("/api/ssh-keys/", {"name": "a", "public_key": samples.ED25519}, format="json").status_code == 201
    again = client.post("/api/ssh-keys/", {"name": "b", "public_key": samples.ED25519}, format="json")
    assert again.status_code == 400 and "already added" in again.json()["error"]["fields"]["public_key"][0]
    assert SshPublicKey.objects.count() == 1


def test_the_key_list_costs_the_same_queries_for_one_key_as_for_many(django_assert_max_num_queries):
    user = member()
    client = _api(user)
    ssh_key_add(user=user, name="a", public_key=samples.ED25519)
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    with CaptureQueriesContext(connection) as one:
        client.get("/api/ssh-keys/")
    for sample in (samples.ECDSA_256, samples.ECDSA_384, samples.RSA_2048, samples.SK_ECDSA_256):
        ssh_key_add(user=user, name="k", public_key=sample)
    with django_assert_max_num_queries(len(one.captured_queries)):
        assert client.get("/api/ssh-keys/").json()["count"] == 5


def test_the_ssh_key_endpoints_need_authentication():
    assert APIClient().get("/api/ssh-keys/").status_code in (401, 403)


def test_the_accounts_schema_generates_without_warnings(capsys):
    from drf_spectacular.drainage import GENERATOR_STATS
    from drf_spectacular.generators import SchemaGenerator

    GENERATOR_STATS.reset()
    schema = SchemaGenerator().get_schema(request=None, public=True)
    GENERATOR_STATS.emit_summary()
    assert [line for line in capsys.readouterr().err.splitlines() if "accounts/" in line] == []
    assert {"/api/ssh-keys/", "/api/ssh-keys/{key_id}/revoke/"} <= set(schema["paths"])
    listed = schema["paths"]["/api/ssh-keys/"]["get"]["responses"]["200"]["content"]["application/json"]["schema"]["$ref"]
    assert listed.endswith("PaginatedSshKeyOutputList")


# -- the page ------------------------------------------------------------------------------------


def test_the_page_adds_a_key_and_lists_it_with_its_fingerprint(client):
    user = member()
    client.force_login(user)
    response = client.post("/accounts/ssh-keys/", {"name": "work laptop", "public_key": samples.ED25519})
    assert response.status_code == 302
    page = client.get("/accounts/ssh-keys/").content.decode()
    assert "work laptop" in page and ED25519_FINGERPRINT in page and "ssh-ed25519" in page


def test_the_page_shows_a_refusal_next_to_the_key_field(client):
    user = member()
    client.force_login(user)
    response = client.post("/accounts/ssh-keys/", {"name": "oops", "public_key": samples.RSA_1024})
    assert response.status_code == 200
    assert "at least 2048" in response.context["form"].errors["public_key"][0]
    assert 'data-field="public_key"' in response.content.decode()
    assert not SshPublicKey.objects.exists()


def test_the_page_refuses_a_duplicate_next_to_the_key_field(client):
    user = member()
    ssh_key_add(user=user, name="laptop", public_key=samples.ED25519)
    client.force_login(user)
    response = client.post("/accounts/ssh-keys/", {"name": "again", "public_key": samples.ED25519})
    assert "already added" in response.context["form"].errors["public_key"][0]


def test_the_page_revokes_with_a_post_and_only_the_users_own_key(client):
    user, other = member(), member()
    mine = ssh_key_add(user=user, name="mine", public_key=samples.ED25519)
    theirs = ssh_key_add(user=other, name="theirs", public_key=samples.ED25519)
    client.force_login(user)
    assert client.get(f"/accounts/ssh-keys/{mine.pk}/revoke/").status_code == 405  # a link cannot revoke
    assert client.post(f"/accounts/ssh-keys/{theirs.pk}/revoke/").status_code == 404
    assert client.post(f"/accounts/ssh-keys/{mine.pk}/revoke/").status_code == 302
    assert not SshPublicKey.objects.get(pk=mine.pk).is_active and SshPublicKey.objects.get(pk=theirs.pk).is_active
    assert "revoked" in client.get("/accounts/ssh-keys/").content.decode()


def test_the_account_navigation_links_to_the_ssh_keys_page_for_signed_in_users(client):
    assert 'href="/accounts/ssh-keys/"' not in client.get("/").content.decode()
    client.force_login(member())
    assert 'href="/accounts/ssh-keys/"' in client.get("/").content.decode()
    assert client.get("/accounts/ssh-keys/").status_code == 200


# -- the demo ------------------------------------------------------------------------------------


def test_the_demo_buyer_has_one_active_ssh_key_after_seeding_and_after_a_reset(catalog):
    from io import StringIO

    from django.core.management import call_command

    from inventory.management.demo_network import DEMO_LOGINS

    def seed(*args):
        call_command("seed_demo", "--cards", "400", "--no-progress", *args, stdout=StringIO(), stderr=StringIO())

    # given the demo network, seeded and then reset
    for args in ((), ("--reset",)):
        seed(*args)
        # then the demo buyer holds exactly one active key: the fixed ed25519 key (ssh-keygen -lf's fingerprint)
        keys = list(SshPublicKey.objects.filter(user__email=DEMO_LOGINS["buyer"]))
        assert [(k.key_type, k.fingerprint, k.is_active) for k in keys] == [
            ("ssh-ed25519", "SHA256:dw97nFvZ9KApUPB1wecS1jWNDQY5jm2f1sW0nt4cqLI", True)
        ]
