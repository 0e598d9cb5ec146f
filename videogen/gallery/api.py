"""``/api/videos/``: the gallery's videos (a job's output, a realtime recording, an import),
owner-scoped (another user's video is a 404). A job's video is deleted with its job
(``services.delete_video``)."""

from __future__ import annotations

from typing import Any

from django.http import FileResponse, Http404
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import status
from rest_framework.exceptions import ValidationError
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from model_control.openapi import error_responses
from videogen.jobs import services
from videogen.models import Video

MAX_OFFSET = 10**9  # past this a database cannot take the number


def video_data(video: Video) -> dict[str, Any]:
    return {"id": str(video.id), "name": video.name, "job": str(video.job_id) if video.job_id else None,
            "url": f"/api/videos/{video.id}/file", "thumbnail": f"/api/videos/{video.id}/thumbnail"
            if video.thumbnail else None, "duration_s": video.duration_s, "size": video.size, "sha256": video.sha256,
            "parameters": video.parameters, "created_at": video.created_at}


def page_of(request: Request) -> tuple[int, int]:
    try:
        limit = int(request.query_params.get("limit", 50))
        offset = int(request.query_params.get("offset", 0))
    except ValueError:
        raise ValidationError({"limit": "limit and offset must be whole numbers"}) from None
    if not 1 <= limit <= 200 or not 0 <= offset <= MAX_OFFSET:
        raise ValidationError({"limit": f"limit must be 1-200 and offset 0-{MAX_OFFSET}"})
    return limit, offset


class VideoListView(APIView):
    @extend_schema(summary="Your videos, newest first", operation_id="api_videos_list", parameters=[OpenApiParameter("limit", int),
                                                                     OpenApiParameter("offset", int)],
                   responses={200: OpenApiResponse(OpenApiTypes.OBJECT), **error_responses(400, 401)})
    def get(self, request: Request) -> Response:
        videos = Video.objects.filter(owner=request.user)
        limit, offset = page_of(request)
        return Response({"count": videos.count(), "limit": limit, "offset": offset,
                         "results": [video_data(v) for v in videos[offset:offset + limit]]})


class VideoDetailView(APIView):
    @extend_schema(summary="One of your videos", operation_id="api_videos_detail",
                   responses={200: OpenApiTypes.OBJECT, **error_responses(401, 404)})
    def get(self, request: Request, video_id: str) -> Response:
        return Response(video_data(owned_video(request, video_id)))

    @extend_schema(summary="Delete a video and its files (a job's video goes with its job)",
                   operation_id="api_videos_delete", responses={204: None, **error_responses(401, 404)})
    def delete(self, request: Request, video_id: str) -> Response:
        services.delete_video(owned_video(request, video_id))
        return Response(status=status.HTTP_204_NO_CONTENT)


def owned_video(request: Request, video_id: str) -> Video:
    video = Video.objects.filter(owner=request.user, pk=video_id).first()
    if video is None:
        raise Http404("No such video of yours.")
    return video


class VideoFileView(APIView):
    """One of the user's videos or its thumbnail (session or token)."""

    @extend_schema(summary="A video file of yours (part: file or thumbnail)", operation_id="api_videos_part",
                   responses={
        (200, "video/mp4"): OpenApiTypes.BINARY, **error_responses(401, 404)})
    def get(self, request: Request, video_id: str, part: str) -> FileResponse:
        video = Video.objects.filter(owner=request.user, pk=video_id).first() if part in ("file", "thumbnail") \
            else None
        field = (video.file if part == "file" else video.thumbnail) if video is not None else None
        if not field:
            raise Http404("No such video of yours.")
        content_type = "video/mp4" if part == "file" else "image/jpeg"
        return FileResponse(field.open("rb"), content_type=content_type, filename=field.name.rsplit("/", 1)[-1],
                            as_attachment=request.query_params.get("download") == "1")
