"""``/api/fal/proxy``: ``@fal-ai/server-proxy`` for the studio's own models and requests.

The key stays on the server: the proxy forwards to fal's queue only what the studio's pages
and fal's JS client need (``model_control.fal_proxy`` says exactly what), adding the key.
The realtime token doors (``/api/fal``, ``/fal/tokens/``) mint the studio's own tokens, for
the studio's socket: they are videogen's (``videogen.realtime.token_api``).
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Callable
from typing import Any

import requests
from django.conf import settings
from django.http import HttpResponse
from django.utils import timezone
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import (
    OpenApiParameter,
    OpenApiResponse,
    extend_schema,
)
from rest_framework.exceptions import APIException, ParseError
from rest_framework.parsers import BaseParser
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from model_control import generations, limits
from model_control.fal_proxy import (
    CANCEL,
    RESULT,
    STATUS,
    SUBMIT,
    TARGET_HEADER,
    TargetRefused,
    check_image_urls,
    check_target,
)
from model_control.models import ProxiedFalRequest
from model_control.openapi import error_responses
from runtime.db import give_back_connection

logger = logging.getLogger(__name__)

# Other apps tell the proxy which fal requests a user owns besides the ones submitted through
# it: ``check(user_id, request_id, "owner/alias") -> bool`` (videogen registers its jobs').
REQUEST_OWNERS: list[Callable[[int, str, str], bool]] = []

# Headers of the caller's request that travel on to fal; everything else (cookies, our
# own auth, hop-by-hop headers) stays here.
_PASS_REQUEST_HEADERS = {"content-type", "accept", "x-fal-request-timeout", "x-fal-queue-priority",
                         "x-fal-runner-hint", "user-agent"}
_PASS_RESPONSE_HEADERS = {"content-type", "x-fal-request-id", "x-fal-error-type", "x-fal-request-timeout-type",
                          "content-disposition", "cache-control"}


class BodyTooLarge(APIException):
    status_code = 413
    default_detail = "The body is too large for the proxy."
    default_code = "too_large"


class ForwardedJSONParser(BaseParser):
    """A JSON body kept as the bytes it came as (the proxy forwards it untouched)."""

    media_type = "application/json"

    def parse(self, stream, media_type=None, parser_context=None) -> bytes:
        limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
        body = stream.read(limit + 1) if stream is not None else b""
        if len(body) > limit:
            raise BodyTooLarge(f"The body is larger than {limit} bytes.")
        return body


class FalProxyView(APIView):
    """``/api/fal/proxy``: ``@fal-ai/server-proxy`` for the studio's own models and requests."""

    parser_classes = [ForwardedJSONParser]

    def get_throttles(self):
        # A POST through the proxy is a paid submit; status polls are free.
        return [limits.GenerationRateThrottle()] if self.request.method == "POST" else []

    @extend_schema(
        summary="@fal-ai/server-proxy compatible forwarding (submits, status, result, cancel)",
        description=(
            "Forwards to fal's queue with the studio's key. Allowed: `POST` a submit to one of the "
            "catalog's fal queue models; `GET .../requests/{id}/status`, `GET .../requests/{id}` and "
            "`PUT .../requests/{id}/cancel` for request ids you submitted. Anything else is refused."),
        parameters=[OpenApiParameter(TARGET_HEADER, str, OpenApiParameter.HEADER, required=True,
                                     description="The fal queue URL to forward to, e.g. "
                                                 "https://queue.fal.run/fal-ai/veo3.1")],
        request={"application/json": OpenApiTypes.OBJECT},
        responses={200: OpenApiResponse(OpenApiTypes.OBJECT, description="fal's own answer, passed through"),
                   **error_responses(400, 401, 403, 404, 405, 413, 429, 502)},
    )
    def post(self, request: Request) -> HttpResponse | Response:
        return self._forward(request)

    get = put = post

    def _forward(self, request: Request) -> HttpResponse | Response:
        try:
            target = check_target(request.headers.get(TARGET_HEADER), request.method, settings.FAL_QUEUE_URL)
        except TargetRefused as exc:
            return Response({"error": exc.message}, status=exc.status)
        if not settings.FAL_KEY:
            return Response({"error": "Missing fal.ai credentials: set FAL_KEY on the studio server."},
                            status=401)
        user_id = request.user.pk
        record = None
        if target.operation != SUBMIT:
            record = ProxiedFalRequest.objects.filter(owner_id=user_id, request_id=target.request_id).first()
            owned = record.alias == target.alias if record is not None else any(
                check(user_id, target.request_id, target.alias) for check in REQUEST_OWNERS)
            if not owned:
                return Response({"error": f"You have no fal request {target.request_id}."}, status=404)
        body = request.data if isinstance(request.data, bytes) else b""
        if target.operation == SUBMIT:
            check_image_urls(target.app_id, _require_json_object(body))
            # Counted until fal is seen to finish it, or for the longest a request may take.
            holder = f"pending-{uuid.uuid4().hex}"
            generations.take(user_id, generations.FAL_PROXY, holder, lease_s=generations.call_lease_s())
        headers = {k: v for k, v in request.headers.items() if k.lower() in _PASS_REQUEST_HEADERS}
        headers["Authorization"] = f"Key {settings.FAL_KEY}"
        give_back_connection()  # fal may take a while (a synchronous run takes minutes)
        try:
            upstream = requests.request(request.method, target.url, headers=headers, data=body or None,
                                        timeout=(10, settings.FAL_HTTP_TIMEOUT), allow_redirects=False)
        except requests.RequestException as exc:
            if target.operation == SUBMIT:
                generations.give_back(generations.FAL_PROXY, holder)
            logger.warning("fal proxy %s failed: %s", target.operation, type(exc).__name__)
            return Response({"error": "Cannot reach fal right now; try again later."}, status=502)
        if target.operation == SUBMIT:
            self._record_submit(user_id, target.app_id, upstream, holder)
        elif record is not None and upstream.ok and _finished(target.operation, upstream):
            generations.give_back(generations.FAL_PROXY, record.request_id)
            if record.finished_at is None:
                ProxiedFalRequest.objects.filter(pk=record.pk).update(finished_at=timezone.now())
        response = HttpResponse(upstream.content, status=upstream.status_code)
        for name, value in upstream.headers.items():
            if name.lower() in _PASS_RESPONSE_HEADERS:
                response[name] = value
        return response

    @staticmethod
    def _record_submit(user_id: int, app_id: str, upstream: requests.Response, holder: str) -> None:
        request_id = _json(upstream).get("request_id") if upstream.ok else None
        if not isinstance(request_id, str) or not request_id:
            generations.give_back(generations.FAL_PROXY, holder)
            return
        ProxiedFalRequest.objects.create(owner_id=user_id, app_id=app_id, request_id=request_id)
        generations.rename(generations.FAL_PROXY, holder, request_id)
        logger.info("fal proxy: user %s submitted %s to %s", user_id, request_id, app_id)


def _require_json_object(body: bytes) -> dict[str, Any]:
    """The submit body as the JSON object it must be; else a 400."""
    try:
        value = json.loads(body) if body else None
    except (ValueError, RecursionError):
        raise ParseError("The submit body must be a JSON object (the model's input).") from None
    if not isinstance(value, dict):
        raise ParseError("The submit body must be a JSON object (the model's input).")
    return value


def _json(response: requests.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def _finished(operation: str, upstream: requests.Response) -> bool:
    """Whether this answer shows the request is over (its generation slot can go)."""
    if operation in (RESULT, CANCEL):
        return True
    return operation == STATUS and _json(upstream).get("status") == "COMPLETED"
