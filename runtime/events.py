"""Events pushed to a user's open pages over the ``/ws/events/`` WebSocket.

Producers (services, Celery tasks, embedded threads) call :func:`notify_user` (or
:func:`notify_group` for a group of their own, such as one job's waiters); every socket in
the group receives ``{"type": <event>, ...payload}`` as JSON. Sends are deferred to
``transaction.on_commit`` so a rolled-back change never announces itself.

Every event of a process goes out from one long-lived thread with one event loop (so one
channel-layer connection, kept), in the order the events were committed. Events are news,
not the truth: a page that reconnects is told the current state first
(``runtime.consumers.CONNECT_EVENTS``), and a send that fails (Redis down) is logged, not
retried.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from typing import Any

from channels.layers import get_channel_layer
from django.db import transaction

logger = logging.getLogger(__name__)


def user_group(user_id: int) -> str:
    return f"user.{user_id}"


class EventSender:
    """One thread, one event loop: sends group messages in the order they were handed in."""

    def __init__(self) -> None:
        self._loop = asyncio.new_event_loop()
        self._queue: asyncio.Queue | None = None
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name="studio-events", daemon=True)
        self._thread.start()
        self._ready.wait()

    def send(self, group: str, message: dict[str, Any]) -> None:
        self._loop.call_soon_threadsafe(self._queue.put_nowait, (group, message))

    def flush(self, timeout: float = 5.0) -> bool:
        """Wait until everything handed in so far was sent (tests, shutdown)."""
        done = threading.Event()
        self._loop.call_soon_threadsafe(self._queue.put_nowait, (None, done))
        return done.wait(timeout)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._queue = asyncio.Queue()
        self._ready.set()
        self._loop.run_until_complete(self._send_forever())

    async def _send_forever(self) -> None:
        while True:
            group, message = await self._queue.get()
            if group is None:
                message.set()
                continue
            try:
                await get_channel_layer().group_send(group, message)
            except Exception as exc:  # noqa: BLE001 - an event lost is logged; the row is the truth
                logger.warning("could not send an event to %s: %s: %s", group, type(exc).__name__, exc)


_sender: EventSender | None = None
_sender_lock = threading.Lock()


def sender() -> EventSender:
    """This process's event sender, started on first use."""
    global _sender
    with _sender_lock:
        if _sender is None:
            _sender = EventSender()
        return _sender


def notify_group(group: str, event: str, payload: dict[str, Any] | None = None) -> None:
    """Send ``event`` to every socket (or waiter) in ``group`` once the transaction commits."""
    message = {"type": "studio.event", "event": {"type": event, **(payload or {})}}
    transaction.on_commit(lambda: sender().send(group, message))


def notify_user(user_id: int, event: str, payload: dict[str, Any] | None = None) -> None:
    """Send ``event`` to every socket of ``user_id`` once the current transaction commits."""
    notify_group(user_group(user_id), event, payload)
