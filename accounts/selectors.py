"""Reads about users, organizations, what their roles allow, and the SSH keys their machines get."""

from collections.abc import Iterable

from django.contrib.auth.models import AnonymousUser
from django.db.models import QuerySet

from accounts.models import ApiToken, Membership, Organization, SshPublicKey, User

FINANCE_GROUP = "finance"
OPERATOR_GROUP = "operator"

# What each role may do inside its organization. Anything not listed is refused.
ROLE_PERMISSIONS: dict[str, frozenset[str]] = {
    Membership.Role.OWNER: frozenset({"view", "view_finance", "manage_inventory", "book", "manage_members", "manage_tokens"}),
    Membership.Role.ADMIN: frozenset({"view", "view_finance", "manage_inventory", "book", "manage_members", "manage_tokens"}),
    Membership.Role.MEMBER: frozenset({"view", "manage_inventory", "book"}),
    Membership.Role.FINANCE_VIEWER: frozenset({"view", "view_finance"}),
}
# Actions that also need the organization to be of the right kind.
PROVIDER_ACTIONS = frozenset({"manage_inventory"})
BUYER_ACTIONS = frozenset({"book"})


def user_organizations(*, user: User) -> QuerySet[Organization]:
    if not user.is_authenticated:
        return Organization.objects.none()
    return Organization.objects.filter(memberships__user=user).order_by("name")


def membership_get(*, user: User | AnonymousUser, organization: Organization | None) -> Membership | None:
    if organization is None or not user.is_authenticated:
        return None
    return Membership.objects.filter(user=user, organization=organization).first()


def role_allows(*, role: str | None, organization: Organization | None, action: str) -> bool:
    if role is None or organization is None:
        return False
    if action not in ROLE_PERMISSIONS.get(role, frozenset()):
        return False
    if action in PROVIDER_ACTIONS and not organization.is_provider:
        return False
    if action in BUYER_ACTIONS and not organization.is_buyer:
        return False
    return True


def user_can(*, user, organization: Organization | None, action: str) -> bool:
    membership = membership_get(user=user, organization=organization)
    return role_allows(role=membership.role if membership else None, organization=organization, action=action)


def user_is_finance_staff(*, user) -> bool:
    return user.is_authenticated and (user.is_superuser or user.groups.filter(name=FINANCE_GROUP).exists())


def user_is_operator(*, user) -> bool:
    return user.is_authenticated and (user.is_superuser or user.groups.filter(name=OPERATOR_GROUP).exists())


def api_token_list(*, user: User, organization: Organization) -> QuerySet[ApiToken]:
    return ApiToken.objects.filter(user=user, organization=organization)


def organization_members(*, organization: Organization) -> QuerySet[Membership]:
    return organization.memberships.select_related("user").order_by("user__email")


def ssh_key_list(*, user: User) -> QuerySet[SshPublicKey]:
    """The user's keys, active and revoked, newest first."""
    return SshPublicKey.objects.filter(user=user).order_by("-created_at", "-id")


def _active_ssh_keys() -> QuerySet[SshPublicKey]:
    # A deactivated account's keys are left out: it can no longer sign in, so it must not log in to machines.
    return (
        SshPublicKey.objects.filter(user__is_active=True, revoked_at__isnull=True)
        .select_related("user")
        .order_by("user_id", "created_at", "id")
    )


def ssh_keys_for_users(*, user_ids: Iterable[int]) -> QuerySet[SshPublicKey]:
    """The active keys of these users - what provisioning writes to a reservation's machines."""
    return _active_ssh_keys().filter(user_id__in=list(user_ids))


# Roles whose keys go to the organization's machines. A finance viewer reads invoices and changes
# nothing, so a shell on a rented machine is more than the role gives.
SSH_ACCESS_ROLES = (Membership.Role.OWNER, Membership.Role.ADMIN, Membership.Role.MEMBER)


def ssh_keys_for_organization(*, organization: Organization) -> QuerySet[SshPublicKey]:
    """The active keys of the organization's members (owners, admins, members; not finance viewers)."""
    # One membership per (user, organization), so the join cannot repeat a key.
    return _active_ssh_keys().filter(
        user__memberships__organization=organization, user__memberships__role__in=SSH_ACCESS_ROLES
    )
