"""``/ws/realtime/`` on the local pipeline, step by step, as a fal client would use it.

Runs in both passes: in the embedded one the pipeline runs on the web process's gpu thread
and frames cross the in-process layer; in the services one a real ``celery worker -Q gpu``
hosts it and frames cross Redis."""

from __future__ import annotations

import asyncio
import io

import av
import msgpack
import pytest
from asgiref.sync import sync_to_async
from PIL import Image

from tests.support.realtime import (
    frame_difference,
    opened,
    params,
    picture,
    session_row,
    wait_for_final,
)
from videogen.models import RealtimeSession, SessionStatus, Video

pytestmark = [pytest.mark.modes, pytest.mark.django_db(transaction=True)]

FIRST, LATER = 6, 12  # frames of a stream's first block (Krea decodes 9, drops 3), of every later one
FULL = {n: FIRST + LATER * (n - 1) for n in range(1, 1001)}  # frames of a stream of n blocks






async def test_it_speaks_fals_protocol_step_by_step_and_records_the_session(ws_headers, user, local):
    client = await opened(await sync_to_async(ws_headers)(user))
    await client.send(params(num_blocks=2, seed=11))
    started = await client.status("started", timeout=90)
    assert started["width"] == 64 and started["height"] == 64 and started["seed"] == 11
    assert started["num_blocks"] == 2 and started["num_denoising_steps"] == 4
    assert started["backend"] == "local" and started["random_weights"] is True
    seen = await client.to_end()
    assert seen.close_code == 1000
    assert len(seen.frames) == FULL[2]
    for frame in seen.frames:  # every frame is one binary message of raw JPEG bytes
        with Image.open(io.BytesIO(frame)) as image:
            assert image.format == "JPEG" and image.size == (64, 64)
    completed = seen.texts[-1]
    assert completed["status"] == "completed" and completed["session_id"] == started["session_id"]
    assert completed["end_reason"] == "completed"
    assert completed["frames"] == FULL[2] and completed["dropped"] == 0 and completed["generated"] == FULL[2]
    assert seen.statuses.index("started") < seen.statuses.index("completed")
    assert not seen.errors

    session = await session_row(started["session_id"])
    assert session.status == SessionStatus.COMPLETED and session.frames == FULL[2] and session.dropped == 0
    assert session.video is not None and completed["video"]["id"] == str(session.video_id)
    assert completed["video"]["url"] == f"/api/videos/{session.video_id}/file"
    settings = session.timeline["settings"]
    assert settings["resolution"] == {"height": 64, "width": 64} and settings["seed"] == 11
    assert settings["denoisingSteps"] == [1000, 750, 500, 250]
    assert session.timeline["prompts"][0]["prompts"] == [{"text": "a red fox in the snow", "weight": 1.0}]


async def test_the_recording_is_an_mp4_at_16_fps_in_the_owners_gallery(ws_headers, user, api, local):
    client = await opened(await sync_to_async(ws_headers)(user))
    await client.send(params(num_blocks=3))
    seen = await client.to_end(timeout=120)
    video_id = seen.texts[-1]["video"]["id"]
    listed = await sync_to_async(api.get)("/api/videos/")
    assert video_id in [v["id"] for v in listed.json()["results"]]
    response = await sync_to_async(api.get)(f"/api/videos/{video_id}/file")
    assert response.status_code == 200 and response["Content-Type"] == "video/mp4"
    content = b"".join(response.streaming_content)
    with av.open(io.BytesIO(content)) as container:
        stream = container.streams.video[0]
        assert stream.average_rate == 16
        decoded = list(container.decode(stream))
    assert len(decoded) == FULL[3] and (decoded[0].width, decoded[0].height) == (64, 64)
    video = await sync_to_async(Video.objects.get)(pk=video_id)
    assert video.parameters["kind"] == "realtime" and video.parameters["backend"] == "local"
    assert video.parameters["timeline"]["version"] == "2.0" and video.thumbnail


