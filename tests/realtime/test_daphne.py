"""``/ws/realtime/`` on a real studio: ``manage.py runstudio`` (daphne via studio.serve; in the
services pass with ``--with-workers``: the Redis channel layer and a Celery GPU worker), a
program with a token, a browser's session, and a client that stops reading."""

from __future__ import annotations

import json

import msgpack
import pytest
import requests
from django.conf import settings
from websockets.exceptions import ConnectionClosedOK, InvalidStatus
from websockets.sync.client import connect

from tests.support.processes import free_port, wait_for, wait_http, worker_env
from tests.support.rawws import RawWebSocket
from tests.test_runstudio import _recreate_database, login, start_studio, stop_like_ctrl_c
from videogen.local.offline import frames_per_block
from videogen.pipeline import TINY_CONFIG

pytestmark = [pytest.mark.modes, pytest.mark.django_db(transaction=True)]

PASSWORD = "realtime-42-studio"


@pytest.fixture(scope="module")
def studio(tmp_path_factory, django_db_setup, django_db_blocker):
    """A running studio with the tiny pipeline; yields (base URL, logged-in requests session)."""
    port = free_port()
    env = {"STUDIO_ADMIN_PASSWORD": PASSWORD, "STUDIO_PIPELINE": "tiny", "STUDIO_PIPELINE_DEVICE": "cpu",
           "STUDIO_REALTIME_CLIENT_BUFFER": "8", "STUDIO_REALTIME_SEND_BUFFER": "16384"}
    extra: tuple[str, ...] = ()
    if not settings.STUDIO_EMBEDDED:
        env, extra = {**worker_env(), **env}, ("--with-workers",)
        env["DATABASE_URL"] += "_realtime"
        _recreate_database(env["DATABASE_URL"])
    process = start_studio(tmp_path_factory.mktemp("studio"), port, *extra, env=env)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_http(f"{base}/health", status=200, timeout=120)
        yield base, login(base, "admin", PASSWORD)
    finally:
        stop_like_ctrl_c(process)
        if "DATABASE_URL" in env and not settings.STUDIO_EMBEDDED:
            _recreate_database(env["DATABASE_URL"], create=False)


def stream_frames(blocks: int) -> int:
    """Frames a stream of ``blocks`` blocks of the tiny pipeline sends (its first block is shorter)."""
    first, later = frames_per_block(TINY_CONFIG)
    return first + later * (blocks - 1)


def token_url(base: str, session: requests.Session, query: str = "backend=local") -> str:
    response = session.post(f"{base}/api/realtime/token", headers={"X-CSRFToken": session.cookies["csrftoken"],
                                                                   "Referer": f"{base}/"}, timeout=10)
    assert response.status_code == 200, response.text
    return f"ws://127.0.0.1:{base.rsplit(':', 1)[1]}{response.json()['url']}&{query}"


def test_a_program_with_a_token_streams_from_the_local_pipeline(studio):
    base, session = studio
    with connect(token_url(base, session), max_size=2**24, open_timeout=20) as ws:
        assert json.loads(ws.recv(timeout=10)) == {"status": "ready"}
        ws.send(msgpack.packb({"prompt": "a fox", "width": 64, "height": 64, "num_blocks": 3, "seed": 1}))
        texts, frames = [], 0
        while True:
            message = ws.recv(timeout=120)
            if isinstance(message, bytes):
                frames += 1
                if frames == 1:
                    ws.send(msgpack.packb({"prompt": "an owl"}))
                continue
            texts.append(json.loads(message))
            if texts[-1].get("status") == "completed" or "error" in texts[-1]:
                break
        with pytest.raises(ConnectionClosedOK):  # the studio closes
            ws.recv(timeout=10)
        close_code = ws.close_code
    statuses = [t.get("status") for t in texts]
    assert "started" in statuses and statuses[-1] == "completed", texts
    # A client slower than the stream loses old frames (counted) rather than slowing it down.
    completed = texts[-1]
    assert frames == completed["frames"] and frames + completed["dropped"] == stream_frames(3)
    assert close_code == 1000
    session_id = texts[-1]["session_id"]
    detail = session.get(f"{base}/api/realtime/sessions/{session_id}/", timeout=10).json()
    assert detail["status"] == "completed" and detail["frames"] == stream_frames(3)
    assert detail["end_reason"] == "completed"
    video = session.get(f"{base}{texts[-1]['video']['url']}", timeout=10)
    assert video.status_code == 200 and video.headers["Content-Type"] == "video/mp4"


