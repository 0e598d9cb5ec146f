"""``/api/jobs/``: durable generation jobs, owner-scoped (another user's job is a 404).

Create answers 202 with the job at once (or waits up to ``?wait=<s>`` for it to finish);
the job runs on the Celery workers (or the embedded threads) and survives timeouts,
restarts and crashed workers. Request fields are Studio's (``prompt``, ``image``, ...) or
the i2v service's (``image_url``, ``motion_prompt``, ``duration_sec``; ``model`` aliases):
``videogen.jobs.create`` reads them, the same for every door.
"""

from __future__ import annotations

from typing import Any

from django.core.files.storage import default_storage
from django.db.models import QuerySet
from django.http import FileResponse, Http404
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers, status
from rest_framework.exceptions import ValidationError
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from model_control.backends import catalog
from model_control.catalog import VideoModel
from model_control.inputs import ACCEPT
from model_control.limits import GenerationRateThrottle
from model_control.openapi import error_responses
from model_control.parsing import studio_request
from videogen.gallery.api import page_of, video_data
from videogen.jobs import create, services
from videogen.jobs.schema import job_request_serializer
from videogen.jobs.waiting import wait_for
from videogen.models import FINISHED, Job, JobStatus

MAX_WAIT_S = 600


class JobSerializer(serializers.ModelSerializer):
    """The shape of a job in the API (the OpenAPI schema reads it); ``job_data`` writes it."""

    video = serializers.SerializerMethodField()
    preview = serializers.SerializerMethodField()

    class Meta:
        model = Job
        fields = ["id", "model_id", "backend", "kind", "status", "status_sequence", "input", "provider_request_id",
                  "queue_position", "progress", "logs_tail", "estimated_cost", "actual_cost", "currency",
                  "error_type", "error_message", "error_details", "attempts", "retry_of", "preview", "created_at",
                  "submitted_at", "started_at", "finished_at", "video"]

    def get_preview(self, job: Job) -> dict[str, Any] | None:
        """The fast variant run first (``preview: true``): its id, status and video until replaced."""
        return _preview(job)

    def get_video(self, job: Job) -> dict[str, Any] | None:
        return _video(job)


def _preview(job: Job) -> dict[str, Any] | None:
    if job.preview_id is None:
        return None
    preview = job.preview
    video = getattr(preview, "video", None) if preview.status == JobStatus.COMPLETED else None
    return {"id": str(preview.pk), "model_id": preview.model_id, "status": preview.status,
            "video": video_data(video) if video is not None else None}


def _video(job: Job) -> dict[str, Any] | None:
    # Only a completed job has a video: no query for the others.
    video = getattr(job, "video", None) if job.status == JobStatus.COMPLETED else None
    return video_data(video) if video is not None else None


_DATETIME = serializers.DateTimeField()
_MONEY = serializers.DecimalField(max_digits=10, decimal_places=4)


def job_data(job: Job) -> dict[str, Any]:
    """``JobSerializer(job).data``, written out: a job is serialized on every create and poll of
    the API, and DRF builds a ModelSerializer's fields anew for each instance."""

    def when(value):
        return _DATETIME.to_representation(value) if value is not None else None

    def money(value):
        return _MONEY.to_representation(value) if value is not None else None

    return {
        "id": str(job.id), "model_id": job.model_id, "backend": job.backend, "kind": job.kind,
        "status": job.status, "status_sequence": job.status_sequence, "input": job.input,
        "provider_request_id": job.provider_request_id, "queue_position": job.queue_position,
        "progress": job.progress, "logs_tail": job.logs_tail, "estimated_cost": money(job.estimated_cost),
        "actual_cost": money(job.actual_cost), "currency": job.currency, "error_type": job.error_type,
        "error_message": job.error_message, "error_details": job.error_details, "attempts": job.attempts,
        "retry_of": str(job.retry_of_id) if job.retry_of_id else None, "preview": _preview(job),
        "created_at": when(job.created_at), "submitted_at": when(job.submitted_at),
        "started_at": when(job.started_at), "finished_at": when(job.finished_at), "video": _video(job),
    }