async def test_with_fmt_msgpack_each_frame_is_a_map_of_image_and_request_id(ws_headers, user, local):
    client = await opened(await sync_to_async(ws_headers)(user), "/ws/realtime/?backend=local&fmt=msgpack")
    await client.send(params(num_blocks=1))
    seen = await client.to_end(timeout=90)
    session_id = seen.last("completed")["session_id"]
    assert len(seen.frames) == FULL[1]
    for frame in seen.frames:
        message = msgpack.unpackb(frame)
        assert message["request_id"] == session_id and message["image"][:2] == b"\xff\xd8"


async def test_prompt_and_seed_updates_mid_stream_reach_the_pipeline_and_the_timeline(ws_headers, user, local):
    client = await opened(await sync_to_async(ws_headers)(user))
    await client.send(params(num_blocks=50))
    await client.until(lambda kind, value: kind == "frame", timeout=90)
    await client.send({"prompt": "a snow owl taking off"})
    await client.send({"seed": 99})
    seen = await client.to_end(timeout=180)
    assert not seen.errors and seen.close_code == 1000
    session = await session_row(seen.last("completed")["session_id"])
    spans = session.timeline["prompts"]
    assert [s["prompts"][0]["text"] for s in spans] == ["a red fox in the snow", "a snow owl taking off"]
    assert spans[1]["startTime"] >= 1 and spans[1]["transitionSteps"] == 4  # blended over 4 blocks
    assert [e for e in session.timeline["events"] if "seed" in e][0]["seed"] == 99
    assert session.frames == FULL[50]


async def test_a_reset_starts_a_fresh_stream_whose_first_block_has_6_frames(ws_headers, user, local):
    client = await opened(await sync_to_async(ws_headers)(user))
    await client.send(params(num_blocks=50))
    await client.until(lambda kind, value: kind == "frame", timeout=90)
    await client.send({"action": "reset"})
    seen = await client.to_end(timeout=180)
    session = await session_row(seen.last("completed")["session_id"])
    resets = [e for e in session.timeline["events"] if e.get("reset")]
    assert len(resets) == 1 and 1 <= resets[0]["block"] < 50
    assert session.frames == FIRST + FIRST + LATER * 48  # two "first" blocks
    assert len(seen.frames) + seen.last("completed")["dropped"] == session.frames


BAD = {
    "text frame": {"text": '{"prompt": "a fox"}'},
    "not msgpack": {"bytes": b"\xc1\xc1\xc1"},
    "a msgpack list": {"bytes": msgpack.packb(["a fox"])},
    "no prompt": {"bytes": msgpack.packb({"width": 64})},
    "empty prompt": {"bytes": msgpack.packb({"prompt": "   "})},
    "prompt too long": {"bytes": msgpack.packb({"prompt": "x" * 2001})},
    "prompt not text": {"bytes": msgpack.packb({"prompt": 12})},
    "zero blocks": {"bytes": msgpack.packb({"prompt": "a fox", "num_blocks": 0})},
    "past the most blocks": {"bytes": msgpack.packb({"prompt": "a fox", "num_blocks": 1001})},
    "9 steps": {"bytes": msgpack.packb({"prompt": "a fox", "num_denoising_steps": 9})},
    "fractional steps": {"bytes": msgpack.packb({"prompt": "a fox", "num_denoising_steps": 2.5})},
    "negative seed": {"bytes": msgpack.packb({"prompt": "a fox", "seed": -1})},
    "seed past 2^24": {"bytes": msgpack.packb({"prompt": "a fox", "seed": 2**24 + 1})},
    "width as text": {"bytes": msgpack.packb({"prompt": "a fox", "width": "wide"})},
    "height NaN": {"bytes": msgpack.packb({"prompt": "a fox", "height": float("nan")})},
    "strength 2": {"bytes": msgpack.packb({"prompt": "a fox", "strength": 2})},
    "start_frame not an image": {"bytes": msgpack.packb({"prompt": "a fox", "start_frame": b"GIF89a"})},
    "start_frame as a path": {"bytes": msgpack.packb({"prompt": "a fox", "start_frame": "/tmp/uploads/a.jpg"})},
    "input_video (a path on Krea's server)": {"bytes": msgpack.packb({"prompt": "a fox", "input_video": "/v.mp4"})},
    "webcam_mode not a flag": {"bytes": msgpack.packb({"prompt": "a fox", "webcam_mode": "yes"})},
    "webcam_fps 0": {"bytes": msgpack.packb({"prompt": "a fox", "webcam_fps": 0})},
    "interp_steps 0": {"bytes": msgpack.packb({"prompt": "a fox", "interp_steps": 0})},
    "kv_cache_num_frames 22": {"bytes": msgpack.packb({"prompt": "a fox", "kv_cache_num_frames": 22})},
    "keep_first_frame 1": {"bytes": msgpack.packb({"prompt": "a fox", "keep_first_frame": 1})},
    # PostgreSQL refuses NUL in the session's row: an error frame naming the field, not a 1011.
    "prompt with NUL": {"bytes": msgpack.packb({"prompt": "a fox\x00 in snow"})},
}


