"""``POST /api/webhooks/fal/``: fal's signed "request finished" webhook short-cuts polling.

Jobs submitted while ``STUDIO_PUBLIC_URL`` is set carry ``{STUDIO_PUBLIC_URL}/api/webhooks/fal/``
as their ``fal_webhook``. fal signs each delivery (docs/protocols.md, "fal queue"); the
signature over the raw body bytes, its timestamp and its headers are checked by
``model_control.fal_webhook`` before anything is read from the body. Then:

* ``OK``: the job is polled now (the poll fetches the result from fal as usual: the payload
  is not trusted as the video's source); ``{"status": "accepted"}``.
* ``ERROR``: the job fails with fal's error; ``{"status": "accepted"}``.
* no job has this request id, or the job has finished (a duplicate: fal retries):
  ``200 {"status": "ignored"}`` so fal stops retrying; polling still finishes our jobs.
* malformed headers or body: 400; a bad signature or a timestamp past
  ``FAL_WEBHOOK_MAX_SKEW``: 401; fal's keys cannot be fetched: 503 (fal retries). None
  of these changes anything.
"""

from __future__ import annotations

import logging

from django.conf import settings
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from model_control import fal_webhook
from model_control.catalog import FAL
from model_control.errors import ProviderError, ProviderFailed, ProviderRejected
from model_control.fal import _field_errors
from model_control.openapi import ErrorReply
from videogen import services

logger = logging.getLogger(__name__)

WebhookReply = inline_serializer("WebhookReply", {
    "status": serializers.ChoiceField(["accepted", "ignored"],
                                      help_text="accepted: the job is polled now or failed; ignored: "
                                                "no such job, or it has finished"),
})


def provider_error(hook: fal_webhook.FalWebhook) -> ProviderError:
    """The job's error from an ``ERROR`` webhook (per-field details when fal names fields)."""
    payload = hook.payload
    detail = payload.get("detail") if isinstance(payload, dict) else None
    if detail:
        details = _field_errors(detail)
        summary = "; ".join(f"{d['field']}: {d['message']}" if d["field"] else d["message"] for d in details)
        return ProviderRejected(f"fal rejected the input: {summary}", provider="fal", details=details,
                                request_id=hook.request_id)
    return ProviderFailed(f"fal reports the request failed: {hook.error or 'no reason given'}", provider="fal",
                          request_id=hook.request_id)


class FalWebhookView(APIView):
    """fal's signed webhook (no login: the Ed25519 signature is the authentication)."""

    authentication_classes: list = []
    permission_classes = [AllowAny]
    throttle_classes: list = []

    @extend_schema(
        summary="fal's signed webhook (called by fal, not by users)",
        request=OpenApiTypes.OBJECT,
        responses={
            200: WebhookReply,
            400: OpenApiResponse(ErrorReply, description="Missing or malformed X-Fal-Webhook-* headers or body."),
            401: OpenApiResponse(ErrorReply, description="Bad signature, or a timestamp too far from now."),
            503: OpenApiResponse(ErrorReply, description="fal's signing keys cannot be fetched; fal retries."),
        },
        auth=[],
    )
    def post(self, request: Request) -> Response:
        body = request._request.body  # the raw bytes: the signature covers their SHA-256
        verifier = fal_webhook.from_settings(settings)
        try:
            hook = verifier.verify(request.headers, body)
        except fal_webhook.WebhookError as exc:
            logger.warning("refused a fal webhook (%s): %s", exc.kind, exc)
            return Response({"error": str(exc), "error_type": exc.kind}, status=exc.http_status)
        ids = tuple(dict.fromkeys(i for i in (hook.request_id, hook.gateway_request_id) if i))
        job = services.provider_finished(FAL, ids, None if hook.ok else provider_error(hook))
        if job is None:
            logger.info("fal webhook for unknown request %s ignored", hook.request_id)
            return Response({"status": "ignored"})
        if job.finished:
            return Response({"status": "ignored"})
        logger.info("fal webhook: request %s of job %s is %s", hook.request_id, job.pk,
                    "done" if hook.ok else "failed")
        return Response({"status": "accepted"})
