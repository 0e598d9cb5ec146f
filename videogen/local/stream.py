"""A realtime session on our own pipeline, hosted by a GPU worker (or the embedded gpu thread).

The socket joins the session's group (or its Redis pub/sub bus in the services mode), queues
the Celery task ``videogen.gpu.run_realtime_session`` and talks to it over the channel layer
(``videogen.realtime.link``): updates, keepalives and ``stop`` go to the producer's control
channel; its frames and its end come back to the socket's ``producer_message``. The producer
claims the session, generates, records and finishes it (``videogen.local.producer``).
"""

from __future__ import annotations

import logging
from typing import Any

from channels.db import database_sync_to_async
from channels.exceptions import ChannelFull

from runtime.celery import dispatch
from videogen.realtime import bus, sessions
from videogen.realtime.link import control_channel, group_name

logger = logging.getLogger(__name__)


class LocalStream:
    """One session on the local pipeline (see the module docstring)."""

    def __init__(self, listener: Any, session: Any, params: Any) -> None:
        self.consumer = listener
        self.layer = listener.channel_layer
        self.session_id = str(session.id)
        self.group = group_name(session.id)
        self.channel = control_channel(session.id)
        self.started = False
        self.subscription: bus.Subscription | None = None
        self._pending: list[dict[str, Any]] = []
        self._listening = False

    async def start(self) -> None:
        # Listen before the task can publish anything.
        if bus.uses_redis():
            self.subscription = bus.Subscription(self.session_id, self.consumer.producer_message)
            await self.subscription.start()
        else:
            await self.layer.group_add(self.group, self.consumer.channel_name)
        self._listening = True
        await database_sync_to_async(dispatch)("videogen.gpu.run_realtime_session", self.session_id)

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
        await self._control("stop")
        await database_sync_to_async(sessions.cancel_if_queued)(self.session_id)
        await self.close()

    async def close(self) -> None:
        """Stop listening to the producer."""
        if not self._listening:
            return
        self._listening = False
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
