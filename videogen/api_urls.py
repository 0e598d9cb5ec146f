"""videogen's part of /api/."""

from django.urls import path

from videogen import api

urlpatterns = [
    path("videos/generate", api.GenerateVideoView.as_view(), name="video-generate"),
    path("videos/", api.GalleryListView.as_view(), name="video-list"),
]
