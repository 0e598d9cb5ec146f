"""The GPU side of a local session: it stops within one block of being told to, or of its
socket going silent, applies the socket's controls as they come (images to the pipeline's
input, from a thread of its own), and records what it made, in parts while it streams."""

from __future__ import annotations

import io
import queue
import time

import pytest
from django.core.files.storage import default_storage
from PIL import Image

from tests.support.realtime import frame_difference, params, picture
from videogen.local import producer
from videogen.models import EndReason, RealtimeSession, RecordingState, SessionStatus
from videogen.realtime import recording, sessions

pytestmark = [pytest.mark.django_db(transaction=True)]

FIRST, LATER = 6, 12  # frames of a stream's first block, and of every later one


class ScriptedLink:
    """Stands in for the channel layer: records what the producer publishes, and hands it
    control messages (``script``) once it has published that many frames."""

    def __init__(self, script: dict[int, list[dict]] | None = None) -> None:
        self.script = dict(script or {})
        self.published: list[dict] = []
        self.last_control = time.monotonic()
        self.closed = False
        self._controls: queue.SimpleQueue = queue.SimpleQueue()
        self._release()

    def _release(self) -> None:
        frames = len(self.of_type("rt.frame"))
        for at in sorted(self.script):
            if frames >= at:
                for control in self.script.pop(at):
                    self._controls.put(control)

    def publish(self, message: dict) -> None:
        self.published.append(message)
        self._release()

    def next_control(self, timeout: float) -> dict | None:
        try:
            control = self._controls.get(timeout=timeout)
        except queue.Empty:
            return None
        self.last_control = time.monotonic()
        return control

    def close(self) -> None:
        self.closed = True

    def of_type(self, kind: str) -> list[dict]:
        return [m for m in self.published if m["type"] == kind]


@pytest.fixture
def queued(user, settings, tmp_path, monkeypatch):
    settings.STUDIO_PIPELINE, settings.STUDIO_PIPELINE_DEVICE = "tiny", "cpu"
    settings.MEDIA_ROOT = tmp_path
    # A scripted link sends no keepalives: only the test of a silent socket may find it silent
    # (a session at 832x480 on a busy CPU may take longer than the real limit).
    monkeypatch.setattr(producer, "SOCKET_SILENT_S", 600.0)

    def make(start_frame: bytes | None = None, **overrides) -> RealtimeSession:
        stream = {**params(num_blocks=50), **overrides}
        from videogen.local.backend import stream_limits
        from videogen.realtime.protocol import parse_params

        parsed = parse_params(stream, stream_limits())
        session = sessions.open_session(user, "local", "local/krea-realtime", parsed.public())
        if start_frame is not None:
            sessions.keep_start_frame(session.id, start_frame)
        return session

    return make


def stop_at(frames: int) -> dict[int, list[dict]]:
    return {frames: [{"type": "rt.control", "op": "stop"}]}


@pytest.mark.parametrize("after_blocks", [1, 3])
def test_a_stop_ends_the_stream_within_one_block(queued, after_blocks):
    session = queued()
    told = FIRST + LATER * (after_blocks - 1)
    link = ScriptedLink(stop_at(told))
    producer.run_session(str(session.id), link=link)
    session.refresh_from_db()
    assert session.frames in (told, told + LATER)  # the block in progress when it heard, at most
    assert len(link.of_type("rt.frame")) == session.frames
    assert session.status == SessionStatus.COMPLETED and session.video is not None
    assert session.end_reason == EndReason.STOPPED and session.recording == RecordingState.SAVED
    assert link.of_type("rt.completed")[0]["frames"] == session.frames and link.closed
    assert link.of_type("rt.completed")[0]["end_reason"] == "stopped"


def test_updates_apply_from_the_next_block_and_land_in_the_timeline(queued):
    session = queued(num_blocks=4)
    update = {"type": "rt.control", "op": "update", "update": {"prompt": "an owl", "seed": 3, "interp_steps": 2}}
    link = ScriptedLink({FIRST: [update]})
    producer.run_session(str(session.id), link=link)
    session.refresh_from_db()
    spans = session.timeline["prompts"]
    assert [s["startTime"] for s in spans][0] == 0 and spans[1]["startTime"] in (1, 2)
    assert spans[1]["transitionSteps"] == 2
    assert session.timeline["events"] == [{"block": spans[1]["startTime"], "seed": 3}]
    assert session.end_reason == EndReason.COMPLETED


def test_a_silent_socket_stops_the_producer(queued, monkeypatch):
    monkeypatch.setattr(producer, "SOCKET_SILENT_S", 0.0)
    session = queued()
    producer.run_session(str(session.id), link=ScriptedLink())
    session.refresh_from_db()
    assert session.frames < FIRST + LATER * 49  # it noticed nobody listens


