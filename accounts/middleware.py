import zoneinfo

from django.conf import settings
from django.utils import timezone, translation

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


class UserLanguageMiddleware:
    """The signed-in person's stored language (User.language) when the browser sent no language cookie.

    LocaleMiddleware runs before authentication, so it can only see the switcher's cookie and the
    browser's Accept-Language. A person who chose a language on another device (or whose cookie
    expired) still gets it here. The cookie, when present, wins: it is the most recent choice made in
    this browser (and the switcher stores it on the user as well). Place after AuthenticationMiddleware.
    """

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        user = request.user
        if (user.is_authenticated and user.language and settings.LANGUAGE_COOKIE_NAME not in request.COOKIES
                and translation.check_for_language(user.language)):
            translation.activate(user.language)
            request.LANGUAGE_CODE = translation.get_language()
        return self.get_response(request)