@pytest.mark.parametrize("message", BAD.values(), ids=BAD.keys())
async def test_invalid_parameters_get_krea_s_error_list_and_the_socket_waits_for_a_corrected_one(
        ws_headers, user, local, message):
    client = await opened(await sync_to_async(ws_headers)(user))
    await client.send_raw(text=message.get("text"), data=message.get("bytes"))
    kind, reply = await client.next(10)
    assert kind == "text" and isinstance(reply["error"], list) and reply["error"], reply
    for entry in reply["error"]:  # pydantic's errors(), as Krea's server sends them
        assert isinstance(entry["type"], str) and isinstance(entry["loc"], list) and entry["msg"]
    assert isinstance(reply["message"], str) and reply["message"]
    assert await client.communicator.receive_nothing(timeout=0.2)  # still open, nothing started
    await client.send(params(num_blocks=1))
    assert (await client.status("started", timeout=90))["num_blocks"] == 1
    await client.to_end(timeout=90)


async def test_every_wrong_field_is_named_at_once(ws_headers, user, local):
    client = await opened(await sync_to_async(ws_headers)(user))
    await client.send({"width": "wide", "num_blocks": 0, "strength": 3})
    kind, reply = await client.next(10)
    assert sorted(entry["loc"][0] for entry in reply["error"]) == ["num_blocks", "prompt", "strength", "width"]
    assert [e["type"] for e in reply["error"] if e["loc"] == ["prompt"]] == ["missing"]
    await client.disconnect()


async def test_krea_s_parameters_are_taken_with_their_defaults(ws_headers, user, local):
    """What Krea's release server's GenerateParams knows, as the seed app sends it."""
    client = await opened(await sync_to_async(ws_headers)(user))
    await client.send({"prompt": "a fox", "width": 64, "height": 64, "num_blocks": 1, "num_denoising_steps": 3,
                       "timestep_shift": 5.0, "kv_cache_num_frames": 3, "interp_steps": 2, "keep_first_frame": True,
                       "webcam_fps": 12, "context_noise": 0.0, "interp_blocks": -1, "block_on_frame": False,
                       "request_id": "abc", "strength": 1.0, "input_video": None, "colour": "blue"})
    started = await client.status("started", timeout=90)
    assert started["num_denoising_steps"] == 3 and started["interp_steps"] == 2 and started["ignored"] == []
    seen = await client.to_end(timeout=90)
    session = await session_row(started["session_id"])
    assert session.params["keep_first_frame"] is True and session.params["webcam_fps"] == 12
    assert len(seen.frames) == FULL[1] and seen.last("completed")["end_reason"] == "completed"


