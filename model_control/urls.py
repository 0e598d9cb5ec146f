"""TT Studio's model endpoints, mounted at /models/ (and /models-api/ as its browser calls them)."""

from django.urls import path

from model_control import views

app_name = "models"
urlpatterns = [
    path("video-generation-cloud/", views.VideoGenerationCloudView.as_view(), name="video-generation-cloud"),
]