def create_job(request: Request, *, exclude: set[str] = frozenset()) -> tuple[Job, VideoModel]:
    """A job from an API request (JSON or a form, images as uploads or URLs): shared by
    /api/jobs/ and the synchronous door."""
    fields = studio_request(request, exclude={"model", "wait", "preview", *exclude})
    data = request.data if hasattr(request.data, "get") else {}
    job = create.create_job(request.user, data.get("model"), fields, preview=_flag(data.get("preview")))
    return job, job_model(job)


def job_model(job: Job) -> VideoModel:
    return catalog().require(job.model_id)


def _flag(value: Any) -> bool:
    if value in (None, "", False, "false", "0", 0):
        return False
    if value in (True, "true", "1", 1):
        return True
    raise ValidationError({"preview": "must be true or false"})


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
        limit, offset = page_of(request)
        return Response({"count": jobs.count(), "limit": limit, "offset": offset,
                         "results": [job_data(job) for job in jobs[offset:offset + limit]]})

    @extend_schema(summary="Start a generation job", request=job_request_serializer(),
                   parameters=[OpenApiParameter("wait", float, description="wait up to this many seconds")],
                   responses={201: JobSerializer, 202: JobSerializer,
                              **error_responses(400, 401, 404, 429, 503)})
    def post(self, request: Request) -> Response:
        seconds = wait_seconds(request)
        job, _ = create_job(request)
        if seconds:
            job = wait_for(job.pk, seconds)
        done = job.status in FINISHED
        return Response(job_data(job), status=status.HTTP_201_CREATED if done else status.HTTP_202_ACCEPTED,
                        headers={"Location": f"/api/jobs/{job.pk}/"})


class JobDetailView(APIView):
    @extend_schema(summary="One of your jobs", responses={200: JobSerializer, **error_responses(401, 404)})
    def get(self, request: Request, job_id: str) -> Response:
        return Response(job_data(owned_job(request, job_id)))

    @extend_schema(summary="Delete a job and its files (cancels it first if it runs)",
                   responses={204: None, **error_responses(401, 404)})
    def delete(self, request: Request, job_id: str) -> Response:
        services.delete_job(owned_job(request, job_id))
        return Response(status=status.HTTP_204_NO_CONTENT)


class JobCancelView(APIView):
    @extend_schema(summary="Cancel a job (here and at the provider)", request=None,
                   responses={200: JobSerializer, **error_responses(401, 404)})
    def post(self, request: Request, job_id: str) -> Response:
        return Response(job_data(services.cancel_job(owned_job(request, job_id))))


class JobRetryView(APIView):
    throttle_classes = [GenerationRateThrottle]

    @extend_schema(summary="Run a finished job again as a new job", request=None,
                   responses={202: JobSerializer, **error_responses(400, 401, 404, 429, 503)})
    def post(self, request: Request, job_id: str) -> Response:
        new = create.retry_job(request.user, owned_job(request, job_id))
        return Response(job_data(new), status=status.HTTP_202_ACCEPTED)


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


# What a stored upload is served as; anything else is served as bytes to download.
SERVED_TYPES = (*ACCEPT["image"], *ACCEPT["video"])


class JobInputView(APIView):
    @extend_schema(summary="An image or video you uploaded for a job (to reuse its settings)", operation_id="api_jobs_input",
                   responses={(200, "image/*"): OpenApiTypes.BINARY, (200, "video/*"): OpenApiTypes.BINARY, **error_responses(401, 404)})
    def get(self, request: Request, job_id: str, name: str) -> FileResponse:
        job = owned_job(request, job_id)
        stored = job.input.get(name) if isinstance(job.input, dict) else None
        if not isinstance(stored, dict) or not isinstance(stored.get("upload"), str) \
                or not default_storage.exists(stored["upload"]):
            raise Http404(f"The job has no uploaded {name!r}.")
        content_type = stored.get("content_type") if stored.get("content_type") in SERVED_TYPES \
            else "application/octet-stream"
        return FileResponse(default_storage.open(stored["upload"], "rb"), content_type=content_type,
                            filename=str(stored.get("file_name") or name))
