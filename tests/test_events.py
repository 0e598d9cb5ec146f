"""Events reach a user's sockets through the channel layer, from anywhere: the web process,
an embedded background thread or a Celery worker process (in the services pass)."""

from __future__ import annotations

import asyncio
import time

import pytest
from asgiref.sync import sync_to_async
from channels.testing import WebsocketCommunicator
from django.conf import settings

from runtime.events import notify_user
from studio.asgi import application
from tests.support import tasks
from tests.support.processes import celery_worker, worker_env

pytestmark = [pytest.mark.modes, pytest.mark.django_db(transaction=True)]


async def connect(headers) -> WebsocketCommunicator:
    communicator = WebsocketCommunicator(application, "/ws/events/", headers=headers)
    connected, _ = await communicator.connect()
    assert connected
    hello = await communicator.receive_json_from()
    assert hello["type"] == "hello"
    return communicator


async def test_it_pushes_a_users_events_to_their_socket_and_nobody_elses(ws_headers, user, other_user):
    mine = await connect(await sync_to_async(ws_headers)(user))
    theirs = await connect(await sync_to_async(ws_headers)(other_user))
    await sync_to_async(notify_user)(user.pk, "job.progress", {"job": 7, "step": 2, "total": 4})
    assert await mine.receive_json_from(timeout=5) == {"type": "job.progress", "job": 7, "step": 2, "total": 4}
    assert await theirs.receive_nothing(timeout=0.3)
    await mine.disconnect()
    await theirs.disconnect()


async def test_it_answers_ping_and_explains_anything_else(ws_headers):
    socket = await connect(await sync_to_async(ws_headers)())
    await socket.send_json_to({"type": "ping"})
    assert await socket.receive_json_from() == {"type": "pong"}
    await socket.send_json_to({"type": "subscribe"})
    assert (await socket.receive_json_from())["type"] == "error"
    await socket.disconnect()


BAD_FRAMES = {
    "text-not-json": {"text": "hello, is this the studio?"},
    "text-empty": {"text": ""},
    "text-truncated": {"text": '{"type": "ping"'},
    "text-nan": {"text": '{"type": "ping", "n": NaN}'},
    "text-deeply-nested": {"text": "[" * 100_000 + "]" * 100_000},
    "binary": {"bytes": b"\x00\x01\xff"},
    "binary-json": {"bytes": b'{"type": "ping"}'},
}


@pytest.mark.parametrize("frame", BAD_FRAMES.values(), ids=BAD_FRAMES.keys())
async def test_a_frame_that_is_not_json_text_gets_an_error_frame_and_the_socket_stays_open(ws_headers, frame):
    socket = await connect(await sync_to_async(ws_headers)())
    await socket.send_input({"type": "websocket.receive", **frame})
    reply = await socket.receive_json_from(timeout=5)
    assert reply["type"] == "error" and isinstance(reply["error"], str) and reply["error"]
    await socket.send_json_to({"type": "ping"})
    assert await socket.receive_json_from(timeout=5) == {"type": "pong"}
    await socket.disconnect()


@pytest.fixture
def worker():
    """In the services mode a real Celery worker process; in the embedded mode, none."""
    if settings.STUDIO_EMBEDDED:
        yield None
        return
    with celery_worker(worker_env()) as process:
        yield process


@pytest.mark.parametrize("task", [tasks.announce, tasks.announce_gpu], ids=["default", "gpu"])
async def test_a_task_runs_in_the_background_and_its_event_reaches_the_socket(ws_headers, user, worker, task):
    socket = await connect(await sync_to_async(ws_headers)(user))
    started = time.monotonic()
    kwargs = {"delay_s": 0.5} if task is tasks.announce else {}
    await sync_to_async(task.delay)(user.pk, "made-it", **kwargs)
    assert time.monotonic() - started < 0.4, "delay() must not wait for the task"
    event = await socket.receive_json_from(timeout=20)
    assert event["type"] == "test.announce" and event["marker"] == "made-it"
    if settings.STUDIO_EMBEDDED:
        assert event["thread"].startswith("studio-default" if task is tasks.announce else "studio-gpu")
    else:
        assert event["pid"] == worker.pid
    await socket.disconnect()


async def test_notify_user_waits_for_the_transaction_to_commit(ws_headers, user):
    from django.db import transaction

    socket = await connect(await sync_to_async(ws_headers)(user))

    def rolled_back() -> None:
        with transaction.atomic():
            notify_user(user.pk, "never")
            transaction.set_rollback(True)

    await sync_to_async(rolled_back)()
    assert await socket.receive_nothing(timeout=0.3)
    await socket.disconnect()
    await asyncio.sleep(0)


async def test_a_quiet_socket_stays_open_past_the_redis_clients_read_timeout(ws_headers):
    """redis-py 8 gives up on a read after 5 s by default; the channel layer waits on Redis for
    5 s at a time. Both at 5 s made every socket that heard nothing for 5 s crash (1011)."""
    socket = await connect(await sync_to_async(ws_headers)())
    await asyncio.sleep(7)
    await socket.send_json_to({"type": "ping"})
    assert await socket.receive_json_from(timeout=5) == {"type": "pong"}
    await socket.disconnect()
