"""model_control's part of /api/ (each route also answers without or with its trailing slash:
studio/urls.py)."""

from django.urls import path

from model_control import fal_views, views

urlpatterns = [
    path("models/", views.ModelListView.as_view(), name="model-list"),
    path("models/<path:model_id>/estimate", views.ModelEstimateView.as_view(), name="model-estimate"),
    path("models/<path:model_id>/", views.ModelDetailView.as_view(), name="model-detail"),
    path("fal/proxy", fal_views.FalProxyView.as_view(), name="fal-proxy"),
]
