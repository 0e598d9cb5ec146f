"""HTTP doors of model_control: the catalog and TT Studio's cloud video endpoint.

Views parse, call and answer; a ``ProviderError``, ``CatalogError`` or ``UnknownModel`` they
raise is answered by the API's one exception handler (``studio.api``). TT Studio's endpoint
keeps its own reply table, so it answers its errors itself.
"""

from __future__ import annotations

import logging

from django.conf import settings
from django.http import HttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from model_control import backends, generations
from model_control.backends import catalog
from model_control.backends.tenstorrent import tenstorrent_client
from model_control.catalog import STUDIO_FIELDS
from model_control.errors import ProviderError, ProviderTimeout
from model_control.limits import GenerationRateThrottle
from model_control.openapi import ErrorReply, error_responses
from model_control.parsing import request_fields

logger = logging.getLogger(__name__)


class ModelListView(APIView):
    @extend_schema(summary="The model catalog", responses={200: OpenApiTypes.OBJECT, **error_responses(401)})
    def get(self, request: Request) -> Response:
        kind = request.query_params.get("kind")
        models = [backends.describe(m) for m in catalog().all() if not kind or m.kind == kind]
        return Response({"models": models, "count": len(models)})


class ModelDetailView(APIView):
    @extend_schema(summary="One catalog model", operation_id="api_models_detail",
                   responses={200: OpenApiTypes.OBJECT, **error_responses(401, 404)})
    def get(self, request: Request, model_id: str) -> Response:
        return Response(backends.describe(catalog().require(model_id)))


class ModelEstimateView(APIView):
    @extend_schema(
        summary="Estimated cost of a request",
        parameters=[OpenApiParameter(name, str, required=False) for name in STUDIO_FIELDS
                    if name not in ("image", "last_image", "video")],
        responses={200: OpenApiTypes.OBJECT, **error_responses(400, 401, 404)},
    )
    def get(self, request: Request, model_id: str) -> Response:
        model = catalog().require(model_id)
        params = {k: v for k, v in request.query_params.items() if k not in ("format",)}
        return Response(model.estimate(params))


class _OverridesSerializer(serializers.Serializer):
    negative_prompt = serializers.CharField(required=False, allow_blank=True, max_length=4000)
    num_inference_steps = serializers.IntegerField(required=False, min_value=1, max_value=100)
    seed = serializers.IntegerField(required=False, min_value=0, max_value=2**32 - 1)


# The upstream statuses TT Studio's view passes on as they are; any other failure is its 500.
PASSED_THROUGH = (status.HTTP_401_UNAUTHORIZED, status.HTTP_503_SERVICE_UNAVAILABLE)


_TT_STUDIO_ERRORS = {
    401: OpenApiResponse(ErrorReply, description="Not logged in, or the upstream refused the studio's token."),
    500: OpenApiResponse(ErrorReply, description="The upstream failed (any failure but a 401, a 503 or a timeout)."),
    503: OpenApiResponse(ErrorReply, description="The cloud URL is not configured, or the upstream is unavailable."),
}


def tt_studio_status(exc: ProviderError) -> int:
    """The status TT Studio's view answers an upstream failure with: the upstream's own 401
    or 503, else 500 (a timeout is its 504, answered before this)."""
    return exc.upstream_status if exc.upstream_status in PASSED_THROUGH else status.HTTP_500_INTERNAL_SERVER_ERROR


class VideoGenerationCloudView(APIView):
    """TT Studio's ``VideoGenerationInferenceCloudView``, reply for reply.

    ``prompt`` (required) and ``deploy_id`` (accepted, unused for the cloud), multipart or
    JSON; optional overrides ``negative_prompt``, ``num_inference_steps``, ``seed``. An
    upstream 401 or 503 is answered with that status, any other upstream failure with 500
    (``tt_studio_status``), a timeout with 504; the body is always ``{"error": ...}``.
    """

    throttle_classes = [GenerationRateThrottle]

    # JSON, form and multipart come from REST_FRAMEWORK["DEFAULT_PARSER_CLASSES"] (runtime.parsers).

    @extend_schema(summary="TT Studio-compatible cloud video generation",
                   request=OpenApiTypes.OBJECT, responses={(200, "video/mp4"): OpenApiTypes.BINARY,
                                                           **error_responses(400, 429, 504), **_TT_STUDIO_ERRORS})
    def post(self, request: Request) -> HttpResponse | Response:
        fields = request_fields(request)
        prompt = fields.get("prompt")
        if not prompt or not isinstance(prompt, str) or not prompt.strip():
            return Response({"error": "prompt is required"}, status=status.HTTP_400_BAD_REQUEST)
        client = tenstorrent_client()
        if not client.configured:
            return Response({"error": "Cloud video generation URL not configured"},
                            status=status.HTTP_503_SERVICE_UNAVAILABLE)
        overrides = _OverridesSerializer(data={k: fields.get(k) for k in
                                               ("negative_prompt", "num_inference_steps", "seed")
                                               if fields.get(k) not in (None, "")})
        if not overrides.is_valid():
            errors = "; ".join(f"{k}: {' '.join(map(str, v))}" for k, v in overrides.errors.items())
            return Response({"error": errors}, status=status.HTTP_400_BAD_REQUEST)
        payload = {"prompt": prompt, "negative_prompt": "low quality", "num_inference_steps": 12, "seed": 0,
                   **overrides.validated_data}
        try:
            with generations.held(request.user.pk, generations.TT):
                video = client.generate(payload, timeout=settings.VIDEO_GENERATION_TIMEOUT)
        except ProviderTimeout:
            return Response({"error": "Video generation timed out. Please try again."},
                            status=status.HTTP_504_GATEWAY_TIMEOUT)
        except ProviderError as exc:
            logger.warning("cloud video generation failed: %s", exc.message)
            return Response({"error": exc.message}, status=tt_studio_status(exc))
        response = HttpResponse(video.content, content_type=video.content_type or "video/mp4")
        response["Content-Disposition"] = "attachment; filename=generated_video.mp4"
        return response
