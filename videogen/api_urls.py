"""videogen's part of /api/ (each route also answers without or with its trailing slash:
studio/urls.py)."""

from django.urls import path

from videogen.gallery import api as videos
from videogen.jobs import api as jobs
from videogen.jobs import sync_api, webhooks
from videogen.realtime import api as realtime
from videogen.realtime import timeline_api, token_api

urlpatterns = [
    path("videos/generate", sync_api.GenerateVideoView.as_view(), name="video-generate"),
    path("videos/", videos.VideoListView.as_view(), name="video-list"),
    path("videos/<uuid:video_id>/", videos.VideoDetailView.as_view(), name="video-detail"),
    path("videos/<uuid:video_id>/<str:part>", videos.VideoFileView.as_view(), name="video-file"),
    path("jobs/", jobs.JobListView.as_view(), name="job-list"),
    path("jobs/<uuid:job_id>/", jobs.JobDetailView.as_view(), name="job-detail"),
    path("jobs/<uuid:job_id>/cancel", jobs.JobCancelView.as_view(), name="job-cancel"),
    path("jobs/<uuid:job_id>/retry", jobs.JobRetryView.as_view(), name="job-retry"),
    path("jobs/<uuid:job_id>/inputs/<str:name>", jobs.JobInputView.as_view(), name="job-input"),
    path("jobs/<uuid:job_id>/video", jobs.JobVideoView.as_view(), name="job-video"),
    path("realtime/token", token_api.RealtimeTokenView.as_view(), name="realtime-token"),
    # The seed Krea app's token route (its page asks it for {"token"}); fal's own shape is /fal/tokens/.
    path("fal", token_api.FalTokenView.as_view(), name="fal-token"),
    path("realtime/sessions/", realtime.RealtimeSessionListView.as_view(), name="realtime-session-list"),
    path("realtime/sessions/<uuid:session_id>/", realtime.RealtimeSessionDetailView.as_view(),
         name="realtime-session-detail"),
    path("realtime/sessions/<uuid:session_id>/timeline", timeline_api.RealtimeSessionTimelineView.as_view(),
         name="realtime-session-timeline"),
    path("webhooks/<str:backend>/", webhooks.WebhookView.as_view(), name="webhook"),
]
