"""Recording a stream the studio relays (a backend whose ``records_at_source`` is False, such
as fal's): what the socket sees of it is what the gallery keeps.

:class:`RecordedStream` sits between the socket and the backend's stream: to the socket it
is the stream (updates go through it, so the timeline records them); to the backend's
stream it is the listener (frames go into the MP4 on their way to the client, its parts to
storage as it grows). When the stream ends it saves the recording and finishes the session,
then tells the socket, with the recording, exactly as a GPU worker does for its own sessions.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from channels.db import database_sync_to_async

from model_control.backends import StreamBackend
from videogen.pipeline.timeline import Timeline
from videogen.realtime import protocol, recording, sessions

logger = logging.getLogger(__name__)


class RecordedStream:
    """A backend's stream, recorded here (see the module docstring)."""

    def __init__(self, backend: StreamBackend, consumer: Any, session: Any, params: protocol.StreamParams) -> None:
        self.consumer = consumer
        self.session = session
        self.params = params
        self.frames = 0
        self.record = recording.Recording(name=str(session.id)[:8], parts=recording.parts_folder(session.id))
        self.timeline = Timeline(params.width, params.height, params.seed, list(params.denoising_steps()))
        self.timeline.record_prompt(0, params.prompt)
        self.limits = backend.limits
        self.recorded: dict[str, Any] | None = None  # once saved
        self._saving: asyncio.Future | None = None
        self.inner = backend.open(self, session, params)

    @property
    def started(self) -> bool:
        return self.inner.started

    # --- the socket's side: a stream
    async def start(self) -> None:
        await self.inner.start()

    async def update(self, update: dict[str, Any]) -> None:
        block = protocol.blocks_started(self.frames, self.limits)
        if "prompt" in update:
            steps = update.get("interp_steps", self.params.interp_steps)
            self.timeline.record_prompt(block, update["prompt"], steps if steps and steps > 1 else None)
        if "seed" in update:
            self.timeline.record_event(block, seed=update["seed"])
        if update.get("reset"):
            self.timeline.record_event(block, reset=True)
        await self.inner.update(update)

    async def keepalive(self) -> None:
        await self.inner.keepalive()

    async def stop(self) -> None:
        await self.inner.stop()

    async def end(self, timeout: float) -> dict[str, Any] | None:
        """Stop, and wait up to ``timeout`` for the recording to be saved; what was saved."""
        await self.inner.stop()
        if self._saving is None:  # the backend's stream ended without a word: save it here
            await self._save("")
        else:
            await asyncio.wait([self._saving], timeout=timeout)
        return self.recorded

    async def close(self) -> None:
        await self.inner.close()

    # --- the backend's side: a listener
    async def upstream_loading(self) -> None:
        await self.consumer.upstream_loading()

    async def upstream_started(self, info: dict[str, Any]) -> None:
        await database_sync_to_async(sessions.claim)(self.session.id, self.session.backend)
        await self.consumer.upstream_started(info)

    def upstream_frame(self, jpeg: bytes) -> None:
        self.frames += 1
        self.record.add_jpeg(jpeg)
        self.consumer.upstream_frame(jpeg)

    async def upstream_error(self, error: str, recorded: dict[str, Any] | None = None) -> None:
        await self.consumer.upstream_error(error, await self._save(error))

    async def upstream_completed(self, recorded: dict[str, Any] | None = None) -> None:
        await self.consumer.upstream_completed(await self._save(""))

    async def _save(self, error: str) -> dict[str, Any]:
        """Save once (the first caller saves, later ones wait for it)."""
        if self._saving is not None:
            await self._saving
            return self.recorded
        self._saving = asyncio.get_running_loop().create_future()
        if self.frames:
            self.timeline.record_block(protocol.blocks_started(self.frames, self.limits) - 1)

        def save():
            content = self.record.finish()
            if self.record.error:
                logger.warning("recording of session %s failed: %s", self.session.id, self.record.error)
            timeline = self.timeline.to_dict() if self.frames else None
            video = sessions.save_recording(self.session.id, content, timeline, self.record.frames)
            sessions.finish(self.session.id, frames=self.frames, timeline=timeline, video=video, error=error,
                            saved=video is not None or not content)
            return video

        started = time.monotonic()
        try:
            video = await database_sync_to_async(save)()
            logger.info("session %s: %d frames, recorded in %.1f s", self.session.id, self.frames,
                        time.monotonic() - started)
            self.recorded = recording.described(video, self.frames) if video else \
                await database_sync_to_async(sessions.recorded)(self.session.id) or recording.described(None, self.frames)
        finally:
            self._saving.set_result(None)
        return self.recorded
