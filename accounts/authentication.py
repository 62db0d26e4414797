from django.utils.translation import gettext as _
from rest_framework import authentication, exceptions

from accounts.middleware import activate_user_time_zone
from accounts.services import api_token_authenticate


class ApiTokenAuthentication(authentication.BaseAuthentication):
    """`Authorization: Token cf_...` - the request acts as the token's user in the token's organization."""

    keyword = "Token"

    def authenticate(self, request):
        header = authentication.get_authorization_header(request).decode("latin-1").split()
        if not header or header[0] != self.keyword:
            return None
        if len(header) != 2:
            raise exceptions.AuthenticationFailed(_("Send the header as 'Authorization: Token <key>'."))
        token = api_token_authenticate(key=header[1])
        if token is None:
            raise exceptions.AuthenticationFailed(_("Invalid or revoked API token."))
        request._request.organization = token.organization
        # The session middleware ran before DRF knew who this is: read times without an offset in
        # the key holder's zone, as the pages do for a signed-in user.
        activate_user_time_zone(token.user)
        return token.user, token

    def authenticate_header(self, request):
        return self.keyword


from accounts import schema as _schema  # noqa: E402, F401 - registers the API key scheme in the OpenAPI schema
