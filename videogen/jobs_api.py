"""``/api/jobs/``: durable generation jobs, owner-scoped (another user's job is a 404).

Create answers 202 with the job at once (or waits up to ``?wait=<s>`` for it to finish);
the job runs on the Celery workers (or the embedded threads) and survives timeouts,
restarts and crashed workers. Request fields are Studio's (``prompt``, ``image``, ...) or
the i2v service's (``image_url``, ``motion_prompt``, ``duration_sec``; ``model`` aliases).
"""

from __future__ import annotations

import time
from typing import Any

from django.core.files.storage import default_storage
from django.db.models import QuerySet
from django.http import FileResponse, Http404
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import (
    OpenApiParameter,
    OpenApiResponse,
    extend_schema,
    inline_serializer,
)
from rest_framework import serializers, status
from rest_framework.exceptions import ValidationError
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from model_control import backends
from model_control.catalog import REALTIME, VideoModel, catalog
from model_control.limits import GenerationRateThrottle
from model_control.openapi import error_responses
from model_control.parsing import studio_request
from videogen import services
from videogen.inputs import store_values
from videogen.models import FINISHED, Job, JobStatus, Video

MAX_WAIT_S = 600
MAX_OFFSET = 10**9  # past this a database cannot take the number
WAIT_STEP_S = 0.1
# The i2v job service's names for models and fields.
MODEL_ALIASES = {
    "wan": "fal-ai/wan-25-preview/image-to-video",
    "wan-2.5": "fal-ai/wan-25-preview/image-to-video",
    "wan-2.2": "fal-ai/wan/v2.2-a14b/image-to-video",
    "kling": "fal-ai/kling-video/v2.5-turbo/pro/image-to-video",
    "veo3.1": "fal-ai/veo3.1/image-to-video",
}
FIELD_ALIASES = {"image_url": "image", "motion_prompt": "prompt", "duration_sec": "duration"}


class JobSerializer(serializers.ModelSerializer):
    video = serializers.SerializerMethodField()
    preview = serializers.SerializerMethodField()

    class Meta:
        model = Job
        fields = ["id", "model_id", "backend", "kind", "status", "status_sequence", "input", "provider_request_id",
                  "queue_position", "progress", "logs_tail", "estimated_cost", "actual_cost", "currency",
                  "error_type", "error_message", "error_details", "attempts", "retry_of", "preview", "created_at", "submitted_at",
                  "started_at", "finished_at", "video"]

    def get_preview(self, job: Job) -> dict[str, Any] | None:
        """The fast variant run first (``preview: true``): its id, status and video until replaced."""
        if job.preview_id is None:
            return None
        preview = job.preview
        video = getattr(preview, "video", None)
        return {"id": str(preview.pk), "model_id": preview.model_id, "status": preview.status,
                "video": video_data(video) if video is not None else None}

    def get_video(self, job: Job) -> dict[str, Any] | None:
        video = getattr(job, "video", None)
        return video_data(video) if video is not None else None


def video_data(video: Video) -> dict[str, Any]:
    return {"id": str(video.id), "name": video.name, "job": str(video.job_id) if video.job_id else None,
            "url": f"/api/videos/{video.id}/file", "thumbnail": f"/api/videos/{video.id}/thumbnail"
            if video.thumbnail else None, "duration_s": video.duration_s, "size": video.size, "sha256": video.sha256,
            "parameters": video.parameters, "created_at": video.created_at}


def create_job(request: Request, *, exclude: set[str] = frozenset()) -> tuple[Job, VideoModel]:
    """Validate a generation request and enqueue it (shared by /api/jobs/ and the sync door)."""
    fields = studio_request(request, exclude={"model", "wait", "preview", *exclude})
    for alias, name in FIELD_ALIASES.items():
        if alias in fields and name not in fields:
            fields[name] = fields.pop(alias)
    model_id = request.data.get("model") if hasattr(request.data, "get") else None
    if not model_id or not isinstance(model_id, str):
        raise ValidationError({"model": "model is required: one of the ids from GET /api/models/"})
    model = catalog().require(MODEL_ALIASES.get(model_id, model_id))
    if model.kind == REALTIME:
        raise ValidationError({"model": f"{model.id} is a realtime model: stream it over the realtime WebSocket"})
    values = model.clean(fields)
    backends.require_configured(model)
    preview = None
    if _flag(request.data.get("preview") if hasattr(request.data, "get") else None):
        variant = catalog().preview_for(model, values)
        if variant is None:
            raise ValidationError({"preview": f"{model.id} has no faster variant for a preview"})
        preview_model, preview_values = variant
        preview_values = preview_model.clean(preview_values)
        preview = services.enqueue_job(request.user, preview_model, preview_values,
                                       store_values(preview_model, preview_values))
    return services.enqueue_job(request.user, model, values, store_values(model, values), preview=preview), model