async def test_num_blocks_may_be_krea_s_1000_bounded_by_the_session_time_limit(ws_headers, user, local, settings):
    settings.STUDIO_REALTIME_SESSION_MAX_S = 2
    client = await opened(await sync_to_async(ws_headers)(user))
    await client.send({"prompt": "a fox", "width": 64, "height": 64, "num_blocks": 1000})
    started = await client.status("started", timeout=90)
    assert started["num_blocks"] == 1000 and started["time_limit_s"] == 2
    seen = await client.to_end(timeout=60)
    completed = seen.last("completed")
    assert completed["end_reason"] == "timeout" and "STUDIO_REALTIME_SESSION_MAX_S" in completed["message"]
    assert completed["video"] is not None and not seen.errors
    session = await wait_for_final(started["session_id"])
    assert session.end_reason == "timeout" and FIRST <= session.frames < FULL[1000]


async def test_sizes_are_normalized_to_the_pipelines_multiples_of_16_and_unknown_keys_ignored(
        ws_headers, user, local):
    client = await opened(await sync_to_async(ws_headers)(user))
    await client.send({"prompt": "a fox", "width": 71, "height": 10, "num_blocks": 1, "colour": "blue",
                       "kv_cache_num_frames": 3})
    started = await client.status("started", timeout=90)
    assert (started["width"], started["height"]) == (64, 64)  # 71 -> 64 (nearest), 10 -> 64 (minimum)
    seen = await client.to_end(timeout=90)
    with Image.open(io.BytesIO(seen.frames[0])) as image:
        assert image.size == (64, 64)


async def test_a_seed_is_chosen_when_absent_and_told_to_the_client(ws_headers, user, local):
    client = await opened(await sync_to_async(ws_headers)(user))
    await client.send({"prompt": "a fox", "width": 64, "height": 64, "num_blocks": 1})
    started = await client.status("started", timeout=90)
    assert 0 <= started["seed"] <= 2**24
    session = await session_row(started["session_id"])
    assert session.params["seed"] == started["seed"]
    await client.to_end(timeout=90)


async def test_bad_updates_mid_stream_get_an_error_frame_and_the_stream_goes_on(ws_headers, user, local):
    client = await opened(await sync_to_async(ws_headers)(user))
    await client.send(params(num_blocks=30))
    await client.until(lambda kind, value: kind == "frame", timeout=90)
    for bad in ({"action": "explode"}, {"colour": "blue"}, {"seed": "x"}, {"prompt": ""}, {"prompt": "a\x00b"},
                {"image": b"\xff\xd8\xff\xe0 not really"}, {"image": picture("red", width=64, height=64)},
                {"interp_steps": 3}):
        await client.send(bad)
    await client.send_raw(text="hello")
    seen = await client.to_end(timeout=180)
    assert len(seen.errors) == 9
    messages = [t["message"] for t in seen.texts if "error" in t]
    assert any("webcam_mode" in m for m in messages) and any("action" in m for m in messages)
    assert any("NUL" in m for m in messages)
    assert seen.last("completed")["generated"] == FULL[30]


async def test_a_stop_message_ends_the_stream_with_its_recording(ws_headers, user, local):
    client = await opened(await sync_to_async(ws_headers)(user))
    await client.send(params(num_blocks=1000))
    await client.until(lambda kind, value: kind == "frame", timeout=90)
    await client.send({"action": "stop"})
    seen = await client.to_end(timeout=60)
    completed = seen.last("completed")
    assert completed["end_reason"] == "stopped" and completed["video"] is not None and seen.close_code == 1000
    session = await wait_for_final(completed["session_id"])
    assert session.status == SessionStatus.COMPLETED and session.end_reason == "stopped"
    assert FIRST <= session.frames < FULL[1000]


