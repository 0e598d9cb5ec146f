"""A channel layer for the embedded mode that background threads can use.

Channels' in-memory layer keeps one ``asyncio.Queue`` per channel, and a queue belongs to
the event loop that waits on it. Several loops use this layer in one process: daphne's
(every consumer), and the loops of background threads (a task's ``async_to_sync``, a
realtime session's producer, which also *receives* its control messages). This layer
remembers the loop each channel's receiver waits in and delivers every message to a channel
on that loop, so a send from any thread wakes its receiver exactly as it does over Redis.
Group membership is shared by all loops under a lock.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from typing import Any

from channels.exceptions import ChannelFull
from channels.layers import InMemoryChannelLayer

PRUNE_AT = 1000  # receivers remembered before those of closed loops are forgotten


class EmbeddedChannelLayer(InMemoryChannelLayer):
    def __init__(self, **kwargs: Any):
        super().__init__(**kwargs)
        self._receivers: dict[str, asyncio.AbstractEventLoop] = {}
        self._lock = threading.RLock()
        self._prune_at = PRUNE_AT

    def _home_of(self, channel: str) -> asyncio.AbstractEventLoop | None:
        loop = self._receivers.get(channel)
        if loop is None or loop.is_closed() or not loop.is_running():
            return None
        return loop

    async def receive(self, channel: str) -> dict:
        with self._lock:
            self._receivers[channel] = asyncio.get_running_loop()
            if len(self._receivers) > self._prune_at:
                for name, loop in list(self._receivers.items()):
                    if loop.is_closed():
                        del self._receivers[name]
                self._prune_at = max(PRUNE_AT, 2 * len(self._receivers))
        return await super().receive(channel)

    async def send(self, channel: str, message: dict) -> None:
        home = self._home_of(channel)
        if home is None or home is asyncio.get_running_loop():
            await super().send(channel, message)
            return
        await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(super().send(channel, message), home))

    async def group_add(self, group: str, channel: str) -> None:
        with self._lock:
            await super().group_add(group, channel)

    async def group_discard(self, group: str, channel: str) -> None:
        with self._lock:
            await super().group_discard(group, channel)

    async def group_send(self, group: str, message: dict) -> None:
        self.require_valid_group_name(group)
        with self._lock:
            self._clean_expired()
            channels = list(self.groups.get(group, {}))
        for channel in channels:
            # As the in-memory layer: a full channel misses group messages.
            with contextlib.suppress(ChannelFull):
                await self.send(channel, message)
