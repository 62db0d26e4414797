from accounts.notifications import notification_unread_count
from accounts.selectors import membership_get, role_allows, user_is_finance_staff, user_is_operator, user_organizations


def organizations(request):
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return {}
    organization = getattr(request, "organization", None)
    membership = membership_get(user=user, organization=organization)
    role = membership.role if membership else None
    return {
        "active_organization": organization,
        "active_role": membership.role if membership else None,
        # invoices (buyers) and earnings (providers): owners, admins and finance viewers
        "can_view_finance": role_allows(role=role, organization=organization, action="view_finance"),
        # the payment method page and "Pay now" (buyers): roles that read finances and may spend (owner, admin)
        "can_pay_invoices": all(role_allows(role=role, organization=organization, action=action) for action in ("view_finance", "book")),
        "my_organizations": user_organizations(user=user),
        "is_finance_staff": user_is_finance_staff(user=user),
        "is_operator": user_is_operator(user=user),
        # One indexed COUNT per page, for the badge in the navigation.
        "unread_notifications": notification_unread_count(user=user),
    }
