"""A channel layer for the embedded mode that background threads can use.

Channels' in-memory layer keeps ``asyncio.Queue`` objects bound to the event loop that
waits on them (daphne's). A task on an embedded worker thread runs ``async_to_sync`` in a
loop of its own, and touching those queues from there neither is thread-safe nor wakes the
waiting consumer. This layer remembers the loop its receivers wait in and runs every
operation coming from another loop on that one.
"""

from __future__ import annotations

import asyncio
from typing import Any

from channels.layers import InMemoryChannelLayer


class EmbeddedChannelLayer(InMemoryChannelLayer):
    def __init__(self, **kwargs: Any):
        super().__init__(**kwargs)
        self._home: asyncio.AbstractEventLoop | None = None

    async def _on_home(self, operation, *args: Any) -> Any:
        loop = asyncio.get_running_loop()
        home = self._home
        if home is None or home is loop or home.is_closed() or not home.is_running():
            return await operation(*args)
        return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(operation(*args), home))

    async def receive(self, channel: str) -> dict:
        self._home = asyncio.get_running_loop()
        return await super().receive(channel)

    async def send(self, channel: str, message: dict) -> None:
        await self._on_home(super().send, channel, message)

    async def group_add(self, group: str, channel: str) -> None:
        await self._on_home(super().group_add, group, channel)

    async def group_discard(self, group: str, channel: str) -> None:
        await self._on_home(super().group_discard, group, channel)

    async def group_send(self, group: str, message: dict) -> None:
        await self._on_home(super().group_send, group, message)
