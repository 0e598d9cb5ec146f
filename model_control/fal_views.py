"""fal doors for browsers: temporary realtime tokens and ``@fal-ai/server-proxy``.

The key stays on the server: the token endpoint mints short-lived JWTs limited to the
catalog's realtime apps, and the proxy adds the key to requests bound for fal's own hosts.
"""

from __future__ import annotations

import logging
from urllib.parse import urlsplit

import requests
from django.conf import settings
from django.http import HttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.parsers import JSONParser
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from model_control.catalog import catalog
from model_control.errors import ProviderError
from model_control.fal import FalClient
from model_control.views import request_fields

logger = logging.getLogger(__name__)

TARGET_HEADER = "x-fal-target-url"
# Hop-by-hop and our own headers never travel through the proxy.
_DROP_REQUEST_HEADERS = {"host", "content-length", "cookie", "authorization", "connection", TARGET_HEADER,
                         "x-csrftoken", "accept-encoding"}
_PASS_RESPONSE_HEADERS = {"content-type", "x-fal-request-id", "x-fal-error-type", "x-fal-request-timeout-type",
                          "content-disposition", "cache-control"}


class TokenRequestSerializer(serializers.Serializer):
    allowed_apps = serializers.ListField(child=serializers.CharField(), required=False, allow_empty=False)
    token_expiration = serializers.IntegerField(required=False, min_value=1)

    def validate_allowed_apps(self, apps: list[str]) -> list[str]:
        allowed = catalog().realtime_apps()
        refused = [app for app in apps if app not in allowed]
        if refused:
            raise serializers.ValidationError(
                f"not a realtime app of this studio: {', '.join(refused)}; allowed: {', '.join(allowed)}")
        return apps


class FalTokenView(APIView):
    """``POST /api/fal``: ``{allowed_apps, token_expiration}`` -> ``{"token"}`` (seed-compatible)."""

    parser_classes = [JSONParser]

    @extend_schema(summary="Mint a temporary fal token for the realtime WebSocket",
                   request=TokenRequestSerializer,
                   responses=inline_serializer("FalToken", {"token": serializers.CharField(),
                                                            "token_expiration": serializers.IntegerField()}))
    def post(self, request: Request) -> Response:
        serializer = TokenRequestSerializer(data=request_fields(request))
        serializer.is_valid(raise_exception=True)
        apps = serializer.validated_data.get("allowed_apps") or catalog().realtime_apps()
        expiration = min(serializer.validated_data.get("token_expiration", 120), settings.FAL_TOKEN_MAX_EXPIRATION)
        try:
            token = FalClient.from_settings().mint_token(apps, expiration)
        except ProviderError as exc:
            return Response(exc.as_dict(), status=exc.http_status)
        logger.info("minted a fal token for %s (%s s) for user %s", ",".join(apps), expiration, request.user.pk)
        return Response({"token": token, "token_expiration": expiration})


def _host_allowed(host: str) -> bool:
    host = host.lower().rstrip(".")
    return any(host == allowed or host.endswith("." + allowed) for allowed in settings.FAL_PROXY_ALLOWED_HOSTS)


class FalProxyView(APIView):
    """``/api/fal/proxy``: forwards to the URL in ``x-fal-target-url`` with the key added."""

    parser_classes: list = []  # the body is forwarded untouched

    @extend_schema(summary="@fal-ai/server-proxy compatible forwarding", request=OpenApiTypes.BINARY,
                   responses=OpenApiTypes.BINARY)
    def post(self, request: Request) -> HttpResponse | Response:
        return self._forward(request)

    get = put = delete = patch = post

    def _forward(self, request: Request) -> HttpResponse | Response:
        target = request.headers.get(TARGET_HEADER)
        if not target:
            return Response({"error": f"Missing the {TARGET_HEADER} header."}, status=400)
        parts = urlsplit(target)
        if parts.scheme not in ("https", "http") or not parts.hostname or not _host_allowed(parts.hostname):
            return Response({"error": f"Invalid {TARGET_HEADER}: only fal hosts may be reached through this "
                                      "proxy."}, status=400)
        if not settings.FAL_KEY:
            return Response({"error": "Missing fal.ai credentials: set FAL_KEY on the studio server."},
                            status=401)
        headers = {k: v for k, v in request.headers.items() if k.lower() not in _DROP_REQUEST_HEADERS}
        headers["Authorization"] = f"Key {settings.FAL_KEY}"
        try:
            upstream = requests.request(request.method, target, headers=headers, data=request.body or None,
                                        timeout=(10, settings.FAL_HTTP_TIMEOUT), allow_redirects=False)
        except requests.RequestException as exc:
            logger.warning("fal proxy to %s failed: %s", parts.hostname, type(exc).__name__)
            return Response({"error": f"Cannot reach {parts.hostname}: {type(exc).__name__}."}, status=502)
        response = HttpResponse(upstream.content, status=upstream.status_code)
        for name, value in upstream.headers.items():
            if name.lower() in _PASS_RESPONSE_HEADERS:
                response[name] = value
        return response
