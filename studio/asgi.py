"""ASGI entry point: HTTP (Django + static files) and WebSockets (Channels).

Every view of the studio is synchronous, so HTTP goes through Django's WSGI handler, run on
one of the web process's ``STUDIO_WEB_THREADS`` request threads (``runtime.wsgi_threads``):
the whole request (middleware, view, database) stays on that thread. Django's ASGI handler
would instead make a thread per request and hop to it and back for each synchronous
middleware, a cost on every request that buys nothing without async views. WebSockets are
Channels consumers on the event loop.
"""

from __future__ import annotations

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "studio.settings")
# Django must be set up before anything imports models (consumers do).
django_http = get_wsgi_application()

from channels.auth import AuthMiddlewareStack  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from django.conf import settings  # noqa: E402
from django.contrib.staticfiles.handlers import StaticFilesHandler as DjangoStaticFilesHandler  # noqa: E402
from django.core.exceptions import SuspiciousOperation  # noqa: E402
from django.http import Http404  # noqa: E402

from runtime.wsgi_threads import ThreadedWSGI  # noqa: E402
from studio.origins import SocketOriginPolicy  # noqa: E402
from studio.routing import websocket_urlpatterns  # noqa: E402


class StaticFilesHandler(DjangoStaticFilesHandler):
    """Django's static files handler, with a path it refuses answered 404 instead of 500.

    Django's ``serve`` raises ``SuspiciousFileOperation`` for ``/static/../x`` (also spelled
    ``%2e%2e`` or ``..%2f``: the path arrives decoded) and a ``ValueError`` (such as
    ``UnicodeEncodeError``) for a path the file system cannot take; the handler only turns ``Http404``
    into an answer, so anything else reached the client as a 500 with a traceback in the log.
    """

    def serve(self, request):
        try:
            return super().serve(request)
        except (SuspiciousOperation, ValueError) as exc:  # UnicodeError is a ValueError
            raise Http404("No such static file.") from exc


application = ProtocolTypeRouter(
    {
        "http": ThreadedWSGI(StaticFilesHandler(django_http), settings.STUDIO_WEB_THREADS),
        # Origins first (a cross-site socket must bring a token, and leaves its cookie behind),
        # then the session, then the route (an unknown path is refused, never a 500).
        "websocket": SocketOriginPolicy(AuthMiddlewareStack(URLRouter(websocket_urlpatterns))),
    }
)

# In the embedded mode this process is also the worker and the beat: the periodic tasks
# (the job sweep, which also recovers unfinished jobs at start) run on its timers
# (runstudio asks for it; a test importing this module does not).
if os.environ.get("STUDIO_EMBEDDED_BEAT") == "1":
    from runtime.celery import app as celery_app  # noqa: E402
    from runtime.embedded import start_worker  # noqa: E402

    start_worker(celery_app)
