"""HTTP doors of model_control: the catalog, the synchronous generators, fal tokens and proxy.

Views validate, call a client or ``generate_video``, and turn ``ProviderError``s into JSON
answers. No provider key or token ever appears in a reply.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from django.conf import settings
from django.http import HttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers, status
from rest_framework.exceptions import ParseError
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from model_control.catalog import STUDIO_FIELDS, CatalogError, ImageInput, catalog
from model_control.errors import ProviderError, ProviderTimeout
from model_control.limits import GenerationRateThrottle, generation_slot
from model_control.openapi import error_responses
from model_control.tenstorrent import TenstorrentClient

logger = logging.getLogger(__name__)

MAX_IMAGE_BYTES = 20 * 1024 * 1024
_FORM_NOISE = {"csrfmiddlewaretoken"}


def error_response(exc: ProviderError) -> Response:
    return Response(exc.as_dict(), status=exc.http_status)


def catalog_error_response(exc: CatalogError, status_code: int = 400) -> Response:
    return Response({"error": str(exc), "fields": exc.errors}, status=status_code)


def request_fields(request: Request) -> Mapping[str, Any]:
    """The request's JSON object or form fields; anything else (a JSON list, a number) is a 400."""
    data = request.data
    if not isinstance(data, Mapping):
        raise ParseError("The body must be a JSON object or a form.")
    return data


def studio_request(request: Request, exclude: set[str]) -> dict[str, Any]:
    """Studio's request shape from JSON or a multipart form (images as uploads or URLs)."""
    data: dict[str, Any] = {}
    fields = request_fields(request)
    for key in fields:
        if key in exclude or key in _FORM_NOISE:
            continue
        value = fields.get(key)
        if hasattr(value, "read"):  # an uploaded file
            continue
        data[key] = value
    for key, upload in request.FILES.items():
        if upload.size > MAX_IMAGE_BYTES:
            raise CatalogError({key: f"the file is larger than {MAX_IMAGE_BYTES // (1024 * 1024)} MB"})
        content_type = upload.content_type or "application/octet-stream"
        if not content_type.startswith("image/"):
            raise CatalogError({key: f"must be an image file; got {content_type}"})
        data[key] = ImageInput(data=upload.read(), content_type=content_type, file_name=upload.name or key)
    return data


class ModelListView(APIView):
    @extend_schema(summary="The model catalog", responses={200: OpenApiTypes.OBJECT, **error_responses(401)})
    def get(self, request: Request) -> Response:
        kind = request.query_params.get("kind")
        models = [m.describe() for m in catalog().all() if not kind or m.kind == kind]
        return Response({"models": models, "count": len(models)})


class ModelDetailView(APIView):
    @extend_schema(summary="One catalog model", operation_id="api_models_detail",
                   responses={200: OpenApiTypes.OBJECT, **error_responses(401, 404)})
    def get(self, request: Request, model_id: str) -> Response:
        model = catalog().get(model_id)
        if model is None:
            return unknown_model(model_id)
        return Response(model.describe())


class ModelEstimateView(APIView):
    @extend_schema(
        summary="Estimated cost of a request",
        parameters=[OpenApiParameter(name, str, required=False) for name in STUDIO_FIELDS if name != "image"],
        responses={200: OpenApiTypes.OBJECT, **error_responses(400, 401, 404)},
    )
    def get(self, request: Request, model_id: str) -> Response:
        model = catalog().get(model_id)
        if model is None:
            return unknown_model(model_id)
        params = {k: v for k, v in request.query_params.items() if k not in ("format",)}
        try:
            return Response(model.estimate(params))
        except CatalogError as exc:
            return catalog_error_response(exc)


def unknown_model(model_id: str) -> Response:
    known = ", ".join(m.id for m in catalog().all())
    return Response({"error": f"Unknown model {model_id!r}. Known models: {known}"}, status=404)


class _OverridesSerializer(serializers.Serializer):
    negative_prompt = serializers.CharField(required=False, allow_blank=True, max_length=4000)
    num_inference_steps = serializers.IntegerField(required=False, min_value=1, max_value=100)
    seed = serializers.IntegerField(required=False, min_value=0, max_value=2**32 - 1)


class VideoGenerationCloudView(APIView):
    """TT Studio's ``VideoGenerationInferenceCloudView``, reply for reply.

    ``prompt`` (required) and ``deploy_id`` (accepted, unused for the cloud), multipart or
    JSON; optional overrides ``negative_prompt``, ``num_inference_steps``, ``seed``.
    """

    throttle_classes = [GenerationRateThrottle]

    # JSON, form and multipart come from REST_FRAMEWORK["DEFAULT_PARSER_CLASSES"] (studio.parsers).

    @extend_schema(summary="TT Studio-compatible cloud video generation",
                   request=OpenApiTypes.OBJECT, responses={(200, "video/mp4"): OpenApiTypes.BINARY,
                                                           **error_responses(400, 401, 429, 502, 503, 504)})
    def post(self, request: Request) -> HttpResponse | Response:
        fields = request_fields(request)
        prompt = fields.get("prompt")
        if not prompt or not isinstance(prompt, str) or not prompt.strip():
            return Response({"error": "prompt is required"}, status=status.HTTP_400_BAD_REQUEST)
        client = TenstorrentClient.from_settings()
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
            with generation_slot(request.user.pk):
                video = client.generate(payload, timeout=settings.VIDEO_GENERATION_TIMEOUT)
        except ProviderTimeout:
            return Response({"error": "Video generation timed out. Please try again."},
                            status=status.HTTP_504_GATEWAY_TIMEOUT)
        except ProviderError as exc:
            logger.warning("cloud video generation failed: %s", exc.message)
            return Response({"error": exc.message}, status=status.HTTP_502_BAD_GATEWAY)
        response = HttpResponse(video.content, content_type=video.content_type or "video/mp4")
        response["Content-Disposition"] = "attachment; filename=generated_video.mp4"
        return response