async def test_ten_thousand_prompt_updates_merge_and_stop_still_gets_through(ws_headers, user, local):
    """Issue 16: a flood of updates filled the control channel ("control channel full") and
    took stop and keepalives with it. Updates now merge (the latest wins)."""
    client = await opened(await sync_to_async(ws_headers)(user))
    await client.send(params(num_blocks=1000))
    await client.until(lambda kind, value: kind == "frame", timeout=90)
    for i in range(10_000):
        await client.send({"prompt": f"a fox, take {i}"})
    await client.send({"colour": "blue"})  # answered once the socket has read every update before it
    await client.error(timeout=60)
    await asyncio.sleep(1)  # the last merged update on its way to the producer
    frames_before = len(client.seen.frames)  # then three more blocks
    await client.until(lambda kind, value: kind == "frame" and len(client.seen.frames) > frames_before + 3 * LATER,
                       timeout=60)
    await client.send({"action": "stop"})
    seen = await client.to_end(timeout=60)
    assert len(seen.errors) == 1 and seen.last("completed")["end_reason"] == "stopped"
    session = await session_row(seen.last("completed")["session_id"])
    texts = [p["prompts"][0]["text"] for p in session.timeline["prompts"]]
    assert texts[-1] == "a fox, take 9999"


async def test_a_client_that_leaves_mid_stream_stops_the_gpu_work_and_keeps_the_recording(
        ws_headers, user, local):
    client = await opened(await sync_to_async(ws_headers)(user))
    await client.send({"prompt": "a fox", "width": 128, "height": 128, "num_blocks": 50})
    started = await client.status("started", timeout=90)
    await client.until(lambda kind, value: kind == "frame", timeout=60)
    await client.disconnect()
    session = await wait_for_final(started["session_id"])
    assert session.status == SessionStatus.COMPLETED and session.end_reason == "stopped"
    assert FIRST <= session.frames < FULL[50], "the pipeline ran to the end after the client left"
    assert session.video is not None and session.video.parameters["frames"] == session.frames


async def test_a_second_session_waits_for_the_gpu_with_its_queue_position(ws_headers, user, other_user, local):
    first = await opened(await sync_to_async(ws_headers)(user))
    await first.send({"prompt": "a fox", "width": 128, "height": 128, "num_blocks": 50})
    await first.status("started", timeout=90)
    second = await opened(await sync_to_async(ws_headers)(other_user))
    await second.send(params(num_blocks=1))
    queued = await second.status("queued", timeout=10)
    assert queued["position"] == 1
    await first.disconnect()  # the GPU frees up after the block in progress
    started = await second.status("started", timeout=60)
    assert started["num_blocks"] == 1
    assert "queued" in second.seen.statuses[: second.seen.statuses.index("started")]
    await second.to_end(timeout=60)


async def test_a_user_has_at_most_the_configured_number_of_open_sessions(ws_headers, user, local, settings):
    settings.STUDIO_REALTIME_SESSIONS_PER_USER = 1
    first = await opened(await sync_to_async(ws_headers)(user))
    await first.send({"prompt": "a fox", "width": 128, "height": 128, "num_blocks": 20})
    await first.status("started", timeout=90)
    second = await opened(await sync_to_async(ws_headers)(user))
    await second.send(params(num_blocks=1))
    error = await second.error()
    assert "STUDIO_REALTIME_SESSIONS_PER_USER" in error
    await first.disconnect()
    await wait_for_final(await sync_to_async(lambda: str(RealtimeSession.objects.get(owner=user).id))())
    await second.send(params(num_blocks=1))  # the same socket, once the first session is over
    await second.status("started", timeout=60)
    await second.to_end(timeout=60)


async def test_the_session_api_lists_the_users_own_sessions(ws_headers, user, other_user, api, local):
    client = await opened(await sync_to_async(ws_headers)(user))
    await client.send(params(num_blocks=1))
    seen = await client.to_end(timeout=90)
    session_id = seen.last("completed")["session_id"]
    listed = (await sync_to_async(api.get)("/api/realtime/sessions/")).json()["results"]
    assert [s["id"] for s in listed] == [session_id]
    assert listed[0]["status"] == "completed" and listed[0]["frames"] == FULL[1]
    assert listed[0]["end_reason"] == "completed"
    from rest_framework.test import APIClient

    other = APIClient()
    await sync_to_async(other.force_authenticate)(other_user)
    assert (await sync_to_async(other.get)(f"/api/realtime/sessions/{session_id}/")).status_code == 404


