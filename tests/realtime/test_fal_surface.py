"""A client written the way the seed Krea app is, against a live studio (``manage.py
runstudio``: daphne; in the services pass with its workers), changed only in its URLs and key:

- its server route asks fal's token endpoint, now ``POST {studio}/fal/tokens/``, with
  ``Authorization: Key <Studio API token>`` and ``{"allowed_apps": ["krea-wan-14b"],
  "token_expiration": 5000}``, and reads the bare JSON string (``data.token || data``);
- its page, served from another origin (Next.js on ``http://localhost:3000``), opens
  ``{studio}/fal-ai/krea-wan-14b/ws?fal_jwt_token=<token>`` with no cookie, waits for
  ``{"status": "ready"}``, sends msgpack ``{prompt, num_blocks: 1000, num_denoising_steps: 4,
  strength, width, height, seed}``, shows JPEG frames, sends ``{prompt, num_blocks}`` when the
  prompt changes, and stops with close code 1000.

``num_blocks: 1000`` is what the seed app sends (Krea's server has no upper bound); the studio
here runs with ``STUDIO_REALTIME_MAX_BLOCKS=1000`` set explicitly for that.
"""

from __future__ import annotations

import json
import re
from urllib.parse import quote

import msgpack
import pytest
import requests
from django.conf import settings
from websockets.exceptions import ConnectionClosedOK
from websockets.sync.client import connect

from tests.fakes.fal import FakeFal
from tests.support.processes import free_port, wait_for, wait_http, worker_env
from tests.test_runstudio import _recreate_database, login, start_studio, stop_like_ctrl_c

pytestmark = [pytest.mark.modes, pytest.mark.django_db(transaction=True)]

PASSWORD = "seed-app-42-studio"
SEED_ORIGIN = "http://localhost:3000"
SEED_BODY = {"allowed_apps": ["krea-wan-14b"], "token_expiration": 5000}
FIRST_PROMPT = "A cat riding a skateboard through a neon city"
SECOND_PROMPT = "A cat riding a skateboard through a snowy forest"


@pytest.fixture(scope="module")
def fal():
    with FakeFal() as fake:
        fake.frame_interval = 0.01
        yield fake


@pytest.fixture(scope="module")
def studio(tmp_path_factory, django_db_setup, django_db_blocker, fal):
    """A live studio (tiny pipeline, fal pointed at the fake) and a Studio API token of its admin."""
    port = free_port()
    env = {"STUDIO_ADMIN_PASSWORD": PASSWORD, "STUDIO_PIPELINE": "tiny", "STUDIO_PIPELINE_DEVICE": "cpu",
           "STUDIO_REALTIME_MAX_BLOCKS": "1000", "STUDIO_CORS_ORIGINS": SEED_ORIGIN, **fal.settings()}
    extra: tuple[str, ...] = ()
    if not settings.STUDIO_EMBEDDED:
        env, extra = {**worker_env(), **env}, ("--with-workers",)
        env["DATABASE_URL"] += "_seed"
        _recreate_database(env["DATABASE_URL"])
    process = start_studio(tmp_path_factory.mktemp("studio"), port, *extra, env=env)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_http(f"{base}/health", status=200, timeout=120)
        yield base, api_token(base)
    finally:
        stop_like_ctrl_c(process)
        if not settings.STUDIO_EMBEDDED:
            _recreate_database(env["DATABASE_URL"], create=False)


def api_token(base: str) -> str:
    """The admin's API token, made on the account page as a person makes it."""
    session = login(base, "admin", PASSWORD)
    made = session.post(f"{base}/account/token/", headers={"X-CSRFToken": session.cookies["csrftoken"],
                                                           "Referer": f"{base}/account/token/"}, timeout=10)
    assert made.status_code == 200, made.text[:300]
    return re.search(r'id="token-key" type="text" value="([0-9a-f]{40})"', made.text).group(1)


