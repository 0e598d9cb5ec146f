"""Pages of the video feature."""

from django.urls import path

from videogen.pages import views

app_name = "videogen"
urlpatterns = [
    path("video-generation/", views.generate, name="generate"),
    path("realtime/", views.realtime, name="realtime"),
    path("gallery/", views.gallery_page, name="gallery"),
    path("gallery/items/<uuid:item_id>/", views.gallery_item, name="gallery-item"),
]
