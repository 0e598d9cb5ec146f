"""``/ws/realtime/?backend=fal``: the studio relays to fal's krea-wan-14b socket (our fake on
loopback, tests/fakes/fal_realtime.py) with a token it mints itself."""

from __future__ import annotations

import asyncio
import json
import time

import pytest
from asgiref.sync import sync_to_async

from tests.fakes.media import jpeg_frame
from tests.support.realtime import RealtimeClient, opened, params, session_row, wait_for_final
from videogen.models import SessionStatus

pytestmark = [pytest.mark.modes, pytest.mark.django_db(transaction=True)]

PATH = "/ws/realtime/?backend=fal"


def jpeg() -> bytes:
    return jpeg_frame("a start frame", 0, 32, 32)  # the same bytes each call


async def fal_closed(fake, timeout: float = 10) -> None:
    """Wait (without blocking the loop) until the fake notices the close on its own thread."""
    deadline = time.monotonic() + timeout
    while fake.ws_sessions[-1]["closed"] is None and time.monotonic() < deadline:
        await asyncio.sleep(0.05)






async def test_it_relays_frames_and_updates_to_fal_and_records_the_session(ws_headers, user, fake_fal):
    client = await opened(await sync_to_async(ws_headers)(user), PATH)
    await client.send(params(num_blocks=4, width=100, height=251, colour="blue", webcam_mode=True))
    started = await client.status("started", timeout=30)
    assert (started["width"], started["height"]) == (104, 248)  # multiples of 8 for fal
    await client.until(lambda kind, value: kind == "frame", timeout=30)
    await client.send({"prompt": "a snow owl taking off"})
    await client.send({"seed": 5})
    await client.send({"image": jpeg(), "strength": 0.4, "timestamp": 2.5})
    seen = await client.to_end(timeout=60)
    assert seen.close_code == 1000 and not seen.errors
    assert len(seen.frames) == 9 + 12 * 3
    assert all(frame[:2] == b"\xff\xd8" for frame in seen.frames)

    fal_session = fake_fal.ws_sessions[-1]
    assert fal_session["closed"] == "completed"
    assert fal_session["params"]["width"] == 104 and fal_session["params"]["num_blocks"] == 4
    assert "colour" not in fal_session["messages"][0]  # unknown keys are not passed on
    assert fal_session["prompts"] == ["a snow owl taking off"] and fal_session["seeds"] == [5]
    assert fal_session["images"] == [{"size": len(jpeg()), "strength": 0.4, "timestamp": 2.5}]

    completed = seen.last("completed")
    session = await session_row(completed["session_id"])
    assert session.status == SessionStatus.COMPLETED and session.frames == 45 and session.worker == "fal"
    assert completed["end_reason"] == session.end_reason == "completed"
    assert fal_session["messages"][0]["webcam_mode"] is True  # Krea's webcam mode, passed on
    assert session.video is not None and session.video.parameters["backend"] == "fal"
    texts = [s["prompts"][0]["text"] for s in session.timeline["prompts"]]
    assert texts == ["a red fox in the snow", "a snow owl taking off"]
    assert completed["video"]["id"] == str(session.video_id)


async def test_the_fal_key_and_the_minted_token_never_reach_the_client(ws_headers, user, fake_fal):
    client = await opened(await sync_to_async(ws_headers)(user), PATH)
    await client.send(params(num_blocks=1))
    seen = await client.to_end(timeout=30)
    assert fake_fal.ws_handshakes and fake_fal.ws_handshakes[-1]["status"] == 101
    token = fake_fal.ws_handshakes[-1]["path"].split("fal_jwt_token=")[1]
    everything = json.dumps(seen.texts) + "".join(repr(f) for f in seen.frames[:1])
    assert fake_fal.key not in everything and token not in everything


async def test_a_reset_is_passed_on_to_fal(ws_headers, user, fake_fal):
    client = await opened(await sync_to_async(ws_headers)(user), PATH)
    await client.send(params(num_blocks=3))
    await client.until(lambda kind, value: kind == "frame", timeout=30)
    await client.send({"action": "reset"})
    await client.to_end(timeout=60)
    assert fake_fal.ws_sessions[-1]["resets"] == 1


async def test_fal_dropping_the_connection_ends_the_session_with_an_error_and_keeps_what_streamed(
        ws_headers, user, fake_fal):
    fake_fal.drop_after = 15
    client = await opened(await sync_to_async(ws_headers)(user), PATH)
    await client.send(params(num_blocks=5))
    seen = await client.to_end(timeout=30)
    assert seen.close_code == 1000 and len(seen.frames) == 15
    error = seen.texts[-1]
    assert "closed the stream" in error["error"] and "127.0.0.1" not in error["error"]
    session = await session_row(error["session_id"])
    assert session.status == SessionStatus.FAILED and session.frames == 15
    assert session.video is not None and error["video"]["id"] == str(session.video_id)


