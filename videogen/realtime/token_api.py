"""The doors that mint the studio's realtime tokens (``videogen.realtime.auth``), and the one
that revokes them.

- ``POST /api/realtime/token``: ``{"token", "expires_in", "url"}`` for ``/ws/realtime/?token=``.
- ``POST {studio}/fal/tokens/``: fal's token endpoint, in fal's shape: the body
  ``{"allowed_apps": [...], "token_expiration": N}``, the answer a bare JSON string, and
  ``Authorization: Key <Studio API token>`` accepted. A program written for fal's
  ``POST {rest}/tokens/`` (the seed Krea app's server route, fal's clients) works by
  changing its REST URL to ``{studio}/fal`` and its key to a Studio API token.
- ``POST /api/fal``: the same, answered ``{"token", "token_expiration"}`` as the seed app's
  own route answers its page.
- ``DELETE /api/realtime/token``: every realtime token the caller minted stops working.

The tokens open the studio's socket (``?token=`` or ``?fal_jwt_token=``), nothing at fal:
the studio never hands out a fal key or a fal token. Minting counts against
``STUDIO_THROTTLE_FAL_TOKEN``.
"""

from __future__ import annotations

import logging

from django.conf import settings
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.authentication import SessionAuthentication, TokenAuthentication
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from model_control import limits
from model_control.openapi import error_responses
from model_control.parsing import request_fields
from videogen.realtime.auth import mint_token, revoke_tokens, served_apps

logger = logging.getLogger(__name__)


class KeyAuthentication(TokenAuthentication):
    """``Authorization: Key <Studio API token>``: fal's scheme, carrying a Studio API token
    where a fal client puts its fal key."""

    keyword = "Key"


class KeyAuthenticationScheme(OpenApiAuthenticationExtension):
    """How the schema shows ``KeyAuthentication`` (DRF's token scheme would claim it by name)."""

    target_class = KeyAuthentication
    name = "falKeyAuth"
    priority = 1

    def get_security_definition(self, auto_schema):
        return {"type": "apiKey", "in": "header", "name": "Authorization",
                "description": "`Key <Studio API token>`: fal's scheme, with a Studio API token as the key"}


class TokenRequestSerializer(serializers.Serializer):
    allowed_apps = serializers.ListField(child=serializers.CharField(), required=False, allow_empty=False)
    token_expiration = serializers.IntegerField(required=False, min_value=1)

    def validate_allowed_apps(self, apps: list[str]) -> list[str]:
        allowed = served_apps()
        refused = [app for app in apps if app not in allowed]
        if refused:
            raise serializers.ValidationError(
                f"not a realtime app of this studio: {', '.join(refused)}; allowed: {', '.join(allowed)}")
        return apps


class _MintView(APIView):
    """Mints a token from fal's request body; subclasses say how to answer."""

    throttle_classes = [limits.FalTokenRateThrottle]

    def post(self, request: Request) -> Response:
        serializer = TokenRequestSerializer(data=request_fields(request))
        serializer.is_valid(raise_exception=True)
        apps = serializer.validated_data.get("allowed_apps") or served_apps()
        asked = serializer.validated_data.get("token_expiration", settings.STUDIO_REALTIME_TOKEN_TTL)
        expiration = min(asked, settings.FAL_TOKEN_MAX_EXPIRATION)
        token = mint_token(request.user, apps, expiration)
        logger.info("minted a realtime token for %s (%s s) for user %s", ",".join(apps), expiration,
                    request.user.pk)
        return self.answer(token, expiration)

    def answer(self, token: str, expiration: int) -> Response:
        raise NotImplementedError


_EXPIRATION_HELP = "seconds; capped at FAL_TOKEN_MAX_EXPIRATION (default STUDIO_REALTIME_TOKEN_TTL)"


class FalTokensView(_MintView):
    """``POST /fal/tokens/``: fal's ``POST {rest}/tokens/``, answered with the bare token."""

    authentication_classes = [KeyAuthentication, TokenAuthentication, SessionAuthentication]

    @extend_schema(
        summary="fal's token endpoint, served by the studio: a token for the studio's realtime socket",
        description=("The body and answer of fal's `POST {rest}/tokens/`: `Authorization: Key <your Studio API "
                     "token>` (or `Token`, or the session), `{\"allowed_apps\": [\"krea-wan-14b\"], "
                     "\"token_expiration\": 300}` (" + _EXPIRATION_HELP + ") -> the token as a JSON string. "
                     "Use it as `/fal-ai/krea-wan-14b/ws?fal_jwt_token=<token>` on the studio."),
        request=TokenRequestSerializer, operation_id="fal_tokens_create",
        responses={200: OpenApiResponse(OpenApiTypes.STR, description="the token, a JSON string"),
                   **error_responses(400, 401, 429)})
    def post(self, request: Request) -> Response:
        return super().post(request)

    def answer(self, token: str, expiration: int) -> Response:
        return Response(token)


class FalTokenView(_MintView):
    """``POST /api/fal``: the seed app's own token route, ``{"token", "token_expiration"}``."""

    authentication_classes = [TokenAuthentication, KeyAuthentication, SessionAuthentication]

    @extend_schema(summary="Mint a short-lived token for the studio's realtime socket (the seed app's /api/fal)",
                   description=("`{\"allowed_apps\", \"token_expiration\"}` (" + _EXPIRATION_HELP + ") -> "
                                "`{\"token\", \"token_expiration\"}`. The token opens "
                                "`/fal-ai/krea-wan-14b/ws?fal_jwt_token=` and `/ws/realtime/?token=` on the "
                                "studio; it is the studio's, not fal's."),
                   request=TokenRequestSerializer,
                   responses={200: inline_serializer("FalToken", {"token": serializers.CharField(),
                                                                  "token_expiration": serializers.IntegerField()}),
                              **error_responses(400, 401, 429)})
    def post(self, request: Request) -> Response:
        return super().post(request)

    def answer(self, token: str, expiration: int) -> Response:
        return Response({"token": token, "token_expiration": expiration})


class RealtimeTokenView(APIView):
    """A token for ``/ws/realtime/?token=`` (STUDIO_REALTIME_TOKEN_TTL seconds); DELETE revokes them all."""

    def get_throttles(self):
        return [limits.FalTokenRateThrottle()] if self.request.method == "POST" else []

    @extend_schema(
        summary="Mint a short-lived token for the realtime WebSocket (/ws/realtime/?token=...)",
        request=None,
        responses={200: inline_serializer("RealtimeToken", {
            "token": serializers.CharField(), "expires_in": serializers.IntegerField(),
            "url": serializers.CharField(help_text="the socket's path with the token")}),
            **error_responses(401, 429)},
    )
    def post(self, request: Request) -> Response:
        token = mint_token(request.user)
        return Response({"token": token, "expires_in": settings.STUDIO_REALTIME_TOKEN_TTL,
                         "url": f"/ws/realtime/?token={token}"})

    @extend_schema(summary="Revoke every realtime token you minted (they stop opening sockets at once)",
                   request=None, operation_id="api_realtime_token_revoke",
                   responses={200: inline_serializer("RealtimeTokensRevoked", {"revoked": serializers.BooleanField()}),
                              **error_responses(401)})
    def delete(self, request: Request) -> Response:
        revoke_tokens(request.user)
        return Response({"revoked": True})
