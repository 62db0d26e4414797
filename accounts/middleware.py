import zoneinfo

from django.utils import timezone

from accounts.selectors import user_organizations

SESSION_KEY = "organization_id"


def activate_user_time_zone(user) -> None:
    """Show (and read naive) times in the user's zone; UTC if it is unknown."""
    try:
        timezone.activate(zoneinfo.ZoneInfo(user.time_zone))
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        timezone.deactivate()


class ActiveOrganizationMiddleware:
    """Sets request.organization (the organization the signed-in user acts for) and their time zone.

    A user in several organizations switches with accounts:switch-organization; the choice is kept in
    the session. API token requests override request.organization with the token's organization.
    """

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        request.organization = None
        user = request.user
        if user.is_authenticated:
            organizations = user_organizations(user=user)
            wanted = request.session.get(SESSION_KEY)
            request.organization = (organizations.filter(pk=wanted).first() if wanted else None) or organizations.first()
            activate_user_time_zone(user)
        else:
            timezone.deactivate()
        try:
            return self.get_response(request)
        finally:
            # The zone is the request's: nothing after it (the next request on this thread, a test's own
            # code in the same process) may inherit the viewer's zone.
            timezone.deactivate()