def test_a_browser_uses_its_session_from_the_studios_origin_and_no_other(studio):
    base, session = studio
    ws_url = f"ws://127.0.0.1:{base.rsplit(':', 1)[1]}/ws/realtime/?backend=local"
    cookie = f"sessionid={session.cookies['sessionid']}"
    with connect(ws_url, origin=base, additional_headers={"Cookie": cookie}, open_timeout=20) as ws:
        assert json.loads(ws.recv(timeout=10)) == {"status": "ready"}
    with pytest.raises(InvalidStatus) as refused:
        connect(ws_url, origin="http://evil.example", additional_headers={"Cookie": cookie}, open_timeout=20)
    assert refused.value.response.status_code == 403
    with pytest.raises(InvalidStatus):
        connect(ws_url, origin=base, open_timeout=20)  # no session, no token


def test_a_client_that_stops_reading_loses_old_frames_and_never_slows_the_producer(studio):
    base, session = studio
    port = int(base.rsplit(":", 1)[1])
    path = token_url(base, session).split(str(port), 1)[1]
    ws = RawWebSocket("127.0.0.1", port, path)
    try:
        assert json.loads(ws.recv()) == {"status": "ready"}
        ws.send(msgpack.packb({"prompt": "a fox", "width": 128, "height": 128, "num_blocks": 50}))
        while True:  # read until the stream starts, then stop reading
            message = ws.recv()
            if isinstance(message, str) and json.loads(message).get("status") == "started":
                session_id = json.loads(message)["session_id"]
                break
        full = stream_frames(50)

        def finished():
            detail = session.get(f"{base}/api/realtime/sessions/{session_id}/", timeout=10).json()
            return detail if detail["status"] != "streaming" else None

        detail = wait_for(finished, 120, "the session to finish while its client reads nothing", interval=0.5)
        assert detail["status"] == "completed" and detail["frames"] == full, detail
        texts, frames = [], 0
        while (message := ws.recv()) is not None:
            if isinstance(message, bytes):
                frames += 1
            else:
                texts.append(json.loads(message))
    finally:
        ws.close()
    assert ws.close_code == 1000
    completed = texts[-1]
    assert completed["status"] == "completed" and completed["generated"] == full
    assert completed["dropped"] > 0 and frames + completed["dropped"] == full
    assert completed["frames"] == frames
    detail = session.get(f"{base}/api/realtime/sessions/{session_id}/", timeout=10).json()
    assert detail["dropped"] == completed["dropped"]


def noise_png(side: int) -> bytes:
    """A PNG that does not compress: about 3 x side^2 bytes."""
    import io

    import numpy as np
    from PIL import Image

    out = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (side, side, 3), dtype=np.uint8)).save(out, "PNG")
    return out.getvalue()


def test_messages_up_to_the_protocols_10_mib_are_taken_and_larger_ones_answered(studio):
    """daphne's own limit is 1 MiB, past which it drops the connection without a close code."""
    from videogen.realtime.protocol import MAX_MESSAGE_BYTES

    base, session = studio
    picture = noise_png(1024)
    assert len(picture) > 3 * 2**20
    texts = []
    with connect(token_url(base, session), max_size=2**24, open_timeout=20) as ws:
        assert json.loads(ws.recv(timeout=10)) == {"status": "ready"}
        ws.send(msgpack.packb({"prompt": "a fox", "width": 64, "height": 64, "num_blocks": 1000,
                               "webcam_mode": True, "start_frame": picture}))
        ws.send(msgpack.packb({"image": picture, "strength": 0.5}))
        ws.send(msgpack.packb({"image": b"\0" * (MAX_MESSAGE_BYTES + 1)}))
        stopped = False
        while True:
            message = ws.recv(timeout=120)
            if isinstance(message, bytes):
                if not stopped and any(isinstance(t.get("error"), list) for t in texts):
                    stopped = True  # refused, and the stream goes on: then stop it
                    ws.send(msgpack.packb({"action": "stop"}))
                continue
            texts.append(json.loads(message))
            if texts[-1].get("status") == "completed" or isinstance(texts[-1].get("error"), str):
                break
    refused = [t for t in texts if isinstance(t.get("error"), list)]
    assert len(refused) == 1 and refused[0]["error"][0]["type"] == "too_long", texts
    assert str(MAX_MESSAGE_BYTES) in refused[0]["message"]
    started = [t for t in texts if t.get("status") == "started"][0]
    assert started["webcam_mode"] is True and started["start_frame"] is True
    assert texts[-1]["status"] == "completed" and texts[-1]["end_reason"] == "stopped", texts[-1]