def seed_server_route(base: str, key: str) -> str:
    """The seed app's /api/fal route with its REST URL changed: fal's token call, read as the
    page reads it (``data.token || data``)."""
    response = requests.post(f"{base}/fal/tokens/", json=SEED_BODY, timeout=10, headers={
        "Authorization": f"Key {key}", "Content-Type": "application/json", "Accept": "application/json"})
    assert response.status_code == 200, response.text
    data = response.json()
    token = data.get("token") if isinstance(data, dict) else data
    assert isinstance(token, str) and token
    return token


def seed_session(base: str, key: str, query: str = "") -> dict:
    """One generation as the seed page runs it; returns what it saw."""
    token = seed_server_route(base, key)
    ws_url = f"ws://{base.removeprefix('http://')}/fal-ai/krea-wan-14b/ws?fal_jwt_token={quote(token, safe='')}{query}"
    seen = {"texts": [], "frames": 0, "frames_after_update": 0}
    with connect(ws_url, origin=SEED_ORIGIN, max_size=2**24, open_timeout=20) as ws:
        assert json.loads(ws.recv(timeout=20)) == {"status": "ready"}
        ws.send(msgpack.packb({"prompt": FIRST_PROMPT, "num_blocks": 1000, "num_denoising_steps": 4,
                               "strength": 0.8, "width": 64, "height": 64, "seed": 1234}))
        updated = False
        while seen["frames_after_update"] < 24:  # two blocks with the new prompt, then the user stops
            message = ws.recv(timeout=60)
            if isinstance(message, bytes):
                assert message[:2] == b"\xff\xd8"  # a JPEG, as the page draws it
                seen["frames"] += 1
                if updated:
                    seen["frames_after_update"] += 1
                elif seen["frames"] == 9:
                    ws.send(msgpack.packb({"prompt": SECOND_PROMPT, "num_blocks": 1000}))
                    updated = True
                continue
            text = json.loads(message)
            assert "error" not in text, text  # the page closes on any error
            seen["texts"].append(text)
        ws.close(1000, "stopped by user")
        with pytest.raises(ConnectionClosedOK):  # what was already on its way, then the close
            while True:
                ws.recv(timeout=10)
        seen["close"] = (ws.protocol.close_sent.code, ws.protocol.close_rcvd.code)
    return seen


def last_session(base: str, key: str) -> dict:
    sessions = requests.get(f"{base}/api/realtime/sessions", headers={"Authorization": f"Token {key}"}, timeout=10)
    assert sessions.status_code == 200
    return sessions.json()["results"][0]


def finished(base: str, key: str) -> dict:
    return wait_for(lambda: (s := last_session(base, key))["status"] not in ("queued", "streaming") and s, 60,
                    "the session to be recorded after the client stopped", interval=0.3)


def test_the_seed_app_streams_from_the_local_pipeline_by_changing_its_urls(studio):
    base, key = studio
    seen = seed_session(base, key)  # no ?backend=: the studio's default (local)
    assert seen["close"] == (1000, 1000)
    started = next(t for t in seen["texts"] if t.get("status") == "started")
    assert started["backend"] == "local" and started["num_blocks"] == 1000
    session = finished(base, key)
    assert session["backend"] == "local" and session["status"] != "failed", session
    texts = [span["prompts"][0]["text"] for span in session["timeline"]["prompts"]]
    assert texts == [FIRST_PROMPT, SECOND_PROMPT]


def test_the_seed_app_streams_from_fal_through_the_studio(studio, fal):
    base, key = studio
    seen = seed_session(base, key, "&backend=fal")
    assert seen["close"] == (1000, 1000)
    session = finished(base, key)
    assert session["backend"] == "fal" and session["status"] != "failed", session
    upstream = fal.ws_sessions[-1]
    assert upstream["params"]["num_blocks"] == 1000 and upstream["prompts"] == [SECOND_PROMPT]
    wait_for(lambda: upstream["closed"] == "client", 10, "the studio to hang up on fal")


