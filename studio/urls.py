"""The studio's URL map: pages, the REST API, the TT Studio-compatible model endpoints, and
fal's token endpoint.

Every API route answers both with and without its trailing slash, for every method: a
client that writes ``POST /api/jobs`` (i2v's, with ``/api`` as its base URL) must create the
job, and Django's slash-appending redirect (a 301, which clients follow as a GET) would drop
it silently. A 404 under ``/api/`` (or ``/fal/``) is JSON, like every other API error; pages
keep the studio's own 404 page.
"""

from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.urls import URLPattern, include, path
from django.views import defaults
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from model_control import api_urls as model_control_api
from studio import health, views
from videogen import api_urls as videogen_api
from videogen.realtime.token_api import FalTokensView

API_PREFIXES = ("/api/", "/fal/")


def either_slash(patterns: list[URLPattern]) -> list[URLPattern]:
    """``patterns``, then each route's twin without (or with) its trailing slash.

    The twins come after every original route, so a route that matches as written always
    wins; they carry no name, so ``reverse()`` keeps giving the route as written, and they
    stay out of the OpenAPI schema, which lists each operation once, as written.
    """
    twins = []
    for pattern in patterns:
        route = str(pattern.pattern)
        if route:
            twin = route[:-1] if route.endswith("/") else route + "/"
            twins.append(path(twin, _unlisted(pattern.callback), pattern.default_args))
    return [*patterns, *twins]


def _unlisted(callback):
    """The same view, left out of the schema (DRF's ``schema = None``); plain views as they are."""
    view_class = getattr(callback, "cls", None)
    if view_class is None:
        return callback
    return type(view_class.__name__, (view_class,), {"schema": None, "__module__": view_class.__module__}).as_view(
        **getattr(callback, "initkwargs", {}))


def not_found(request: HttpRequest, exception: Exception) -> HttpResponse:
    """``handler404``: JSON under the API (``{"error": ...}``), the studio's 404 page elsewhere."""
    if request.path.startswith(API_PREFIXES) or request.path == "/api":
        return JsonResponse({"error": f"There is no API endpoint at {request.path} (see /api/docs/)."},
                            status=404)
    return defaults.page_not_found(request, exception)


handler404 = not_found

urlpatterns = [
    path("", views.home, name="home"),
    path("health", health.health, name="health"),
    path("accounts/login/", auth_views.LoginView.as_view(), name="login"),
    path("accounts/logout/", views.LogoutView.as_view(), name="logout"),
    path("account/token/", views.account_token, name="account-token"),
    path("favicon.ico", views.favicon, name="favicon"),
    path("admin/", admin.site.urls),
    # REST API
    path("api/", include(either_slash([
        path("health", health.health, name="api-health"),
        path("schema/", SpectacularAPIView.as_view(), name="schema"),
        path("docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="api-docs"),
        *model_control_api.urlpatterns,
        *videogen_api.urlpatterns,
    ]))),
    # fal's REST token endpoint, for programs written for fal (their REST URL becomes {studio}/fal).
    path("fal/", include(either_slash([path("tokens/", FalTokensView.as_view(), name="fal-tokens")]))),
    # TT Studio's inference endpoints (its browser calls them under /models-api/).
    path("models/", include("model_control.urls")),
    path("models-api/", include(("model_control.urls", "models"), namespace="models-api")),
    # Pages of the video feature.
    path("", include("videogen.urls")),
]