def _flag(value: Any) -> bool:
    if value in (None, "", False, "false", "0", 0):
        return False
    if value in (True, "true", "1", 1):
        return True
    raise ValidationError({"preview": "must be true or false"})


def wait_for(job: Job, seconds: float) -> Job:
    """The job, re-read until it finishes or ``seconds`` pass."""
    deadline = time.monotonic() + seconds
    while True:
        job = Job.objects.select_related("video").get(pk=job.pk)
        if job.status in FINISHED or time.monotonic() >= deadline:
            return job
        time.sleep(min(WAIT_STEP_S, max(deadline - time.monotonic(), 0)))


def wait_seconds(request: Request) -> float:
    raw = request.query_params.get("wait")
    if raw is None and hasattr(request.data, "get"):
        raw = request.data.get("wait")
    if raw in (None, ""):
        return 0.0
    try:
        seconds = float(raw)
    except (TypeError, ValueError):
        raise ValidationError({"wait": f"must be a number of seconds (0-{MAX_WAIT_S})"}) from None
    if not 0 <= seconds <= MAX_WAIT_S:
        raise ValidationError({"wait": f"must be between 0 and {MAX_WAIT_S} seconds"})
    return seconds


def owned_jobs(request: Request) -> QuerySet[Job]:
    return Job.objects.filter(owner=request.user).select_related("video")


def owned_job(request: Request, job_id: str) -> Job:
    job = owned_jobs(request).filter(pk=job_id).first()
    if job is None:
        raise Http404("No such job of yours.")
    return job


JOB_CREATE = inline_serializer("JobCreate", {
    "model": serializers.CharField(help_text="a catalog id (GET /api/models/) or an alias: wan, kling, ..."),
    "prompt": serializers.CharField(required=False),
    "image": serializers.CharField(required=False, help_text="an uploaded file or an http(s) URL"),
    "image_url": serializers.CharField(required=False),
    "resolution": serializers.CharField(required=False),
    "duration": serializers.CharField(required=False),
    "seed": serializers.IntegerField(required=False),
    "preview": serializers.BooleanField(required=False, help_text="run the model's fast, cheap variant first"),
})


class JobListView(APIView):
    throttle_classes = [GenerationRateThrottle]

    def get_throttles(self):
        return super().get_throttles() if self.request.method == "POST" else []

    @extend_schema(summary="Your jobs, newest first", operation_id="api_jobs_list", parameters=[
        OpenApiParameter("status", str, enum=[s.value for s in JobStatus]),
        OpenApiParameter("model", str), OpenApiParameter("limit", int), OpenApiParameter("offset", int)],
        responses={200: OpenApiTypes.OBJECT, **error_responses(400, 401)})
    def get(self, request: Request) -> Response:
        jobs = owned_jobs(request)
        wanted = request.query_params.get("status")
        if wanted:
            if wanted not in JobStatus.values:
                raise ValidationError({"status": f"one of {', '.join(JobStatus.values)}"})
            jobs = jobs.filter(status=wanted)
        if request.query_params.get("model"):
            jobs = jobs.filter(model_id=request.query_params["model"])
        limit, offset = _page(request)
        return Response({"count": jobs.count(), "limit": limit, "offset": offset,
                         "results": JobSerializer(jobs[offset:offset + limit], many=True).data})

    @extend_schema(summary="Start a generation job", request=JOB_CREATE,
                   parameters=[OpenApiParameter("wait", float, description="wait up to this many seconds")],
                   responses={201: JobSerializer, 202: JobSerializer,
                              **error_responses(400, 401, 404, 429, 503)})
    def post(self, request: Request) -> Response:
        seconds = wait_seconds(request)
        job, _ = create_job(request)
        if seconds:
            job = wait_for(job, seconds)
        done = job.status in FINISHED
        return Response(JobSerializer(job).data, status=status.HTTP_201_CREATED if done else status.HTTP_202_ACCEPTED,
                        headers={"Location": f"/api/jobs/{job.pk}/"})


