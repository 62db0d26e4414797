"""REST endpoints of accounts: who am I, API tokens."""

from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.selectors import membership_get


class MeApi(APIView):
    class OutputSerializer(serializers.Serializer):
        email = serializers.EmailField()
        organization = serializers.CharField(allow_null=True)
        organization_kind = serializers.CharField(allow_null=True)
        role = serializers.CharField(allow_null=True)

    @extend_schema(responses=OutputSerializer, summary="The caller and the organization it acts for")
    def get(self, request):
        organization = getattr(request, "organization", None)
        membership = membership_get(user=request.user, organization=organization)
        return Response(
            self.OutputSerializer(
                {
                    "email": request.user.email,
                    "organization": organization.name if organization else None,
                    "organization_kind": organization.kind if organization else None,
                    "role": membership.role if membership else None,
                }
            ).data
        )