async def test_past_the_queue_limit_a_new_session_is_refused_with_a_reason(
        ws_headers, user, other_user, django_user_model, local, settings):
    settings.STUDIO_REALTIME_MAX_QUEUED = 1
    third_user = await sync_to_async(django_user_model.objects.create_user)("carol", password="carol-42-pass")
    first = await opened(await sync_to_async(ws_headers)(user))
    await first.send({"prompt": "a fox", "width": 128, "height": 128, "num_blocks": 50})
    streaming = await first.status("started", timeout=90)
    second = await opened(await sync_to_async(ws_headers)(other_user))
    await second.send(params(num_blocks=1))
    assert (await second.status("queued", timeout=10))["position"] == 1
    third = await opened(await sync_to_async(ws_headers)(third_user))
    await third.send(params(num_blocks=1))
    assert "STUDIO_REALTIME_MAX_QUEUED" in await third.error()
    await third.disconnect()
    await first.disconnect()  # the GPU frees up; the waiting session runs, then all is quiet
    await second.to_end(timeout=60)
    await wait_for_final(streaming["session_id"])


async def first_frame_of(headers, message: dict, images: list[bytes] = ()) -> tuple[bytes, dict]:
    """The first frame of a session at the default size (832x480), and how it ended."""
    client = await opened(headers)
    await client.send({"prompt": "a red fox in the snow", "num_blocks": 1, "seed": 5, **message})
    for image in images:  # sent at once: they wait for the stream's start, then feed its first block
        await client.send({"image": image, "strength": message.get("strength", 0.6), "timestamp": 0})
    seen = await client.to_end(timeout=120)
    assert not seen.errors and seen.frames, seen.texts[-3:]
    assert seen.last("started")["width"] == 832 and seen.last("completed")["end_reason"] == "completed"
    return seen.frames[0], seen.last("started")


async def test_the_start_frame_shapes_the_stream_through_the_socket(ws_headers, user, local):
    """Same seed, two start frames: two different streams (tiny pipeline, the default size,
    no timeout)."""
    headers = await sync_to_async(ws_headers)(user)
    red, started = await first_frame_of(headers, {"start_frame": picture("red")})
    assert started["start_frame"] is True
    blue, _ = await first_frame_of(headers, {"start_frame": picture("blue")})
    assert frame_difference(red, blue) > 0.3


async def test_webcam_images_shape_the_stream_through_the_socket(ws_headers, user, local):
    """Krea's webcam mode: image messages (base64 text, as Krea's demo page sends them, or
    bytes) feed the stream; the same seed with other pictures is another stream."""
    import base64

    headers = await sync_to_async(ws_headers)(user)
    # the stream's strength from the start: an image's own strength applies from the block after it
    black, started = await first_frame_of(headers, {"webcam_mode": True, "webcam_fps": 10, "strength": 0.3},
                                          [base64.b64encode(picture("black", i)).decode() for i in range(9)])
    assert started["webcam_mode"] is True and started["strength"] == 0.3
    white, _ = await first_frame_of(headers, {"webcam_mode": True, "strength": 0.3},
                                    [picture("white", i) for i in range(9)])
    assert frame_difference(black, white) > 0.6


async def test_images_need_webcam_mode(ws_headers, user, local):
    client = await opened(await sync_to_async(ws_headers)(user))
    await client.send(params(num_blocks=2))
    await client.send({"image": picture("red", width=64, height=64), "strength": 0.5})
    reply = await client.error()
    assert reply[0]["loc"] == ["image"] and "webcam_mode" in reply[0]["msg"]
    seen = await client.to_end(timeout=90)
    assert seen.last("completed")["generated"] == FULL[2]


