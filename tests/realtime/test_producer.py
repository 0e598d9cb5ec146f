"""The GPU side of a local session: it stops within one block of being told to, or of its
socket going silent, and still records what it made."""

from __future__ import annotations

import io
import time

import pytest
from PIL import Image

from tests.support.realtime import params
from videogen.local import producer
from videogen.models import RealtimeSession, SessionStatus
from videogen.realtime import sessions

pytestmark = [pytest.mark.django_db(transaction=True)]


class ScriptedLink:
    """Stands in for the channel layer: records what the producer publishes, and answers
    ``drain()`` (called once after every block) from a script of control messages."""

    def __init__(self, script: dict[int, list[dict]] | None = None) -> None:
        self.script = script or {}
        self.published: list[dict] = []
        self.drains = 0
        self.last_control = time.monotonic()
        self.closed = False

    def publish(self, message: dict) -> None:
        self.published.append(message)

    def drain(self) -> list[dict]:
        self.drains += 1
        controls = self.script.get(self.drains, [])
        if controls:
            self.last_control = time.monotonic()
        return controls

    def close(self) -> None:
        self.closed = True

    def of_type(self, kind: str) -> list[dict]:
        return [m for m in self.published if m["type"] == kind]


@pytest.fixture
def queued(user, settings):
    settings.STUDIO_PIPELINE, settings.STUDIO_PIPELINE_DEVICE = "tiny", "cpu"

    def make(**overrides) -> RealtimeSession:
        stream = {**params(num_blocks=50), **overrides}
        from videogen.local.backend import stream_limits
        from videogen.realtime.protocol import parse_params

        return sessions.open_session(user, "local", "local/krea-realtime", parse_params(stream, stream_limits()).public())

    return make


@pytest.mark.parametrize("after_blocks", [1, 3])
def test_a_stop_ends_the_stream_before_the_next_block(queued, after_blocks):
    session = queued()
    link = ScriptedLink({after_blocks: [{"type": "rt.control", "op": "stop"}]})
    producer.run_session(str(session.id), link=link)
    session.refresh_from_db()
    assert session.frames == 9 + 12 * (after_blocks - 1)
    assert len(link.of_type("rt.frame")) == session.frames
    assert session.status == SessionStatus.COMPLETED and session.video is not None
    assert link.of_type("rt.completed")[0]["frames"] == session.frames and link.closed


def test_updates_apply_from_the_next_block_and_land_in_the_timeline(queued):
    session = queued(num_blocks=4)
    link = ScriptedLink({2: [{"type": "rt.control", "op": "update", "update": {"prompt": "an owl", "seed": 3}}]})
    producer.run_session(str(session.id), link=link)
    session.refresh_from_db()
    assert [s["startTime"] for s in session.timeline["prompts"]] == [0, 2]
    assert session.timeline["events"] == [{"block": 2, "seed": 3}]


def test_a_silent_socket_stops_the_producer(queued, monkeypatch):
    monkeypatch.setattr(producer, "SOCKET_SILENT_S", 0.0)
    session = queued()
    link = ScriptedLink()
    producer.run_session(str(session.id), link=link)
    session.refresh_from_db()
    assert session.frames == 9  # one block, then it noticed nobody listens


def test_frames_are_jpegs_in_order_and_start_says_the_size(queued):
    session = queued(num_blocks=2, width=80, height=96)
    link = ScriptedLink()
    producer.run_session(str(session.id), link=link)
    started = link.of_type("rt.started")[0]
    assert (started["width"], started["height"]) == (80, 96) and started["random_weights"] is True
    frames = link.of_type("rt.frame")
    assert [f["index"] for f in frames] == list(range(21))
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


def test_a_session_another_worker_took_is_not_run_twice(queued):
    session = queued()
    assert sessions.claim(session.id, "elsewhere:1") is not None
    link = ScriptedLink()
    producer.run_session(str(session.id), link=link)
    assert link.published == []
