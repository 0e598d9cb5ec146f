"""Recordings written as they stream: any end keeps what was made.

A producer's recording reaches storage in parts while it streams; whoever ends a session
whose producer died (its socket, or the sweep) saves the parts as a playable partial video,
once; a producer that comes back late finds it saved and leaves it alone. In the services pass
a real GPU worker is SIGKILLed mid-session."""

from __future__ import annotations

import io
import os
import signal
import time
from datetime import timedelta

import av
import numpy as np
import pytest
from asgiref.sync import sync_to_async
from django.conf import settings as django_settings
from django.core.files.storage import default_storage
from django.utils import timezone

from tests.support.processes import celery_worker, worker_env
from tests.support.realtime import opened, session_row
from videogen.gallery.mp4 import Mp4Writer, playable_copy
from videogen.models import EndReason, RealtimeSession, RecordingState
from videogen.realtime import recording, sessions

pytestmark = [pytest.mark.django_db(transaction=True)]


def frames(n: int, size: int = 64) -> np.ndarray:
    rng = np.random.default_rng(n)
    return rng.integers(0, 255, (n, size, size, 3), dtype=np.uint8)


def decoded(content: bytes) -> int:
    with av.open(io.BytesIO(content)) as container:
        return sum(1 for _ in container.decode(video=0))


def test_a_fragmented_mp4_cut_anywhere_is_still_playable_up_to_the_cut(tmp_path):
    path = tmp_path / "live.mp4"
    writer = Mp4Writer(fps=16, path=path, fragmented=True)
    cuts = {}
    for i in range(60):
        writer.add(frames(1) + i)
        if i in (40, 59):
            cuts[i] = path.read_bytes()
    whole = writer.finish()
    assert decoded(whole) == 60
    (tmp_path / "cut.mp4").write_bytes(cuts[40])
    content, count = playable_copy(tmp_path / "cut.mp4", check=True)
    assert 16 <= count <= 40 and decoded(content) == count  # whole fragments (a second each) up to the cut
    (tmp_path / "torn.mp4").write_bytes(cuts[59][:-700])  # a fragment torn in the middle
    content, count = playable_copy(tmp_path / "torn.mp4", check=True)
    assert count > 0 and decoded(content) == count
    (tmp_path / "none.mp4").write_bytes(b"")
    assert playable_copy(tmp_path / "none.mp4") == (None, 0)


@pytest.fixture
def streaming(user, settings, tmp_path):
    """A session a producer has claimed, with its recording's parts going to storage."""
    settings.MEDIA_ROOT = tmp_path

    def make() -> tuple[RealtimeSession, recording.Recording]:
        session = sessions.open_session(user, "local", "local/krea-realtime", {"prompt": "a fox", "width": 64,
                                                                                "height": 64, "seed": 1})
        sessions.claim(session.id, "worker:1")
        return session, recording.Recording(name="t", parts=recording.parts_folder(session.id))

    return make


def wait_for_parts(session_id, count: int) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if len(default_storage.listdir(recording.parts_folder(session_id))[1]) >= count:
                return
        except FileNotFoundError:
            pass
        time.sleep(0.05)
    raise TimeoutError("no parts")


def test_a_dead_producers_parts_are_saved_once_as_a_partial_video(streaming, monkeypatch):
    monkeypatch.setattr(recording, "PART_INTERVAL_S", 0.0)
    session, record = streaming()
    for i in range(6):  # 3 s at 16 fps; the producer then "dies": nothing finishes its recording
        record.add_frames(frames(8) + i)
    wait_for_parts(session.id, 2)
    sessions.heartbeat(session.id, frames=48, timeline={"prompts": [], "settings": {}, "version": "2.0"})
    told = sessions.salvage_recording(session.id)
    row = RealtimeSession.objects.get(pk=session.id)
    assert told["video"] == str(row.video_id) and row.recording == RecordingState.SAVED
    content = row.video.file.read()
    assert 16 <= decoded(content) <= 48 and row.video.parameters["partial"] is True
    assert row.video.parameters["timeline"] == {"prompts": [], "settings": {}, "version": "2.0"}
    with pytest.raises(FileNotFoundError):
        default_storage.listdir(recording.parts_folder(session.id))
    # the producer was only slow: its own save finds the recording taken and keeps it
    assert sessions.save_recording(session.id, record.finish(), None, 48) is None
    assert sessions.salvage_recording(session.id)["video"] == str(row.video_id)  # asked twice: the same video


def test_the_sweep_saves_the_recording_of_a_session_nobody_answers_for(streaming, monkeypatch):
    monkeypatch.setattr(recording, "PART_INTERVAL_S", 0.0)
    session, record = streaming()
    for i in range(6):
        record.add_frames(frames(8) + i)
    wait_for_parts(session.id, 2)
    assert sessions.sweep() == {"stale": 0, "salvaged": 0}  # still heard from: left alone
    RealtimeSession.objects.filter(pk=session.id).update(
        heartbeat_at=timezone.now() - timedelta(seconds=sessions.STALE_AFTER_S + 1))
    assert sessions.sweep() == {"stale": 1, "salvaged": 1}
    row = RealtimeSession.objects.get(pk=session.id)
    assert row.status == "failed" and row.end_reason == EndReason.ERROR and row.video is not None
    assert decoded(row.video.file.read()) >= 16


@pytest.mark.services
async def test_a_gpu_worker_killed_mid_session_leaves_a_playable_partial_recording(
        ws_headers, user, settings, tmp_path):
    if django_settings.STUDIO_EMBEDDED:
        pytest.skip("a GPU worker process to kill exists in the services pass")
    settings.MEDIA_ROOT = tmp_path
    settings.STUDIO_REALTIME_FRAME_TIMEOUT = 3.0
    env = {**worker_env(), "STUDIO_PIPELINE": "tiny", "STUDIO_PIPELINE_DEVICE": "cpu",
           "STUDIO_MEDIA_ROOT": str(tmp_path)}
    with celery_worker(env, queues="gpu", app="studio", name="doomed-gpu") as worker:
        client = await opened(await sync_to_async(ws_headers)(user))
        await client.send({"prompt": "a fox", "width": 128, "height": 128, "num_blocks": 1000, "seed": 3})
        started = await client.status("started", timeout=120)
        began = time.monotonic()
        await client.until(lambda kind, value: kind == "frame" and time.monotonic() - began > 4, timeout=60)
        os.kill(worker.pid, signal.SIGKILL)  # mid-block, mid-recording: nothing of it finishes
        seen = await client.to_end(timeout=60)
    final = seen.texts[-1]
    assert "no frame for 3 s" in final["error"] and final["end_reason"] == "timeout", final
    assert final["video"] is not None, "the partial recording was lost"
    session = await session_row(started["session_id"])
    assert session.end_reason == "timeout" and session.recording == RecordingState.SAVED
    content = await sync_to_async(lambda: session.video.file.read())()
    count = decoded(content)
    assert 16 <= count <= session.frames and session.video.parameters["partial"] is True
