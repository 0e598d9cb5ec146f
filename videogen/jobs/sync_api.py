"""``POST /api/videos/generate``: the synchronous door, now a durable job plus a wait.

It answers the MP4 as before; behind it the generation is a ``Job`` on the workers, so a
timeout here (504, naming the job) loses nothing: the job completes and lands in the gallery.
"""

from __future__ import annotations

from django.conf import settings
from django.http import HttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from model_control.limits import GenerationRateThrottle
from model_control.openapi import error_responses
from videogen.jobs.api import create_job
from videogen.jobs.schema import job_request_serializer
from videogen.jobs.waiting import wait_for
from videogen.models import JobStatus

# A failed job's error type -> the HTTP status the synchronous door answers it with.
ERROR_STATUS = {"rejected": 422, "timeout": 504, "not_configured": 503, "cancelled": 409}


class GenerateVideoView(APIView):
    """One non-realtime catalog model, answered with the MP4 (waits up to VIDEO_GENERATION_TIMEOUT)."""

    throttle_classes = [GenerationRateThrottle]

    @extend_schema(
        summary="Generate a video and wait for it (a job underneath; up to VIDEO_GENERATION_TIMEOUT)",
        request=job_request_serializer(),
        responses={(200, "video/mp4"): OpenApiTypes.BINARY,
                   **error_responses(400, 401, 404, 422, 429, 502, 503, 504)},
    )
    def post(self, request: Request) -> HttpResponse | Response:
        job, model = create_job(request)
        job = wait_for(job.pk, settings.VIDEO_GENERATION_TIMEOUT)
        headers = {"X-Studio-Job": str(job.pk), "X-Studio-Model": model.id}
        if job.provider_request_id:
            headers["X-Studio-Request-Id"] = job.provider_request_id
        if job.status == JobStatus.COMPLETED:
            video = job.video
            with video.file.open("rb") as handle:
                response = HttpResponse(handle.read(), content_type="video/mp4")
            response["Content-Disposition"] = f"attachment; filename={video.name}"
            response["X-Studio-Video"] = str(video.id)
            response["X-Studio-Gallery-File"] = video.name
            for name, value in headers.items():
                response[name] = value
            return response
        body = {"job": str(job.pk), "request_id": job.provider_request_id or None}
        if job.status == JobStatus.FAILED:
            if job.error_details is not None:
                body["details"] = job.error_details
            return Response({"error": job.error_message, "error_type": job.error_type, **body},
                            status=ERROR_STATUS.get(job.error_type, 502), headers=headers)
        if job.status == JobStatus.CANCELLED:
            return Response({"error": "The job was cancelled.", "error_type": "cancelled", **body}, status=409,
                            headers=headers)
        return Response({"error": f"The video is not ready after {settings.VIDEO_GENERATION_TIMEOUT:g} s. It is "
                                  f"still being made as job {job.pk} and will land in your gallery: "
                                  f"GET /api/jobs/{job.pk}/.", "error_type": "timeout", **body},
                        status=504, headers=headers)
