"""Where a realtime session's frames come from.

Both upstreams drive the same consumer callbacks (``upstream_loading``, ``upstream_started``,
``upstream_frame``, ``upstream_error``, ``upstream_completed``) and own the end of their
session: its recording and its final state.

- :class:`LocalUpstream`: our pipeline on a GPU worker. The socket joins the session's
  group, queues the Celery task ``videogen.gpu.run_realtime_session`` and talks to it over
  the channel layer (videogen/realtime/link.py); the producer records the session.
- :class:`FalUpstream`: fal's krea-wan-14b WebSocket, opened by the studio with a token it
  mints itself (the key never leaves the server); frames and errors relayed both ways,
  the session recorded here.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from typing import Any, Protocol

import msgpack
from asgiref.sync import sync_to_async
from channels.db import database_sync_to_async
from channels.exceptions import ChannelFull
from django.conf import settings

from model_control.errors import ProviderError
from model_control.redaction import hide_hosts, redact
from videogen.realtime import bus, protocol, recording, sessions
from videogen.realtime.link import control_channel, group_name


class Listener(Protocol):
    """What an upstream reports to (the socket's consumer)."""

    channel_layer: Any
    channel_name: str

    async def upstream_loading(self) -> None: ...
    async def upstream_started(self, info: dict[str, Any]) -> None: ...
    def upstream_frame(self, jpeg: bytes) -> None: ...
    async def upstream_error(self, error: str, recorded: dict[str, Any] | None = None) -> None: ...
    async def upstream_completed(self, recorded: dict[str, Any]) -> None: ...
    async def producer_message(self, message: dict[str, Any]) -> None: ...

logger = logging.getLogger(__name__)

FAL_APP = "krea-wan-14b"
FAL_TOKEN_TTL_S = 120
FAL_CONNECT_TIMEOUT_S = 10.0


class LocalUpstream:
    """A session on our own pipeline, hosted by a GPU worker (or the embedded gpu thread)."""

    size_multiple = 16  # VAE (8) x patch (2)
    takes_images = False

    def __init__(self, consumer: Listener) -> None:
        self.consumer = consumer
        self.layer = consumer.channel_layer
        self.started = False
        self.subscription: bus.Subscription | None = None
        self._pending: list[dict[str, Any]] = []

    @staticmethod
    async def gpus() -> int | None:
        """GPU workers that can take sessions now (each streams one at a time): 1 in the
        embedded mode, else what the broker says (a cached answer that says none is checked
        again first); None when it cannot tell (the session then waits in the queue)."""
        if settings.STUDIO_EMBEDDED:
            return 1
        from studio.health import worker_monitor

        def gpu_workers(snapshot) -> int | None:
            if snapshot is None or snapshot.error:
                return None
            return sum(1 for queues in snapshot.queues.values() if "gpu" in queues)

        monitor = worker_monitor()
        seen = gpu_workers(await sync_to_async(monitor.snapshot, thread_sensitive=False)(
            wait=settings.HEALTH_TIMEOUT))
        if seen == 0:
            seen = gpu_workers(await sync_to_async(monitor.fresh, thread_sensitive=False)(
                2 * settings.HEALTH_TIMEOUT))
        return seen

    async def start(self, session, params: protocol.StreamParams) -> None:
        from videogen.tasks import run_realtime_session

        self.session_id = str(session.id)
        self.group = group_name(session.id)
        self.channel = control_channel(session.id)
        # Listen before the task can publish anything.
        if bus.uses_redis():
            self.subscription = bus.Subscription(session.id, self.consumer.producer_message)
            await self.subscription.start()
        else:
            await self.layer.group_add(self.group, self.consumer.channel_name)
        await database_sync_to_async(lambda: run_realtime_session.delay(self.session_id))()

    async def on_started(self) -> None:
        self.started = True
        for update in self._pending:
            await self._control("update", update=update)
        self._pending = []

    async def update(self, update: dict[str, Any]) -> None:
        if not self.started:
            self._pending.append(update)  # applied from the first block after the start
            return
        await self._control("update", update=update)

    async def keepalive(self) -> None:
        if self.started:
            await self._control("keepalive")

    async def stop(self) -> None:
        """The socket is going: a waiting session never runs, a running one stops after its block."""
        if not hasattr(self, "group"):
            return
        await self._control("stop")
        await database_sync_to_async(sessions.cancel_if_queued)(self.session_id)
        await self.close()

    async def close(self) -> None:
        """Stop listening to the producer."""
        if not hasattr(self, "group"):
            return
        if self.subscription is not None:
            await self.subscription.close()
            self.subscription = None
        else:
            await self.layer.group_discard(self.group, self.consumer.channel_name)

    async def _control(self, op: str, **fields: Any) -> None:
        try:
            await self.layer.send(self.channel, {"type": "rt.control", "op": op, **fields})
        except ChannelFull:  # the producer is gone; the heartbeat check ends the session
            logger.warning("control channel of session %s is full", self.session_id)


class FalUpstream:
    """A session relayed to fal's realtime Krea WAN-14B endpoint."""

    size_multiple = 8
    takes_images = True

    def __init__(self, consumer: Listener) -> None:
        self.consumer = consumer
        self.started = False
        self._ws = None
        self._task: asyncio.Task | None = None
        self._pending: list[dict[str, Any]] = []
        self._closing = False

    @staticmethod
    async def gpus() -> int | None:
        return None  # fal's capacity is fal's business

    async def start(self, session, params: protocol.StreamParams) -> None:
        self.session = session
        self.params = params
        self.frames = 0
        self.record = recording.Recording(name=str(session.id)[:8])
        from videogen.pipeline.timeline import Timeline

        self.timeline = Timeline(params.width, params.height, params.seed, list(params.denoising_steps()))
        self.timeline.record_prompt(0, params.prompt)
        self._task = asyncio.ensure_future(self._run())

    async def update(self, update: dict[str, Any]) -> None:
        block = protocol.blocks_started(self.frames)
        if "prompt" in update:
            self.timeline.record_prompt(block, update["prompt"])
        if "seed" in update:
            self.timeline.record_event(block, seed=update["seed"])
        if update.get("reset"):
            self.timeline.record_event(block, reset=True)
        if self._ws is None:
            self._pending.append(update)
            return
        await self._ws.send(msgpack.packb(protocol.update_wire(update)))

    async def keepalive(self) -> None:
        pass  # fal's socket is held open by this process

    async def close(self) -> None:
        pass  # the relay task ends with fal's socket

    async def stop(self) -> None:
        """The client left: close fal's socket, then keep what streamed."""
        self._closing = True
        if self._ws is not None:
            await self._ws.close()
        if self._task is not None and self._task is not asyncio.current_task():
            await asyncio.wait([self._task], timeout=8)

    async def _connect(self):
        import websockets

        from model_control.backends import fal_client

        token = await sync_to_async(lambda: fal_client().mint_token([FAL_APP], FAL_TOKEN_TTL_S),
                                    thread_sensitive=False)()
        url = f"{settings.FAL_REALTIME_URL}/fal-ai/{FAL_APP}/ws?fal_jwt_token={token}"
        return await websockets.connect(url, max_size=protocol.MAX_MESSAGE_BYTES, open_timeout=FAL_CONNECT_TIMEOUT_S,
                                        close_timeout=2, ping_interval=20)

    async def _run(self) -> None:
        error = ""
        try:
            ws = await self._connect()
            try:
                ready = await asyncio.wait_for(ws.recv(), FAL_CONNECT_TIMEOUT_S)
                if not isinstance(ready, str) or json.loads(ready).get("status") != "ready":
                    raise FalRelayError("fal's realtime endpoint did not say it was ready")
                await ws.send(msgpack.packb(self.params.wire()))
                self._ws = ws
                for update in self._pending:
                    await ws.send(msgpack.packb(protocol.update_wire(update)))
                self._pending = []
                await database_sync_to_async(sessions.claim)(self.session.id, "fal")
                self.started = True
                await self.consumer.upstream_started({
                    "width": self.params.width, "height": self.params.height, "seed": self.params.seed,
                    "num_blocks": self.params.num_blocks, "num_denoising_steps": self.params.num_denoising_steps,
                    "model": self.session.model_id})
                error = await self._relay(ws)
            finally:
                self._ws = None
                await ws.close()
        except ProviderError as exc:
            error = exc.message
        except FalRelayError as exc:
            error = str(exc)
        except (OSError, TimeoutError) as exc:
            error = f"cannot reach fal's realtime endpoint ({type(exc).__name__})"
        except Exception as exc:  # websockets' handshake and protocol errors
            logger.warning("fal realtime relay failed: %s", redact(repr(exc)))
            error = f"fal's realtime endpoint refused or broke the stream ({type(exc).__name__})"
        await self._finish(redact(hide_hosts(error)) if error else "")

    async def _relay(self, ws) -> str:
        """Frames to the client until fal completes; returns an error message or ''."""
        from websockets.exceptions import ConnectionClosed

        try:
            async for message in ws:
                if isinstance(message, bytes):
                    self.frames += 1
                    self.record.add_jpeg(message)
                    self.consumer.upstream_frame(message)
                    continue
                try:
                    data = json.loads(message)
                except ValueError:
                    continue
                if not isinstance(data, dict):
                    continue
                if data.get("error"):
                    return f"fal: {data['error']}"
                if data.get("status") == "completed":
                    return ""
            code = ws.close_code
        except ConnectionClosed as exc:
            code = exc.rcvd.code if exc.rcvd else 1006
        if self._closing:
            return ""
        return f"fal's realtime endpoint closed the stream (code {code}) before it completed"

    async def _finish(self, error: str) -> None:
        if self.frames:
            self.timeline.record_block(protocol.blocks_started(self.frames) - 1)

        def save():
            content = self.record.finish()
            if self.record.error:
                logger.warning("recording of fal session %s failed: %s", self.session.id, self.record.error)
            timeline = self.timeline.to_dict() if self.frames else None
            video = recording.save(self.session, content, timeline, self.record.frames)
            sessions.finish(self.session.id, frames=self.frames, timeline=timeline, video=video, error=error)
            return video

        started = time.monotonic()
        video = await database_sync_to_async(save)()
        logger.info("fal session %s: %d frames, recorded in %.1f s", self.session.id, self.frames,
                    time.monotonic() - started)
        recorded = recording.described(video, self.frames)
        if error:
            await self.consumer.upstream_error(error, recorded)
        else:
            await self.consumer.upstream_completed(recorded)


class FalRelayError(Exception):
    """fal's endpoint said something the relay cannot go on from."""


UPSTREAMS = {"local": LocalUpstream, "fal": FalUpstream}
