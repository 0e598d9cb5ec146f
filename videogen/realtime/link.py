"""The wire between a session's socket and its producer.

The producer (a GPU worker's task, or a thread of the embedded web process) publishes
frames and status on the session's bus (videogen/realtime/bus.py: Redis pub/sub, or the
session's group ``rt.<id>`` on the in-process channel layer); the consumer sends control
messages (updates, keepalives, stop) to the session's control channel ``rt.control.<id>``
on the channel layer, which the producer reads as they come, on a thread of its own.

``ProducerLink`` gives a synchronous producer both directions over one event loop of its
own (one Redis connection pool, messages sent in order, never blocking the generation).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import threading
import time
import uuid
from typing import Any

from channels.layers import get_channel_layer

from videogen.realtime import bus

logger = logging.getLogger(__name__)

# Messages waiting for the layer before ``publish`` starts to wait: a producer only ever
# outruns a broken Redis, never a slow client (the consumer drops frames, not the layer).
MAX_BACKLOG = 256


def group_name(session_id: Any) -> str:
    return f"rt.{uuid.UUID(str(session_id)).hex}"


def control_channel(session_id: Any) -> str:
    return f"rt.control.{uuid.UUID(str(session_id)).hex}"


class ProducerLink:
    """Publish to the session's group, read its control channel; from any thread."""

    def __init__(self, session_id: Any, layer=None) -> None:
        self.group = group_name(session_id)
        self.topic = bus.topic(session_id)
        self.channel = control_channel(session_id)
        self.layer = layer or get_channel_layer()
        self.controls: queue.SimpleQueue[dict[str, Any]] = queue.SimpleQueue()
        self.last_control = time.monotonic()
        self._loop = asyncio.new_event_loop()
        self._pending = 0  # published, not yet handed to the layer
        self._settled = threading.Condition()
        self._outbox: asyncio.Queue | None = None
        self._redis = bus.redis_client(sync=True) if bus.uses_redis() else None
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._serve, name=f"rt-link-{self.group[3:11]}", daemon=True)
        self._thread.start()
        self._ready.wait(10)

    # ---- producer side (any thread)
    def publish(self, message: dict[str, Any]) -> None:
        """Send ``message`` to the session's socket. With Redis: one PUBLISH, from the calling
        thread (no hop through the link's loop). In process: queued for the group; returns at
        once unless MAX_BACKLOG are waiting."""
        if self._redis is not None:
            try:
                self._redis.publish(self.topic, bus.pack(message))
            except Exception:  # a lost frame is a dropped frame; the stream goes on
                logger.exception("publishing to %s failed", self.topic)
            return
        with self._settled:
            self._settled.wait_for(lambda: self._pending < MAX_BACKLOG)
            self._pending += 1
        self._loop.call_soon_threadsafe(self._outbox.put_nowait, message)

    def next_control(self, timeout: float) -> dict[str, Any] | None:
        """The next control message, waiting up to ``timeout`` seconds for one (None: none came)."""
        try:
            return self.controls.get(timeout=timeout)
        except queue.Empty:
            return None

    def flush(self, timeout: float = 10) -> bool:
        """Wait until everything published has reached the layer."""
        with self._settled:
            return self._settled.wait_for(lambda: self._pending == 0, timeout)

    def close(self, timeout: float = 10) -> None:
        """Send what is queued, stop reading controls, end the loop."""
        self.flush(timeout)
        self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(timeout)
        if self._redis is not None:
            self._redis.close()

    # ---- the link's own loop
    def _serve(self) -> None:
        asyncio.set_event_loop(self._loop)
        try:
            self._loop.run_until_complete(self._main())
        finally:
            with contextlib.suppress(Exception):
                self._loop.run_until_complete(self._loop.shutdown_asyncgens())
            self._loop.close()  # channels_redis closes this loop's connection pool with it

    async def _main(self) -> None:
        self._outbox = asyncio.Queue()
        self._stop = asyncio.Event()
        self._ready.set()
        sender = asyncio.create_task(self._send_loop())
        reader = asyncio.create_task(self._read_loop())
        await self._stop.wait()
        for task in (sender, reader):
            task.cancel()
        await asyncio.gather(sender, reader, return_exceptions=True)

    async def _send_loop(self) -> None:
        while True:
            message = await self._outbox.get()
            try:
                await self.layer.group_send(self.group, message)
            except Exception:  # a lost frame is a dropped frame; the stream goes on
                logger.exception("publishing to %s failed", self.group)
            finally:
                with self._settled:
                    self._pending -= 1
                    self._settled.notify_all()

    async def _read_loop(self) -> None:
        while True:
            try:
                message = await self.layer.receive(self.channel)
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.exception("reading %s failed", self.channel)
                await asyncio.sleep(0.5)
                continue
            self.last_control = time.monotonic()
            self.controls.put(message)
