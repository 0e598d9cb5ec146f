"""Pages of the video feature."""

from django.urls import path

from videogen import api, views

app_name = "videogen"
urlpatterns = [
    path("video-generation/", views.generate, name="generate"),
    path("realtime/", views.realtime, name="realtime"),
    path("gallery/", views.gallery_page, name="gallery"),
    path("gallery/files/<str:name>", api.GalleryFileView.as_view(), name="gallery-file"),
]
