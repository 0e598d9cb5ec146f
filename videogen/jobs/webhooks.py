"""``POST /api/webhooks/<backend>/``: a provider's signed "request finished" webhook
short-cuts polling (today fal's: ``/api/webhooks/fal/``).

Jobs submitted while ``STUDIO_PUBLIC_URL`` is set carry the URL the backend names
(``RemoteBackend.webhook_url``). The backend verifies the delivery (fal: an Ed25519
signature over the raw body bytes, its timestamp and headers; docs/protocols.md, "fal
queue") before anything is read from the body (``RemoteBackend.webhook``). Then:

* success: the job is polled now (the poll fetches the result as usual: the payload is not
  trusted as the video's source); ``{"status": "accepted"}``.
* failure: the job fails with the provider's error; ``{"status": "accepted"}``.
* no job has this request id, or the job has finished (a duplicate: providers retry):
  ``200 {"status": "ignored"}`` so the provider stops retrying; polling still finishes jobs.
* malformed headers or body: 400; a bad signature or a stale timestamp: 401; the
  provider's keys cannot be fetched: 503 (it retries); a backend without webhooks: 404.
  None of these changes anything.
"""

from __future__ import annotations

import logging

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from model_control import backends
from model_control.backends import RemoteBackend, UnknownBackend, WebhookRefused
from model_control.openapi import ErrorReply
from videogen.jobs import services

logger = logging.getLogger(__name__)

WebhookReply = inline_serializer("WebhookReply", {
    "status": serializers.ChoiceField(["accepted", "ignored"],
                                      help_text="accepted: the job is polled now or failed; ignored: "
                                                "no such job, or it has finished"),
})


class WebhookView(APIView):
    """A provider's signed webhook (no login: the provider's signature is the authentication)."""

    authentication_classes: list = []
    permission_classes = [AllowAny]
    throttle_classes: list = []

    @extend_schema(
        summary="A provider's signed webhook (called by the provider, not by users)",
        request=OpenApiTypes.OBJECT,
        responses={
            200: WebhookReply,
            400: OpenApiResponse(ErrorReply, description="Missing or malformed headers or body."),
            401: OpenApiResponse(ErrorReply, description="Bad signature, or a timestamp too far from now."),
            404: OpenApiResponse(ErrorReply, description="No backend of that name takes webhooks."),
            503: OpenApiResponse(ErrorReply, description="The provider's signing keys cannot be fetched."),
        },
        auth=[],
    )
    def post(self, request: Request, backend: str) -> Response:
        try:
            receiver = backends.backend(backend)
        except UnknownBackend:
            receiver = None
        if not isinstance(receiver, RemoteBackend):
            return Response({"error": f"No backend {backend!r} takes webhooks here.", "error_type": "not_found"},
                            status=404)
        body = request._request.body  # the raw bytes: signatures cover them
        try:
            news = receiver.webhook(request.headers, body)
        except WebhookRefused as exc:
            logger.warning("refused a %s webhook (%s): %s", backend, exc.kind, exc.message)
            return Response({"error": exc.message, "error_type": exc.kind}, status=exc.status)
        job = services.provider_finished(receiver.name, news.request_ids, news.error,
                                         job_token=request.query_params.get("job"))
        if job is None or job.finished:
            logger.info("%s webhook for request %s ignored (no such unfinished job)", backend,
                        ", ".join(news.request_ids))
            return Response({"status": "ignored"})
        logger.info("%s webhook: request %s of job %s is %s", backend, news.request_ids[0], job.pk,
                    "failed" if news.error else "done")
        return Response({"status": "accepted"})
