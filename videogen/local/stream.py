"""A realtime session on our own pipeline, hosted by a GPU worker (or the embedded gpu thread).

The socket joins the session's group (or its Redis pub/sub bus in the services mode), queues
the Celery task ``videogen.gpu.run_realtime_session`` and talks to it over the channel layer
(``videogen.realtime.link``): updates, images, keepalives and ``stop`` go to the producer's
control channel; its frames and its end come back to :meth:`LocalStream.producer_message`.
The producer claims the session, generates, records and finishes it (``videogen.local.producer``).
A start frame waits for the producer in the cache (``sessions.keep_start_frame``).

Controls go out through a :class:`ControlOutbox`, in order, and are never dropped: updates go
out at most every ``UPDATE_INTERVAL_S`` and consecutive ones merge meanwhile, the latest value
of each field winning (a client that sends thousands a second reaches the producer as a
handful); images beyond ``MAX_PENDING_IMAGES`` lose the oldest, as the pipeline's own input
buffer does. A full control channel is waited out, never a reason to lose ``stop``.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import time
from typing import Any

from channels.db import database_sync_to_async
from channels.exceptions import ChannelFull

from runtime.celery import dispatch
from videogen.realtime import bus, sessions
from videogen.realtime.link import control_channel, group_name

logger = logging.getLogger(__name__)

MAX_PENDING_IMAGES = 8  # images waiting for the control channel; older ones are dropped
FULL_RETRY_S = 0.05  # a full control channel is tried again this soon
# Updates go out at most this often (the rest merge meanwhile): a block takes longer, so none
# is late, and a flood of updates never fills the channel ahead of the producer.
UPDATE_INTERVAL_S = 0.05
FINAL = ("rt.error", "rt.completed")


def _mergeable(control: dict[str, Any]) -> bool:
    """An update that a later one may be merged into: no image, no reset, no stop."""
    update = control.get("update") or {}
    return control["op"] == "update" and "image" not in update and not update.get("reset")


class ControlOutbox:
    """The controls of one session on their way to its producer (see the module docstring)."""

    def __init__(self, send) -> None:
        self._send = send  # async (control) -> None; raises ChannelFull
        self._items: collections.deque[dict[str, Any]] = collections.deque()
        self._ready = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._task: asyncio.Task | None = None
        self._sending: dict[str, Any] | None = None  # in the layer's hands: never changed
        self._last_update = 0.0
        self.merged = 0
        self.dropped_images = 0

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.ensure_future(self._run())

    def put(self, control: dict[str, Any]) -> None:
        last = self._items[-1] if self._items else None
        if control["op"] == "keepalive" and last is not None:
            return  # anything queued says the socket is alive
        if last is not None and last is not self._sending and _mergeable(last) and _mergeable(control):
            last["update"] = {**last["update"], **control["update"]}
            if "prompt" in control["update"] and "interp_steps" not in control["update"]:
                last["update"].pop("interp_steps", None)  # it went with the prompt it replaces
            self.merged += 1
        else:
            if "image" in (control.get("update") or {}):
                images = [item for item in self._items if "image" in (item.get("update") or {})]
                if len(images) >= MAX_PENDING_IMAGES:
                    self._items.remove(images[0])
                    self.dropped_images += 1
            self._items.append(control)
        self._idle.clear()
        self._ready.set()

    async def flush(self, timeout: float) -> bool:
        """Wait until every control was handed to the channel layer (or ``timeout``)."""
        try:
            await asyncio.wait_for(self._idle.wait(), timeout)
            return True
        except TimeoutError:
            return False

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    async def _run(self) -> None:
        while True:
            while not self._items:
                self._idle.set()
                self._ready.clear()
                await self._ready.wait()
            control = self._sending = self._items[0]
            if _mergeable(control):
                wait = self._last_update + UPDATE_INTERVAL_S - time.monotonic()
                if wait > 0:
                    self._sending = None
                    await asyncio.sleep(wait)
                    continue
                self._last_update = time.monotonic()
            try:
                await self._send(control)
            except ChannelFull:  # the producer is busy or gone: wait, never drop
                await asyncio.sleep(FULL_RETRY_S)
                continue
            except Exception:  # the layer is away for a moment (Redis): try again shortly
                logger.exception("sending a control message failed")
                await asyncio.sleep(0.5)
                continue
            finally:
                self._sending = None
            if self._items and self._items[0] is control:
                self._items.popleft()


class LocalStream:
    """One session on the local pipeline (see the module docstring)."""

    def __init__(self, listener: Any, session: Any, params: Any) -> None:
        self.listener = listener
        self.layer = listener.channel_layer
        self.params = params
        self.session_id = str(session.id)
        self.group = group_name(session.id)
        self.channel = control_channel(session.id)
        self.started = False
        self.subscription: bus.Subscription | None = None
        self.outbox = ControlOutbox(self._send)
        self.final: asyncio.Future | None = None
        self._listening = False

    async def start(self) -> None:
        self.final = asyncio.get_running_loop().create_future()
        if self.params.start_frame is not None:
            await database_sync_to_async(sessions.keep_start_frame)(self.session_id, self.params.start_frame)
        # Listen before the task can publish anything.
        if bus.uses_redis():
            self.subscription = bus.Subscription(self.session_id, self.producer_message)
            await self.subscription.start()
        else:
            await self.layer.group_add(self.group, self.listener.channel_name)
        self._listening = True
        await database_sync_to_async(dispatch)("videogen.gpu.run_realtime_session", self.session_id)

    async def producer_message(self, message: dict[str, Any]) -> None:
        """A message of the producer (the bus, or the in-process layer), in order."""
        kind = message.get("type")
        if kind == "rt.frame":
            self.listener.upstream_frame(message["jpeg"])
        elif kind == "rt.loading":
            await self.listener.upstream_loading()
        elif kind == "rt.started":
            self.started = True
            self.outbox.start()  # updates sent before the start go out now, merged
            await self.listener.upstream_started({k: v for k, v in message.items() if k != "type"})
        elif kind in FINAL:
            if self.final is not None and not self.final.done():
                self.final.set_result(message)
            if kind == "rt.error":
                await self.listener.upstream_error(message["error"], message)
            else:
                await self.listener.upstream_completed(message)

    async def update(self, update: dict[str, Any]) -> None:
        """Applied from the first block after it reaches the producer (queued until it starts)."""
        self.outbox.put({"op": "update", "update": update})

    async def keepalive(self) -> None:
        if self.started:
            self.outbox.put({"op": "keepalive"})

    async def stop(self) -> None:
        """The socket is going: a waiting session never runs, a running one stops after its block."""
        await self._stop()
        await self.close()

    async def end(self, timeout: float) -> dict[str, Any] | None:
        """Stop, and wait up to ``timeout`` for the producer's last word (its recording); None
        when it never came (its worker died)."""
        await self._stop()
        try:
            return await asyncio.wait_for(asyncio.shield(self.final), timeout) if self.final else None
        except TimeoutError:
            return None
        finally:
            await self.close()

    async def _stop(self) -> None:
        await self.outbox.close()
        try:  # past anything still queued: a stop is never dropped, and never waits behind images
            for _ in range(int(5 / FULL_RETRY_S)):
                try:
                    await self._send({"op": "stop"})
                    break
                except ChannelFull:
                    await asyncio.sleep(FULL_RETRY_S)
        except Exception:  # the layer is away: the producer notices its silent socket by itself
            logger.exception("cannot tell the producer of session %s to stop", self.session_id)
        await database_sync_to_async(sessions.cancel_if_queued)(self.session_id)

    async def close(self) -> None:
        """Stop listening to the producer."""
        await self.outbox.close()
        if not self._listening:
            return
        self._listening = False
        if self.subscription is not None:
            await self.subscription.close()
            self.subscription = None
        else:
            await self.layer.group_discard(self.group, self.listener.channel_name)

    async def _send(self, control: dict[str, Any]) -> None:
        await self.layer.send(self.channel, {"type": "rt.control", **control})
