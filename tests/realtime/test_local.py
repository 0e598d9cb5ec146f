"""``/ws/realtime/`` on the local pipeline, step by step, as a fal client would use it.

Runs in both passes: in the embedded one the pipeline runs on the web process's gpu thread
and frames cross the in-process layer; in the services one a real ``celery worker -Q gpu``
hosts it and frames cross Redis."""

from __future__ import annotations

import io

import av
import msgpack
import pytest
from asgiref.sync import sync_to_async
from PIL import Image

from tests.fakes.media import jpeg_frame
from tests.support.realtime import opened, params, session_row, wait_for_final
from videogen.models import RealtimeSession, SessionStatus, Video

pytestmark = [pytest.mark.modes, pytest.mark.django_db(transaction=True)]

FULL = {1: 9, 2: 21, 3: 33, 4: 45}  # frames of a stream of n blocks: 9, then 12 a block






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
    assert completed["frames"] == FULL[2] and completed["dropped"] == 0 and completed["generated"] == FULL[2]
    assert seen.statuses.index("started") < seen.statuses.index("completed")
    assert not seen.errors

    session = await session_row(started["session_id"])
    assert session.status == SessionStatus.COMPLETED and session.frames == FULL[2] and session.dropped == 0
    assert session.video is not None and completed["video"]["id"] == str(session.video_id)
    assert completed["video"]["url"] == f"/api/videos/{session.video_id}/file"
    assert session.timeline["settings"] == {"resolution": {"height": 64, "width": 64}, "seed": 11,
                                            "denoisingSteps": [1000, 750, 500, 250]}
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
    assert session.frames == 9 + 12 * 49


async def test_a_reset_starts_a_fresh_stream_whose_first_block_has_9_frames(ws_headers, user, local):
    client = await opened(await sync_to_async(ws_headers)(user))
    await client.send(params(num_blocks=50))
    await client.until(lambda kind, value: kind == "frame", timeout=90)
    await client.send({"action": "reset"})
    seen = await client.to_end(timeout=180)
    session = await session_row(seen.last("completed")["session_id"])
    resets = [e for e in session.timeline["events"] if e.get("reset")]
    assert len(resets) == 1 and 1 <= resets[0]["block"] < 50
    assert session.frames == 9 + 9 + 12 * 48  # two "first" blocks
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
    "51 blocks": {"bytes": msgpack.packb({"prompt": "a fox", "num_blocks": 51})},
    "9 steps": {"bytes": msgpack.packb({"prompt": "a fox", "num_denoising_steps": 9})},
    "fractional steps": {"bytes": msgpack.packb({"prompt": "a fox", "num_denoising_steps": 2.5})},
    "negative seed": {"bytes": msgpack.packb({"prompt": "a fox", "seed": -1})},
    "seed past 2^24": {"bytes": msgpack.packb({"prompt": "a fox", "seed": 2**24 + 1})},
    "width as text": {"bytes": msgpack.packb({"prompt": "a fox", "width": "wide"})},
    "height NaN": {"bytes": msgpack.packb({"prompt": "a fox", "height": float("nan")})},
    "strength 2": {"bytes": msgpack.packb({"prompt": "a fox", "strength": 2})},
    "start_frame not a JPEG": {"bytes": msgpack.packb({"prompt": "a fox", "start_frame": b"GIF89a"})},
    "start_frame on local": {"bytes": msgpack.packb({"prompt": "a fox", "start_frame": jpeg_frame("a fox", 0, 32, 32)})},
}


@pytest.mark.parametrize("message", BAD.values(), ids=BAD.keys())
async def test_invalid_parameters_get_an_error_frame_and_the_socket_waits_for_a_corrected_one(
        ws_headers, user, local, message):
    client = await opened(await sync_to_async(ws_headers)(user))
    await client.send_raw(text=message.get("text"), data=message.get("bytes"))
    kind, reply = await client.next(10)
    assert kind == "text" and isinstance(reply.get("error"), str) and reply["error"]
    assert await client.communicator.receive_nothing(timeout=0.2)  # still open, nothing started
    await client.send(params(num_blocks=1))
    assert (await client.status("started", timeout=90))["num_blocks"] == 1
    await client.to_end(timeout=90)


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
    for bad in ({"action": "explode"}, {"colour": "blue"}, {"seed": "x"}, {"prompt": ""},
                {"image": b"\xff\xd8\xff\xe0 not really"}):
        await client.send(bad)
    await client.send_raw(text="hello")
    seen = await client.to_end(timeout=180)
    assert len(seen.errors) == 6
    assert any("image" in e for e in seen.errors) and any("action" in e for e in seen.errors)
    assert seen.last("completed")["generated"] == 9 + 12 * 29


async def test_a_client_that_leaves_mid_stream_stops_the_gpu_work_and_keeps_the_recording(
        ws_headers, user, local):
    client = await opened(await sync_to_async(ws_headers)(user))
    await client.send({"prompt": "a fox", "width": 128, "height": 128, "num_blocks": 50})
    started = await client.status("started", timeout=90)
    await client.until(lambda kind, value: kind == "frame", timeout=60)
    await client.disconnect()
    session = await wait_for_final(started["session_id"])
    assert session.status == SessionStatus.COMPLETED
    assert 9 <= session.frames < 9 + 12 * 49, "the pipeline ran to the end after the client left"
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
