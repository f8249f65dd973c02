"""Credential mint and list endpoints."""

from __future__ import annotations

from typing import cast

from drf_spectacular.utils import extend_schema
from rest_framework import status
from rest_framework.request import Request
from rest_framework.response import Response

from chainlearn.api import ok
from chainlearn.caches import credential_list_cache
from chainlearn.hot_reads import HotRead, HotReadViewSet, no_params
from chainlearn.schema import UNAUTHORIZED, envelope, error
from credentials import services
from credentials.serializers import CredentialItemSerializer, MintResultSerializer, MintSerializer
from users.models import User

CREDENTIALS_DOC = dict(
    operation_id="credentials_list",
    tags=["credentials"],
    summary="The caller's credentials (revoked ones flagged), newest first",
    responses={
        200: envelope("CredentialListEnvelope", CredentialItemSerializer(many=True)),
        401: UNAUTHORIZED,
    },
)
CREDENTIALS = HotRead(credential_list_cache, no_params, per_user=True, doc=CREDENTIALS_DOC)


# The caller's credentials (a cached hot read), and minting one.
class CredentialViewSet(HotReadViewSet):
    hot_reads = {"list": CREDENTIALS}

    @extend_schema(
        operation_id="credentials_mint",
        tags=["credentials"],
        summary="Issue the caller's credential for a completed course",
        request=MintSerializer,
        responses={
            201: envelope("MintEnvelope", MintResultSerializer()),
            400: error("VALIDATION_ERROR: bad body or malformed courseId."),
            401: UNAUTHORIZED,
            403: error("FORBIDDEN: the caller has not completed the course."),
            404: error("NOT_FOUND: unknown or inactive course."),
            409: error("CONFLICT: a credential for this course was already minted."),
        },
    )
    def mint(self, request: Request) -> Response:
        serializer = MintSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        credential = services.credential_mint(
            user=cast(User, request.user), course_id=serializer.validated_data["courseId"]
        )
        data = {
            "credentialId": str(credential.pk),
            "assetCode": credential.asset_code,
            "message": "Course completion credential issued successfully",
        }
        return ok(request, data, status_code=status.HTTP_201_CREATED)
