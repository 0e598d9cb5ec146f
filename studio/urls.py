"""The studio's URL map: pages, the REST API, the TT Studio-compatible model endpoints."""

from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from studio import health, views

urlpatterns = [
    path("", views.home, name="home"),
    path("health", health.health, name="health"),
    path("accounts/login/", auth_views.LoginView.as_view(), name="login"),
    path("accounts/logout/", views.LogoutView.as_view(), name="logout"),
    path("account/token/", views.account_token, name="account-token"),
    path("favicon.ico", views.favicon, name="favicon"),
    path("admin/", admin.site.urls),
    # REST API
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="api-docs"),
    path("api/", include("model_control.api_urls")),
    path("api/", include("videogen.api_urls")),
    # TT Studio's inference endpoints (its browser calls them under /models-api/).
    path("models/", include("model_control.urls")),
    path("models-api/", include(("model_control.urls", "models"), namespace="models-api")),
    # Pages of the video feature.
    path("", include("videogen.urls")),
]
