"""WebSocket consumers of the studio itself."""

from __future__ import annotations

from channels.generic.websocket import AsyncJsonWebsocketConsumer

from studio.events import user_group

# Close codes in the 4000-4999 range are ours; 4401 mirrors HTTP 401.
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

    async def disconnect(self, code: int) -> None:
        if hasattr(self, "group"):
            await self.channel_layer.group_discard(self.group, self.channel_name)

    async def receive_json(self, content, **kwargs) -> None:
        if isinstance(content, dict) and content.get("type") == "ping":
            await self.send_json({"type": "pong"})
        else:
            await self.send_json({"type": "error", "error": "this socket only answers {\"type\": \"ping\"}"})

    async def studio_event(self, message: dict) -> None:
        await self.send_json(message["event"])
