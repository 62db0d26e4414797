import pytest

from accounts.models import Membership, Organization
from accounts.selectors import role_allows, user_can, user_is_finance_staff, user_is_operator
from tests.factories import MembershipFactory, OrganizationFactory, UserFactory, member, staff_group


@pytest.mark.parametrize(
    ("role", "kind", "action", "allowed"),
    [
        ("owner", "provider", "manage_inventory", True),
        ("member", "provider", "manage_inventory", True),
        ("finance_viewer", "provider", "manage_inventory", False),
        ("owner", "buyer", "manage_inventory", False),  # buyers list no capacity
        ("member", "buyer", "book", True),
        ("member", "provider", "book", False),  # providers do not rent unless they are "both"
        ("member", "both", "book", True),
        ("finance_viewer", "buyer", "book", False),
        ("finance_viewer", "buyer", "view_finance", True),
        ("member", "buyer", "view_finance", False),
        ("admin", "buyer", "manage_members", True),
        ("member", "buyer", "manage_members", False),
        ("member", "buyer", "no-such-action", False),
    ],
)
def test_what_each_role_may_do(role, kind, action, allowed):
    organization = Organization(name="x", kind=kind)
    assert role_allows(role=role, organization=organization, action=action) is allowed


@pytest.mark.django_db
def test_a_user_has_no_rights_in_an_organization_they_do_not_belong_to():
    user = member(kind=Organization.Kind.PROVIDER)
    other = OrganizationFactory(kind=Organization.Kind.PROVIDER)
    assert user_can(user=user, organization=user.memberships.get().organization, action="manage_inventory")
    assert not user_can(user=user, organization=other, action="view")


@pytest.mark.django_db
def test_platform_staff_are_recognised_by_their_group():
    finance, operator, nobody = UserFactory(), UserFactory(), UserFactory()
    finance.groups.add(staff_group("finance"))
    operator.groups.add(staff_group("operator"))
    assert user_is_finance_staff(user=finance) and not user_is_operator(user=finance)
    assert user_is_operator(user=operator) and not user_is_finance_staff(user=operator)
    assert not user_is_finance_staff(user=nobody) and not user_is_operator(user=nobody)


@pytest.mark.django_db
def test_the_active_organization_follows_the_users_choice_and_never_someone_elses(client):
    user = member(kind=Organization.Kind.BUYER)
    second = OrganizationFactory(name="Zeta Labs", kind=Organization.Kind.PROVIDER)
    MembershipFactory(user=user, organization=second, role=Membership.Role.MEMBER)
    stranger = OrganizationFactory(kind=Organization.Kind.PROVIDER)
    client.force_login(user)
    assert client.get("/api/me/").json()["organization"] != "Zeta Labs"
    assert client.post("/accounts/organization/", {"organization": second.pk}).status_code == 302
    assert client.get("/api/me/").json() == {
        "email": user.email, "organization": "Zeta Labs", "organization_kind": "provider", "role": "member"
    }
    # Switching to an organization the user is not in is refused and changes nothing
    assert client.post("/accounts/organization/", {"organization": stranger.pk}).status_code == 404
    assert client.get("/api/me/").json()["organization"] == "Zeta Labs"


@pytest.mark.django_db
def test_an_owner_adds_a_member_and_a_member_cannot(client):
    owner = member(kind="buyer")
    organization = owner.memberships.get().organization
    newcomer = UserFactory()
    client.force_login(owner)
    assert client.post("/accounts/members/", {"email": newcomer.email, "role": "finance_viewer"}).status_code == 302
    assert Membership.objects.get(user=newcomer, organization=organization).role == "finance_viewer"
    # An unknown email is answered next to the field and adds nobody
    response = client.post("/accounts/members/", {"email": "ghost@example.test", "role": "member"})
    assert "ask them to sign up" in response.context["form"].errors["email"][0]
    # A plain member may not manage members
    plain = member(organization=organization, role="member")
    client.force_login(plain)
    assert client.post("/accounts/members/", {"email": newcomer.email, "role": "owner"}).status_code == 403
    assert Membership.objects.get(user=newcomer, organization=organization).role == "finance_viewer"


@pytest.mark.django_db
def test_the_last_owner_cannot_be_removed_or_demoted(client):
    owner = member(kind="buyer")
    membership = owner.memberships.get()
    client.force_login(owner)
    client.post(f"/accounts/members/{membership.pk}/remove/")
    assert Membership.objects.filter(pk=membership.pk).exists()
    response = client.post("/accounts/members/", {"email": owner.email, "role": "member"})
    assert "at least one owner" in str(response.context["form"].non_field_errors())
    assert Membership.objects.get(pk=membership.pk).role == "owner"


@pytest.mark.django_db
def test_members_of_another_organization_cannot_be_removed(client):
    owner, stranger = member(), member()
    client.force_login(owner)
    assert client.post(f"/accounts/members/{stranger.memberships.get().pk}/remove/").status_code == 404
    assert stranger.memberships.exists()


@pytest.mark.django_db
def test_an_admin_cannot_make_owners_or_remove_them(client):
    owner = member(kind="buyer")
    organization = owner.memberships.get().organization
    admin = member(organization=organization, role="admin")
    client.force_login(admin)
    # promoting themselves is refused, next to the role field
    response = client.post("/accounts/members/", {"email": admin.email, "role": "owner"})
    assert "Only an owner" in response.context["form"].errors["role"][0]
    assert Membership.objects.get(user=admin, organization=organization).role == "admin"
    # removing the owner is refused
    client.post(f"/accounts/members/{owner.memberships.get().pk}/remove/")
    assert Membership.objects.filter(user=owner, organization=organization, role="owner").exists()
    # but an owner may make the admin an owner
    client.force_login(owner)
    client.post("/accounts/members/", {"email": admin.email, "role": "owner"})
    assert Membership.objects.get(user=admin, organization=organization).role == "owner"
