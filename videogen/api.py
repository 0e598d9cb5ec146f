"""videogen's REST API: the synchronous generator and the gallery's files."""

from __future__ import annotations

import logging
import re

from django.conf import settings
from django.http import FileResponse, Http404, HttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from model_control import backends
from model_control.catalog import catalog
from model_control.generation import generate_video
from model_control.limits import GenerationRateThrottle, generation_slot
from model_control.openapi import error_responses
from model_control.parsing import request_fields, studio_request
from videogen import gallery

logger = logging.getLogger(__name__)


def _file_name(model_id: str, request_id: str | None) -> str:
    slug = re.sub(r"[^a-z0-9]+", "-", model_id.lower()).strip("-")
    suffix = re.sub(r"[^A-Za-z0-9-]+", "", request_id or "")[:40] or "video"
    return f"{slug}-{suffix}.mp4"


class GenerateVideoView(APIView):
    """``POST /api/videos/generate``: one non-realtime catalog model, answered with the MP4."""

    throttle_classes = [GenerationRateThrottle]


    @extend_schema(
        summary="Generate a video synchronously (waits up to VIDEO_GENERATION_TIMEOUT)",
        request=inline_serializer("GenerateVideo", {
            "model": serializers.CharField(),
            "prompt": serializers.CharField(required=False),
            "negative_prompt": serializers.CharField(required=False),
            "image": serializers.CharField(required=False, help_text="an uploaded file or an http(s) URL"),
            "resolution": serializers.CharField(required=False),
            "duration": serializers.CharField(required=False),
            "num_frames": serializers.IntegerField(required=False),
            "fps": serializers.IntegerField(required=False),
            "seed": serializers.IntegerField(required=False),
            "steps": serializers.IntegerField(required=False),
            "guidance": serializers.FloatField(required=False),
        }),
        responses={(200, "video/mp4"): OpenApiTypes.BINARY,
                   **error_responses(400, 401, 404, 422, 429, 502, 503, 504)},
    )
    def post(self, request: Request) -> HttpResponse | Response:
        model_id = request_fields(request).get("model")
        if not model_id or not isinstance(model_id, str):
            return Response({"error": "model is required: one of the ids from GET /api/models/"}, status=400)
        model = catalog().require(model_id)
        fields = studio_request(request, exclude={"model"})
        model.clean(fields)  # bad input is a 400 even where the backend is not configured
        backends.require_configured(model)
        with generation_slot(request.user.pk):
            video = generate_video(model, fields, timeout=settings.VIDEO_GENERATION_TIMEOUT)
        saved = gallery.save_video(request.user.pk, _file_name(model.id, video.request_id), video.content, {
            "model": model.id, "backend": model.backend, "request_id": video.request_id,
            "request": {k: v for k, v in fields.items() if isinstance(v, (str, int, float, bool))},
            "provider_input": {k: v for k, v in video.fields.items() if isinstance(v, (str, int, float, bool))},
        })
        response = HttpResponse(video.content, content_type=video.content_type)
        response["Content-Disposition"] = f"attachment; filename={saved.name}"
        response["X-Studio-Gallery-File"] = saved.name
        response["X-Studio-Model"] = model.id
        if video.request_id:
            response["X-Studio-Request-Id"] = video.request_id
        return response




class GalleryListView(APIView):
    @extend_schema(summary="The user's finished videos, newest first",
                   responses={200: OpenApiTypes.OBJECT, **error_responses(401)})
    def get(self, request: Request) -> Response:
        videos = gallery.list_videos(request.user.pk)
        # The file on disk names the entry: a sidecar's own "name" or "url" never overrides it.
        return Response({"count": len(videos), "videos": [
            {**v.metadata, "name": v.name, "size": v.size, "url": f"/gallery/files/{v.name}"} for v in videos]})


class GalleryFileView(APIView):
    """One of the user's videos (session or token); ``?download=1`` makes it an attachment."""

    @extend_schema(summary="A video from the user's gallery",
                   responses={(200, "video/mp4"): OpenApiTypes.BINARY, **error_responses(401, 404)})
    def get(self, request: Request, name: str) -> FileResponse:
        video = gallery.find_video(request.user.pk, name)
        if video is None:
            raise Http404("No such video in your gallery.")
        return FileResponse(video.path.open("rb"), content_type="video/mp4", filename=video.name,
                            as_attachment=request.query_params.get("download") == "1")
