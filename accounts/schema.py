"""OpenAPI descriptions drf-spectacular cannot infer (loaded when accounts.authentication is imported)."""

from drf_spectacular.extensions import OpenApiAuthenticationExtension


class ApiTokenAuthenticationScheme(OpenApiAuthenticationExtension):
    """`Authorization: Token <key>` (accounts.authentication.ApiTokenAuthentication) in the schema."""

    target_class = "accounts.authentication.ApiTokenAuthentication"
    name = "ApiToken"

    def get_security_definition(self, auto_schema):
        return {
            "type": "apiKey",
            "in": "header",
            "name": "Authorization",
            "description": "An organization API key (create one under API keys): `Token cf_...`.",
        }
