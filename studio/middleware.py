"""Studio's own middleware: login for pages (the API answers for itself), no secrets in errors."""

from __future__ import annotations

from django.contrib.auth.middleware import LoginRequiredMiddleware
from rest_framework.views import APIView

from model_control.redaction import redact


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


class RedactErrorRepliesMiddleware:
    """The last net: no error reply (4xx/5xx) leaves with a configured secret in it.

    Provider errors are redacted where they are made; this catches any text that slipped
    past (an upstream body copied into a reply by a view written later).
    """

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        response = self.get_response(request)
        if response.status_code < 400 or getattr(response, "streaming", False):
            return response
        content_type = response.get("Content-Type", "")
        if not content_type.startswith(("application/json", "text/")):
            return response
        try:
            text = response.content.decode(response.charset or "utf-8")
        except UnicodeDecodeError:
            return response
        cleaned = redact(text)
        if cleaned != text:
            response.content = cleaned.encode(response.charset or "utf-8")
        return response