async def test_no_frame_for_the_timeout_ends_the_session_with_an_error_frame(ws_headers, user, fake_fal, settings):
    settings.STUDIO_REALTIME_FRAME_TIMEOUT = 1.0
    settings.STUDIO_REALTIME_STATUS_INTERVAL = 0.2
    fake_fal.stall_after = 5
    client = await opened(await sync_to_async(ws_headers)(user), PATH)
    await client.send(params(num_blocks=5))
    seen = await client.to_end(timeout=30)
    assert seen.close_code == 1000 and len(seen.frames) == 5
    assert "no frame for 1 s" in seen.texts[-1]["error"]
    session = await session_row(seen.texts[-1]["session_id"])
    assert session.status == SessionStatus.FAILED and "no frame" in session.error_message
    assert seen.texts[-1]["end_reason"] == session.end_reason == "timeout"
    await fal_closed(fake_fal)
    assert fake_fal.ws_sessions[-1]["closed"] == "client"  # the studio hung up on fal


async def test_an_error_from_fal_mid_stream_is_relayed_as_an_error_frame(ws_headers, user, fake_fal):
    fake_fal.error_after = 10
    client = await opened(await sync_to_async(ws_headers)(user), PATH)
    await client.send(params(num_blocks=3))
    seen = await client.to_end(timeout=30)
    assert seen.close_code == 1000 and len(seen.frames) == 10
    assert seen.texts[-1]["error"] == "fal: the runner failed while generating (internal error)"
    session = await session_row(seen.texts[-1]["session_id"])
    assert session.status == SessionStatus.FAILED and session.error_message.startswith("fal: the runner failed")
    assert seen.texts[-1]["end_reason"] == session.end_reason == "error"


async def test_a_client_that_leaves_closes_fals_socket_and_the_recording_is_kept(ws_headers, user, fake_fal):
    client = await opened(await sync_to_async(ws_headers)(user), PATH)
    await client.send(params(num_blocks=30))
    started = await client.status("started", timeout=30)
    await client.until(lambda kind, value: kind == "frame", timeout=30)
    await client.disconnect()
    session = await wait_for_final(started["session_id"], timeout=20)  # recorded after the socket is gone
    assert session.status == SessionStatus.COMPLETED and 0 < session.frames < 9 + 12 * 29
    assert session.video is not None and session.end_reason == "stopped"
    await fal_closed(fake_fal)
    assert fake_fal.ws_sessions[-1]["closed"] == "client"


async def test_a_wrong_fal_key_is_an_error_frame_that_names_no_secret(ws_headers, user, fake_fal, settings):
    settings.FAL_KEY = "wrong-key-1234567890"
    client = await opened(await sync_to_async(ws_headers)(user), PATH)
    await client.send(params(num_blocks=1))
    seen = await client.to_end(timeout=30)
    error = seen.texts[-1]["error"]
    assert "wrong-key" not in error and "fal" in error.lower()
    assert not fake_fal.ws_handshakes


async def test_without_a_fal_key_the_fal_backend_says_what_is_missing(ws_headers, user, settings):
    settings.FAL_KEY = None
    client = RealtimeClient(PATH, await sync_to_async(ws_headers)(user))
    assert (await client.connect())[0]
    seen = await client.to_end(timeout=10)
    assert "FAL_KEY" in seen.errors[0] and seen.close_code == 1000


async def test_a_fal_session_counts_as_an_unfinished_paid_generation_until_it_ends(ws_headers, user, api, fake_fal,
                                                                                   settings):
    """One cap across every paid door: while a fal session streams, a job waits for it."""
    settings.STUDIO_MAX_UNFINISHED_GENERATIONS = 1
    fake_fal.frame_interval = 0.2  # a slow stream, so the session is still open below
    client = await opened(await sync_to_async(ws_headers)(user), PATH)
    await client.send(params(num_blocks=6))
    await client.status("started", timeout=30)
    job = {"model": "fal-ai/fast-animatediff/text-to-video", "prompt": "while it streams"}
    post = sync_to_async(lambda: api.post("/api/jobs/", job, format="json"))
    assert (await post()).status_code == 429
    await client.send({"action": "stop"})
    await client.to_end(timeout=60)
    assert (await post()).status_code == 202


async def test_fal_sessions_count_against_the_hourly_generation_rate(ws_headers, user, fake_fal, settings):
    settings.STUDIO_THROTTLE_RATES = {**settings.STUDIO_THROTTLE_RATES, "generation": "2/hour"}
    headers = await sync_to_async(ws_headers)(user)
    for _ in range(2):
        client = await opened(headers, PATH)
        await client.send(params(num_blocks=1))
        assert not (await client.to_end(timeout=60)).errors
    client = await opened(headers, PATH)
    await client.send(params(num_blocks=1))
    kind, reply = await client.next(10)
    assert kind == "text" and "STUDIO_THROTTLE_GENERATION" in str(reply["error"]), reply
    assert len(fake_fal.ws_sessions) == 2  # fal never heard of the third
    await client.disconnect()
