"""Every WebSocket route of the studio (apps add theirs here).

The realtime socket answers at the studio's own path and at fal's paths for each app it
serves, so a client written for fal's endpoint works by changing only the host:
``/fal-ai/krea-wan-14b/ws`` (the seed Krea app's hook: JPEG frames) and
``/fal-ai/krea-wan-14b/realtime`` (fal's ``realtime()`` clients, which decode every binary
message as msgpack: frames come as ``{image, request_id}`` there unless ``?fmt=`` says
otherwise). The route tells the consumer which app the socket is for (``url_route``
kwarg ``app``), which a token must be scoped to. Any other path is refused at the handshake
(daphne answers 403), never a 500.
"""

from __future__ import annotations

from urllib.parse import parse_qs

from django.urls import path, re_path

from runtime.consumers import EventsConsumer
from videogen.realtime.auth import served_apps
from videogen.realtime.consumer import RealtimeConsumer

# Closing before accept refuses the handshake: daphne answers it with HTTP 403, so only
# in-process tests (WebsocketCommunicator) ever see this code.
CLOSE_NO_SUCH_SOCKET = 4404
FAL_OWNER = "fal-ai"


def msgpack_frames_by_default(application):
    """``application`` with ``fmt=msgpack`` added to a query that names no ``fmt``."""

    async def app(scope, receive, send):
        query = scope.get("query_string", b"")
        if "fmt" not in parse_qs(query.decode("latin-1")):
            scope = {**scope, "query_string": query + (b"&" if query else b"") + b"fmt=msgpack"}
        return await application(scope, receive, send)

    return app


async def no_such_socket(scope, receive, send) -> None:
    """Refuse a handshake on a path that is no socket of the studio."""
    message = await receive()
    if message["type"] == "websocket.connect":
        await send({"type": "websocket.close", "code": CLOSE_NO_SUCH_SOCKET})


realtime = RealtimeConsumer.as_asgi()

websocket_urlpatterns = [
    path("ws/events/", EventsConsumer.as_asgi()),
    path("ws/realtime/", realtime),
    *(route for app in served_apps() for route in (
        path(f"{FAL_OWNER}/{app}/ws", realtime, {"app": app}),
        path(f"{FAL_OWNER}/{app}/realtime", msgpack_frames_by_default(realtime), {"app": app}))),
    re_path(r"", no_such_socket),
]