def _page(request: Request) -> tuple[int, int]:
    try:
        limit = int(request.query_params.get("limit", 50))
        offset = int(request.query_params.get("offset", 0))
    except ValueError:
        raise ValidationError({"limit": "limit and offset must be whole numbers"}) from None
    if not 1 <= limit <= 200 or not 0 <= offset <= MAX_OFFSET:
        raise ValidationError({"limit": f"limit must be 1-200 and offset 0-{MAX_OFFSET}"})
    return limit, offset


class JobDetailView(APIView):
    @extend_schema(summary="One of your jobs", responses={200: JobSerializer, **error_responses(401, 404)})
    def get(self, request: Request, job_id: str) -> Response:
        return Response(JobSerializer(owned_job(request, job_id)).data)

    @extend_schema(summary="Delete a job and its files (cancels it first if it runs)",
                   responses={204: None, **error_responses(401, 404)})
    def delete(self, request: Request, job_id: str) -> Response:
        services.delete_job(owned_job(request, job_id))
        return Response(status=status.HTTP_204_NO_CONTENT)


class JobCancelView(APIView):
    @extend_schema(summary="Cancel a job (here and at the provider)", request=None,
                   responses={200: JobSerializer, **error_responses(401, 404)})
    def post(self, request: Request, job_id: str) -> Response:
        return Response(JobSerializer(services.cancel_job(owned_job(request, job_id))).data)


class JobRetryView(APIView):
    throttle_classes = [GenerationRateThrottle]

    @extend_schema(summary="Run a finished job again as a new job", request=None,
                   responses={202: JobSerializer, **error_responses(400, 401, 404, 429, 503)})
    def post(self, request: Request, job_id: str) -> Response:
        job = owned_job(request, job_id)
        if job.status not in FINISHED:
            raise ValidationError({"job": f"the job is still {job.status}: cancel it first or wait"})
        model = catalog().require(job.model_id)
        backends.require_configured(model)
        from videogen.inputs import load_values

        values = load_values(model, job.input)
        new = services.enqueue_job(request.user, model, values, job.input, retry_of=job)
        return Response(JobSerializer(new).data, status=status.HTTP_202_ACCEPTED)


class JobVideoView(APIView):
    @extend_schema(summary="The job's video (owner only)", responses={
        (200, "video/mp4"): OpenApiTypes.BINARY, **error_responses(401, 404)})
    def get(self, request: Request, job_id: str) -> FileResponse:
        job = owned_job(request, job_id)
        video = getattr(job, "video", None)
        if video is None:
            raise Http404(f"The job has no video ({job.status}).")
        return FileResponse(video.file.open("rb"), content_type="video/mp4", filename=video.name,
                            as_attachment=request.query_params.get("download") == "1")


class VideoListView(APIView):
    @extend_schema(summary="Your videos, newest first", operation_id="api_videos_list", parameters=[OpenApiParameter("limit", int),
                                                                     OpenApiParameter("offset", int)],
                   responses={200: OpenApiResponse(OpenApiTypes.OBJECT), **error_responses(400, 401)})
    def get(self, request: Request) -> Response:
        videos = Video.objects.filter(owner=request.user)
        limit, offset = _page(request)
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


# What a stored upload is served as; anything else is served as bytes to download.
IMAGE_TYPES = ("image/png", "image/jpeg", "image/webp")


class JobInputView(APIView):
    @extend_schema(summary="An image you uploaded for a job (to reuse its settings)", operation_id="api_jobs_input",
                   responses={(200, "image/*"): OpenApiTypes.BINARY, **error_responses(401, 404)})
    def get(self, request: Request, job_id: str, name: str) -> FileResponse:
        job = owned_job(request, job_id)
        stored = job.input.get(name) if isinstance(job.input, dict) else None
        if not isinstance(stored, dict) or not isinstance(stored.get("upload"), str) \
                or not default_storage.exists(stored["upload"]):
            raise Http404(f"The job has no uploaded {name!r}.")
        content_type = stored.get("content_type") if stored.get("content_type") in IMAGE_TYPES \
            else "application/octet-stream"
        return FileResponse(default_storage.open(stored["upload"], "rb"), content_type=content_type,
                            filename=str(stored.get("file_name") or name))


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
