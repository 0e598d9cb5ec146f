"""How a local session's producer reaches its socket: frames and status, in order.

In the services mode a session has a Redis pub/sub channel, ``<REDIS_KEY_PREFIX>:rt:<id>``:
the producer PUBLISHes each message (one round trip) and the socket's web process reads
its own subscription. Measured with bench/relay.py, channels_redis needed about eight Redis
round trips per frame (a group lookup and a Lua script to send; a cleanup script, a
blocking pop and the payload written back to a backup queue to receive) and added about
5 ms to every frame on a 2-core machine; pub/sub adds one hop. What pub/sub gives up, a
message for a socket that is not listening, is what a live stream wants anyway. Messages
are msgpack maps, so frames stay bytes.

In the embedded mode there is no Redis: messages go to the session's group on the
in-process channel layer, which is already one hop.

Control messages from the socket to the producer (updates, keepalives, stop) stay on the
channel layer (videogen/realtime/link.py): they are few, and must wait for a busy producer.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import msgpack
from django.conf import settings

logger = logging.getLogger(__name__)

Handler = Callable[[dict[str, Any]], Awaitable[None]]


def topic(session_id: Any) -> str:
    return f"{settings.REDIS_KEY_PREFIX}:rt:{uuid.UUID(str(session_id)).hex}"


def uses_redis() -> bool:
    return not settings.STUDIO_EMBEDDED


def redis_client(*, sync: bool = False):
    """A client for the bus: RESP2, whose replies hiredis parses (RESP3's pub/sub pushes
    went through redis-py's Python parser: +0.6 ms on an 80 KB frame)."""
    if sync:
        import redis
    else:
        import redis.asyncio as redis
    return redis.Redis.from_url(settings.REDIS_URL, protocol=2, socket_connect_timeout=5, socket_timeout=30)


def pack(message: dict[str, Any]) -> bytes:
    return msgpack.packb(message, use_bin_type=True)


def unpack(data: bytes) -> dict[str, Any]:
    return msgpack.unpackb(data, raw=False)


class Subscription:
    """One session's messages, handed to ``handler`` one at a time and in order."""

    def __init__(self, session_id: Any, handler: Handler) -> None:
        self.topic = topic(session_id)
        self.handler = handler
        self._client = None
        self._pubsub = None
        self._task: asyncio.Task | None = None

    async def start(self) -> None:
        """Subscribe and wait for Redis to confirm, so nothing published after this is missed."""
        self._client = redis_client()
        self._pubsub = self._client.pubsub()
        await self._pubsub.subscribe(self.topic)
        while True:
            confirmation = await self._pubsub.get_message(timeout=10)
            if confirmation is None:
                raise TimeoutError("Redis did not confirm the subscription")
            if confirmation["type"] == "subscribe":
                break
        self._task = asyncio.ensure_future(self._read())

    async def _read(self) -> None:
        while True:
            try:
                message = await self._pubsub.get_message(ignore_subscribe_messages=True, timeout=None)
            except asyncio.CancelledError:
                raise
            except Exception:  # the connection broke: the socket's frame timeout ends the session
                logger.exception("reading %s failed", self.topic)
                return
            if message is None or message.get("type") != "message":
                continue
            try:
                await self.handler(unpack(message["data"]))
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.exception("handling a message of %s failed", self.topic)

    async def close(self) -> None:
        if self._task is not None and self._task is not asyncio.current_task():
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        if self._pubsub is not None:
            try:
                await self._pubsub.unsubscribe(self.topic)
                await self._pubsub.aclose()
            except Exception:  # closing a broken connection
                logger.debug("closing the subscription to %s failed", self.topic, exc_info=True)
        if self._client is not None:
            await self._client.aclose()