def test_the_seed_origin_may_ask_for_a_token_from_its_page_and_a_cookie_from_it_is_refused(studio):
    base, key = studio
    preflight = requests.options(f"{base}/fal/tokens/", timeout=10, headers={
        "Origin": SEED_ORIGIN, "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization,content-type"})
    assert preflight.status_code == 200 and preflight.headers["Access-Control-Allow-Origin"] == SEED_ORIGIN
    session = login(base, "admin", PASSWORD)
    ws_url = f"ws://{base.removeprefix('http://')}/fal-ai/krea-wan-14b/ws"
    from websockets.exceptions import InvalidStatus

    with pytest.raises(InvalidStatus) as refused:  # a cookie counts only from the studio's own origin
        connect(ws_url, origin=SEED_ORIGIN, additional_headers={"Cookie": f"sessionid={session.cookies['sessionid']}"},
                open_timeout=20)
    assert refused.value.response.status_code == 403
    with pytest.raises(InvalidStatus) as unknown:  # a path that is no socket: refused, not a 500
        connect(f"ws://{base.removeprefix('http://')}/fal-ai/krea-wan-14b/nope?fal_jwt_token=x", open_timeout=20)
    assert unknown.value.response.status_code == 403


def test_fal_realtime_clients_get_msgpack_frames_on_the_realtime_path(studio):
    """fal's ``realtime()`` clients (Python and JS) open ``/realtime`` and decode every binary
    message as msgpack: there the frames come as ``{image, request_id}``."""
    base, key = studio
    token = seed_server_route(base, key)
    ws_url = f"ws://{base.removeprefix('http://')}/fal-ai/krea-wan-14b/realtime?fal_jwt_token={quote(token, safe='')}"
    frames, texts = [], []
    with connect(ws_url, max_size=2**24, open_timeout=20) as ws:
        assert json.loads(ws.recv(timeout=20)) == {"status": "ready"}
        ws.send(msgpack.packb({"prompt": FIRST_PROMPT, "num_blocks": 2, "width": 64, "height": 64}))
        with pytest.raises(ConnectionClosedOK):
            while True:
                message = ws.recv(timeout=60)
                (frames if isinstance(message, bytes) else texts).append(message)
    completed = json.loads(texts[-1])
    assert ws.close_code == 1000 and completed["status"] == "completed"
    decoded = [msgpack.unpackb(frame) for frame in frames]
    assert len(decoded) == completed["frames"] > 0 and all(d["image"][:2] == b"\xff\xd8" for d in decoded)
    assert {d["request_id"] for d in decoded} == {completed["session_id"]}


def test_fals_official_python_client_streams_from_the_studio(studio, monkeypatch):
    """``fal_client.SyncClient(key=<Studio API token>).realtime("fal-ai/krea-wan-14b")``, its
    fixed hosts pointed at the studio (docs/realtime.md: ``FAL_RUN_HOST`` and ``REST_URL``;
    here over plain http/ws, as the loopback studio serves no TLS)."""
    import fal_client
    import fal_client.client as fal_module

    base, key = studio
    monkeypatch.setattr(fal_module, "REST_URL", f"{base}/fal")
    monkeypatch.setattr(fal_module, "REALTIME_URL_FORMAT", f"ws://{base.removeprefix('http://')}/")
    images, statuses = 0, []
    with fal_client.SyncClient(key=key).realtime("fal-ai/krea-wan-14b") as connection:
        assert connection.recv() == {"status": "ready"}
        connection.send({"prompt": FIRST_PROMPT, "num_blocks": 2, "width": 64, "height": 64})
        while (message := connection.recv()) is not None:
            assert "error" not in message, message
            if "image" in message:
                images += 1
            else:
                statuses.append(message.get("status"))
    assert statuses[-1] == "completed" and images > 0