def test_frames_are_jpegs_in_order_and_start_says_the_size_and_what_it_ignores(queued):
    session = queued(num_blocks=2, width=80, height=96, kv_cache_num_frames=5, timestep_shift=5.0)
    link = ScriptedLink()
    producer.run_session(str(session.id), link=link)
    started = link.of_type("rt.started")[0]
    assert (started["width"], started["height"]) == (80, 96) and started["random_weights"] is True
    assert started["ignored"] == ["kv_cache_num_frames"]  # the pipeline's own is 3; its shift is 5
    assert started["strength"] == 1.0 and started["webcam_mode"] is False and started["interp_steps"] == 4
    frames = link.of_type("rt.frame")
    assert [f["index"] for f in frames] == list(range(FIRST + LATER))
    with Image.open(io.BytesIO(frames[0]["jpeg"])) as image:
        assert image.format == "JPEG" and image.size == (80, 96)


def test_a_session_cancelled_while_it_waited_never_runs(queued):
    session = queued()
    assert sessions.cancel_if_queued(session.id)
    link = ScriptedLink()
    producer.run_session(str(session.id), link=link)
    assert link.published == []
    session.refresh_from_db()
    assert session.status == SessionStatus.CANCELLED and session.frames == 0
    assert session.end_reason == EndReason.STOPPED


def test_a_session_another_worker_took_is_not_run_twice(queued):
    session = queued()
    assert sessions.claim(session.id, "elsewhere:1") is not None
    link = ScriptedLink()
    producer.run_session(str(session.id), link=link)
    assert link.published == []


def first_frame(link: ScriptedLink) -> bytes:
    frames = link.of_type("rt.frame")
    assert frames, link.of_type("rt.error")
    return frames[0]["jpeg"]


def run_first_frame(queued, start_frame: bytes | None = None, script=None, **overrides) -> bytes:
    session = queued(start_frame=start_frame, **{"num_blocks": 1, "width": 832, "height": 480, "seed": 5,
                                                 **overrides})
    link = ScriptedLink(script)
    producer.run_session(str(session.id), link=link)
    assert link.of_type("rt.started")[0]["start_frame"] is (start_frame is not None)
    return first_frame(link)


def test_the_start_frame_shapes_the_stream_at_the_default_size(queued):
    """Same seed, same prompt: the same start frame gives the same stream, another start
    frame (or none) another one (Krea's setup_start_frame), at 832x480 on the tiny pipeline."""
    red = run_first_frame(queued, picture("red"))
    assert frame_difference(red, run_first_frame(queued, picture("red"))) < 0.01  # deterministic
    assert frame_difference(red, run_first_frame(queued, picture("blue"))) > 0.3
    assert frame_difference(red, run_first_frame(queued)) > 0.3


def test_webcam_images_reach_the_pipeline_from_the_control_thread_and_shape_the_stream(queued, monkeypatch):
    """Krea's webcam mode: images pushed while the stream waits for them (the generating
    thread blocks in the pipeline's input buffer; the control thread feeds it)."""
    pushed_from: set[str] = set()
    from videogen.pipeline import PipelineSession

    real_push = PipelineSession.push_frame

    def push_frame(self, image, strength=None):
        import threading

        pushed_from.add(threading.current_thread().name)
        return real_push(self, image, strength)

    monkeypatch.setattr(PipelineSession, "push_frame", push_frame)
    seen = {}
    for colour in ("black", "white"):
        images = [{"type": "rt.control", "op": "update", "update": {"image": picture(colour, i), "strength": 0.3}}
                  for i in range(9)]
        seen[colour] = run_first_frame(queued, script={0: images}, webcam_mode=True, strength=0.3)
    assert frame_difference(seen["black"], seen["white"]) > 0.6
    assert pushed_from and all(name.startswith("rt-controls-") for name in pushed_from)


def test_webcam_mode_without_images_ends_as_a_timeout(queued, monkeypatch):
    monkeypatch.setattr(producer, "INPUT_TIMEOUT_S", 0.3)
    session = queued(num_blocks=2, webcam_mode=True)
    link = ScriptedLink()
    producer.run_session(str(session.id), link=link)
    session.refresh_from_db()
    assert session.status == SessionStatus.FAILED and session.end_reason == EndReason.TIMEOUT
    assert "image messages" in link.of_type("rt.error")[0]["error"]


def test_the_recording_reaches_storage_in_parts_while_it_streams(queued, monkeypatch):
    monkeypatch.setattr(recording, "PART_INTERVAL_S", 0.0)
    session = queued(num_blocks=8)
    seen_parts: list[int] = []

    class Watching(ScriptedLink):
        def publish(self, message):
            if message["type"] == "rt.frame" and message["index"] % LATER == 0:
                try:
                    seen_parts.append(len(default_storage.listdir(recording.parts_folder(session.id))[1]))
                except FileNotFoundError:
                    seen_parts.append(0)
            super().publish(message)

    producer.run_session(str(session.id), link=Watching())
    assert max(seen_parts) > 0, "no part reached storage while the session streamed"
    session.refresh_from_db()
    assert session.video is not None and session.recording == RecordingState.SAVED
    with pytest.raises(FileNotFoundError):  # the parts go once the recording is saved
        default_storage.listdir(recording.parts_folder(session.id))
