"""Events pushed to a user's open pages over the ``/ws/events/`` WebSocket.

Producers (services, Celery tasks, embedded threads) call :func:`notify_user`; every socket
the user has open receives ``{"type": <event>, ...payload}`` as JSON. Sends are deferred to
``transaction.on_commit`` so a rolled-back change never announces itself.
"""

from __future__ import annotations

from typing import Any

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.db import transaction


def user_group(user_id: int) -> str:
    return f"user.{user_id}"


def notify_user(user_id: int, event: str, payload: dict[str, Any] | None = None) -> None:
    """Send ``event`` to every socket of ``user_id`` once the current transaction commits."""
    message = {"type": "studio.event", "event": {"type": event, **(payload or {})}}

    def send() -> None:
        async_to_sync(get_channel_layer().group_send)(user_group(user_id), message)

    transaction.on_commit(send)
