"""``/ws/events/``: a user's events as JSON, and the studio's WebSocket close codes.

What a page that (re)connects must learn first (the state of each unfinished job, say) comes
from the apps: each registers a function in ``CONNECT_EVENTS`` (videogen registers its jobs').
"""

from __future__ import annotations

from collections.abc import Callable

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer
from rest_framework.exceptions import ParseError

from runtime.events import user_group
from runtime.parsers import loads

# ``user id -> [event, ...]``: what a socket hears before any new event (sync functions).
CONNECT_EVENTS: list[Callable[[int], list[dict]]] = []

# Closing before accept refuses the handshake: daphne answers it with HTTP 403, so only
# in-process tests (WebsocketCommunicator) ever see this code.
CLOSE_UNAUTHENTICATED = 4401


class EventsConsumer(AsyncJsonWebsocketConsumer):
    """Streams the logged-in user's events (job progress and the like) as JSON."""

    async def connect(self) -> None:
        user = self.scope.get("user")
        if user is None or not user.is_authenticated:
            await self.close(code=CLOSE_UNAUTHENTICATED)
            return
        self.group = user_group(user.pk)
        await self.channel_layer.group_add(self.group, self.channel_name)
        await self.accept()
        await self.send_json({"type": "hello", "user": user.get_username()})
        # A page that (re)connects gets where each unfinished job is before any new event.
        for event in await connect_events(user.pk):
            await self.send_json(event)

    async def disconnect(self, code: int) -> None:
        if hasattr(self, "group"):
            await self.channel_layer.group_discard(self.group, self.channel_name)

    async def receive(self, text_data=None, bytes_data=None, **kwargs) -> None:
        # Channels raises on a binary frame and on text that is not JSON, which closes the
        # socket with 1011 and logs a traceback: a client's mistake is answered, not fatal.
        if text_data is None:
            await self.send_error("this socket takes JSON text frames, not binary ones")
            return
        try:
            content = await self.decode_json(text_data)
        except ParseError as exc:
            await self.send_error(f"not a JSON message: {exc.detail}")
            return
        await self.receive_json(content, **kwargs)

    @classmethod
    async def decode_json(cls, text_data):
        # runtime.parsers.loads: ParseError (never RecursionError) for deep nesting and the like.
        return loads(text_data)

    async def send_error(self, message: str) -> None:
        await self.send_json({"type": "error", "error": message})

    async def receive_json(self, content, **kwargs) -> None:
        if isinstance(content, dict) and content.get("type") == "ping":
            await self.send_json({"type": "pong"})
        else:
            await self.send_error("this socket only answers {\"type\": \"ping\"}")

    async def studio_event(self, message: dict) -> None:
        await self.send_json(message["event"])


@database_sync_to_async
def connect_events(user_id: int) -> list[dict]:
    return [event for source in CONNECT_EVENTS for event in source(user_id)]
