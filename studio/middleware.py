"""Pages need a logged-in user; the API answers for itself."""

from __future__ import annotations

from django.contrib.auth.middleware import LoginRequiredMiddleware
from rest_framework.views import APIView


class PagesRequireLoginMiddleware(LoginRequiredMiddleware):
    """Django's login-required-by-default, minus DRF views.

    An anonymous API call must get a 401/403 JSON answer from DRF's own authentication,
    never a redirect to the login page.
    """

    def process_view(self, request, view_func, view_args, view_kwargs):
        view_class = getattr(view_func, "cls", None)
        if isinstance(view_class, type) and issubclass(view_class, APIView):
            return None
        return super().process_view(request, view_func, view_args, view_kwargs)
