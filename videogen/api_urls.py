"""videogen's part of /api/."""

from django.urls import path

from videogen import api, jobs_api, webhooks
from videogen.realtime.api import (
    RealtimeSessionDetailView,
    RealtimeSessionListView,
    RealtimeTokenView,
)

urlpatterns = [
    path("videos/generate", api.GenerateVideoView.as_view(), name="video-generate"),
    path("videos/", jobs_api.VideoListView.as_view(), name="video-list"),
    path("videos/<uuid:video_id>/", jobs_api.VideoDetailView.as_view(), name="video-detail"),
    path("videos/<uuid:video_id>/<str:part>", jobs_api.VideoFileView.as_view(), name="video-file"),
    path("jobs/", jobs_api.JobListView.as_view(), name="job-list"),
    path("jobs/<uuid:job_id>/", jobs_api.JobDetailView.as_view(), name="job-detail"),
    path("jobs/<uuid:job_id>/cancel", jobs_api.JobCancelView.as_view(), name="job-cancel"),
    path("jobs/<uuid:job_id>/retry", jobs_api.JobRetryView.as_view(), name="job-retry"),
    path("jobs/<uuid:job_id>/inputs/<str:name>", jobs_api.JobInputView.as_view(), name="job-input"),
    path("jobs/<uuid:job_id>/video", jobs_api.JobVideoView.as_view(), name="job-video"),
    path("realtime/token", RealtimeTokenView.as_view(), name="realtime-token"),
    path("realtime/sessions/", RealtimeSessionListView.as_view(), name="realtime-session-list"),
    path("realtime/sessions/<uuid:session_id>/", RealtimeSessionDetailView.as_view(), name="realtime-session-detail"),
    path("webhooks/fal/", webhooks.FalWebhookView.as_view(), name="fal-webhook"),
]