async def test_a_queued_session_hears_its_wait_and_the_live_workers_and_ends_after_the_queue_timeout(
        ws_headers, user, other_user, local, settings, monkeypatch):
    """Issue 16: a session queued while no GPU worker was alive heard nothing for 71 s."""
    from videogen.local.backend import LocalBackend
    from videogen.realtime import consumer

    settings.STUDIO_REALTIME_QUEUE_TIMEOUT_S = 3
    settings.STUDIO_REALTIME_STATUS_INTERVAL = 0.2
    monkeypatch.setattr(consumer, "QUEUE_STATUS_S", 0.5)
    first = await opened(await sync_to_async(ws_headers)(user))
    await first.send({"prompt": "a fox", "width": 128, "height": 128, "num_blocks": 1000})
    first_id = (await first.status("started", timeout=90))["session_id"]
    answers = iter([1])  # a worker (busy with the first session) when the second comes, then none alive

    async def capacity(self):
        return next(answers, 0)

    monkeypatch.setattr(LocalBackend, "capacity", capacity)
    second = await opened(await sync_to_async(ws_headers)(other_user))
    await second.send(params(num_blocks=1))
    seen = await second.to_end(timeout=30)
    queued = [t for t in seen.texts if t.get("status") == "queued"]
    assert queued[0]["position"] == 1 and queued[-1]["waited_s"] > queued[0]["waited_s"]
    assert any(t["workers"] == 0 and "no GPU worker is running" in t["message"] for t in queued), queued
    final = seen.texts[-1]
    assert "waited" in final["error"] and "no GPU worker is running" in final["error"]
    assert final["end_reason"] == "timeout" and "started" not in seen.statuses
    session = await session_row(final["session_id"])
    assert session.status == SessionStatus.FAILED and session.end_reason == "timeout"
    await first.disconnect()
    await wait_for_final(first_id)
    await asyncio.sleep(0.5)  # the GPU takes the second session's task next: it finds it over, runs nothing


async def test_a_recordings_timeline_exports_in_scopes_formats_that_pass_scopes_import_checks(
        ws_headers, user, other_user, api, local):
    """The session's prompt changes come back as Scope's timeline (seconds at 16 fps) and as a
    .scope-workflow.json, each passing Scope's own import checks (tests/support/scope_import.py)."""
    from rest_framework.test import APIClient

    from tests.support.scope_import import timeline_problems, workflow_problems
    from videogen.pipeline.scope import import_timeline

    client = await opened(await sync_to_async(ws_headers)(user))
    await client.send(params(num_blocks=4, seed=3))
    await client.until(lambda kind, value: kind == "frame", timeout=90)
    await client.send({"prompt": "a lighthouse at dusk"})
    session_id = (await client.to_end(timeout=120)).last("completed")["session_id"]
    get = sync_to_async(api.get)
    scope = await get(f"/api/realtime/sessions/{session_id}/timeline")
    assert scope.status_code == 200 and "attachment" in scope["Content-Disposition"]
    exported = scope.json()
    assert timeline_problems(exported) == []
    texts = [p["prompts"][0]["text"] for p in exported["prompts"]]
    assert texts[0] == params()["prompt"] and texts[-1] == "a lighthouse at dusk"
    assert all(isinstance(p["startTime"], int | float) for p in exported["prompts"])
    assert exported["prompts"][-1]["endTime"] == pytest.approx(FULL[4] / 16, abs=0.01)  # seconds of the recording
    workflow = (await get(f"/api/realtime/sessions/{session_id}/timeline?as=scope-workflow")).json()
    assert workflow_problems(workflow) == []
    back, warnings = import_timeline(exported)  # and Studio reads its own export back
    assert back.seed == 3 and [s.prompts[0][0] for s in back.spans][-1] == "a lighthouse at dusk"
    studio = (await get(f"/api/realtime/sessions/{session_id}/timeline?as=studio")).json()
    assert studio["timeUnit"] == "blocks"
    assert (await get(f"/api/realtime/sessions/{session_id}/timeline?as=mp4")).status_code == 400
    other = APIClient()
    await sync_to_async(other.force_authenticate)(other_user)
    assert (await sync_to_async(other.get)(f"/api/realtime/sessions/{session_id}/timeline")).status_code == 404
