"""Garbage in gets a 4xx with a message, never a 500, at every POST door."""

from __future__ import annotations

import http.client
import os
import socket
import subprocess
import sys
from urllib.parse import unquote, urlencode

import pytest

from tests.support.processes import ROOT, free_port, stop, wait_for

pytestmark = pytest.mark.django_db

DOORS = ["/api/videos/generate", "/models/video-generation-cloud/", "/api/fal"]
NOT_AN_OBJECT = ["[1, 2]", '"a string"', "42", "null", "{not json"]
BAD_FIELDS = {
    "/api/videos/generate": [
        '{"model": {"nested": true}, "prompt": "p"}',
        '{"model": "fal-ai/veo3.1", "prompt": ["x"]}',
        '{"model": "fal-ai/veo3.1", "prompt": "' + "x" * 5000 + '"}',
        '{"model": "fal-ai/veo3.1", "prompt": "p", "seed": 1e400}',
        '{"model": "fal-ai/veo3.1", "prompt": "p", "seed": "NaN"}',
        '{"model": "fal-ai/veo3.1", "prompt": "p", "seed": -1}',
        '{"model": "fal-ai/veo3.1", "prompt": "p", "duration": {"s": 4}}',
        '{"model": "fal-ai/veo3.1", "prompt": "p", "audio": "loud"}',
        '{"model": "fal-ai/wan/v2.2-a14b/image-to-video", "prompt": "p", "image": "javascript:alert(1)"}',
    ],
    "/models/video-generation-cloud/": [
        '{"prompt": ["x"]}',
        '{"prompt": {"text": "x"}}',
        '{"prompt": "p", "seed": "NaN"}',
        '{"prompt": "p", "num_inference_steps": 1e400}',
    ],
    "/api/fal": [
        '{"allowed_apps": [{"app": 1}]}',
        '{"allowed_apps": ["krea-wan-14b"], "token_expiration": [5]}',
        '{"allowed_apps": ["krea-wan-14b"], "token_expiration": -5}',
    ],
}
# JSON that Python's json takes and the studio cannot keep: nesting that ends in RecursionError
# (or past runtime.parsers.MAX_DEPTH), numbers past float's range. Then lone surrogates, valid
# JSON escapes with no UTF-8 for them when the value is shown again, at every door.
DEEP = "[" * 100_000 + "]" * 100_000
UNKEEPABLE = [
    DEEP,
    '{"prompt": ' + DEEP + "}",
    "[" * 40 + "]" * 40,
    '{"model": "fal-ai/fast-animatediff/text-to-video", "prompt": "p", "seed": 1' + "0" * 400 + "}",
    '{"model": "fal-ai/fast-animatediff/text-to-video", "prompt": "p", "extra": 1e400}',
]
SURROGATES = {
    "/api/videos/generate": [
        '{"model": "fal-ai/fast-animatediff/text-to-video", "prompt": "\\ud800"}',
        '{"model": "fal-ai/fast-animatediff/text-to-video", "prompt": "a cat \\udfff surfing"}',
        '{"model": "fal-ai/fast-animatediff/text-to-video", "prompt": "p", "\\udc80": "x"}',
        '{"model": "\\ud800", "prompt": "p"}',
    ],
    "/models/video-generation-cloud/": [
        '{"prompt": "\\ud800"}',
        '{"prompt": "p", "negative_prompt": "\\udc00"}',
    ],
    "/api/fal": [
        '{"allowed_apps": ["\\ud800"]}',
        '{"allowed_apps": ["krea-wan-14b"], "\\ud800": 1}',
    ],
}
# The body's declared charset: Django keeps any name codecs knows, bytes-to-bytes codecs included.
BAD_BYTES = [
    ("application/json", b"\xff\xfe\x00{"),
    ("application/json", b'{"prompt": "caf\xe9"}'),
    ("application/json; charset=rot13", b'{"prompt": "p"}'),
    ("application/json; charset=base64", b'{"prompt": "p"}'),
    ("application/json; charset=idna", b'xn--a.{"prompt": "p"}'),  # a plain UnicodeError, not a decode error
]
# An empty body is a request for defaults at /api/fal, and lacks the required fields elsewhere.
CASES = [(door, body) for door in DOORS for body in NOT_AN_OBJECT + UNKEEPABLE] + [
    ("/api/videos/generate", ""), ("/models/video-generation-cloud/", "")] + [
    (door, body) for door, bodies in BAD_FIELDS.items() for body in bodies] + [
    (door, body) for door, bodies in SURROGATES.items() for body in bodies]


def _id(value) -> str:
    text = value if isinstance(value, str) else repr(value)
    return text if len(text) < 60 else f"{text[:40]}...({len(text)} chars)"


@pytest.mark.parametrize(("door", "body"), CASES, ids=_id)
def test_garbage_gets_a_clear_4xx(api, fake_fal, fake_tt, door, body):
    response = api.generic("POST", door, body, content_type="application/json")
    assert 400 <= response.status_code < 500, (door, body[:200], response.status_code, response.content[:200])
    assert response.json()["error"]
    assert fake_fal.calls == [] and fake_tt.calls == []


@pytest.mark.parametrize("door", DOORS)
@pytest.mark.parametrize(("content_type", "body"), BAD_BYTES, ids=_id)
def test_a_body_in_no_usable_encoding_gets_a_clear_4xx(api, fake_fal, fake_tt, door, content_type, body):
    response = api.generic("POST", door, body, content_type=content_type)
    assert 400 <= response.status_code < 500, (door, body[:200], response.status_code, response.content[:200])
    assert response.json()["error"]
    assert fake_fal.calls == [] and fake_tt.calls == []


FORMS = [
    {"prompt": ["one", "two"], "seed": "9" * 5000},
    {"prompt": "p", "seed": "1e400", "num_inference_steps": "-" + "9" * 400},
    {"prompt": "p", "negative_prompt": "\ufffd" * 5000, "seed": ["1", "x"]},
]


@pytest.mark.parametrize("door", ["/api/videos/generate", "/models/video-generation-cloud/"])
@pytest.mark.parametrize("fields", FORMS, ids=_id)
def test_bad_form_fields_get_a_clear_4xx(api, fake_fal, fake_tt, door, fields):
    data = {"model": "fal-ai/fast-animatediff/text-to-video", **fields}
    for fmt in ("multipart", None):
        if fmt:
            response = api.post(door, data, format=fmt)
        else:
            pairs = [(k, item) for k, v in data.items() for item in (v if isinstance(v, list) else [v])]
            response = api.generic("POST", door, urlencode(pairs), content_type="application/x-www-form-urlencoded")
        assert 400 <= response.status_code < 500, (door, fmt, response.status_code, response.content[:200])
        assert response.json()["error"]
    assert fake_fal.calls == [] and fake_tt.calls == []


# --- static files through the real ASGI application --------------------------------------------
# The ASGI server hands over the path percent-decoded ("%2e%2e" is ".." by then), and keeps the
# bytes it got in raw_path. requests and browsers normalize ".." away, so the tests build the scope.
STATIC_PATHS = ["/static/../x", "/static/../../studio/settings.py", "/static/%2e%2e/x", "/static/%2E%2E/manage.py",
                "/static/..%2f..%2fsettings.py", "/static/..%2F..%2Fstudio%2Fsettings.py", "/static/css/../../x",
                "/static/..", "/static/./../manage.py", "/static/%00", "/static/..%5c..%5cx"]


async def _asgi_get(raw_path: str) -> tuple[int, bytes]:
    from asgiref.testing import ApplicationCommunicator

    from studio.asgi import application

    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "GET",
             "scheme": "http", "path": unquote(raw_path), "raw_path": raw_path.encode(), "root_path": "",
             "query_string": b"", "headers": [(b"host", b"127.0.0.1")], "client": ("127.0.0.1", 50000),
             "server": ("127.0.0.1", 8000)}
    communicator = ApplicationCommunicator(application, scope)
    await communicator.send_input({"type": "http.request", "body": b"", "more_body": False})
    start = await communicator.receive_output(10)
    body = b""
    while True:
        message = await communicator.receive_output(10)
        body += message.get("body", b"")
        if not message.get("more_body"):
            break
    await communicator.wait(5)
    return start["status"], body


@pytest.mark.parametrize("raw_path", STATIC_PATHS)
async def test_a_static_path_out_of_the_static_folders_is_a_404_through_asgi(raw_path):
    status, body = await _asgi_get(raw_path)
    assert status == 404, (raw_path, status, body[:200])
    assert b"SECRET_KEY" not in body and b"DJANGO_SETTINGS_MODULE" not in body


async def test_a_real_static_file_is_still_served_through_asgi():
    css = next(p for p in (ROOT / "static").rglob("*") if p.is_file())
    status, body = await _asgi_get("/static/" + css.relative_to(ROOT / "static").as_posix())
    assert status == 200 and body == css.read_bytes()


@pytest.mark.modes
def test_a_static_path_out_of_the_static_folders_is_a_404_from_daphne(tmp_path):
    """The same through the server the studio runs on, over a raw socket (no client normalizes)."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "DATABASE_URL")}
    env.update({"STUDIO_ENV_FILE": "", "STUDIO_DATA_DIR": str(tmp_path), "DJANGO_SETTINGS_MODULE": "studio.settings"})
    server = subprocess.Popen([sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(port),
                               "studio.asgi:application"], cwd=ROOT, env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for(lambda: socket.create_connection(("127.0.0.1", port), timeout=1).close() or True, 60,
                 "daphne to listen")
        for raw_path in [*STATIC_PATHS, "/static/%ff%fe", "/static/%ed%a0%80"]:
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            connection.request("GET", raw_path)
            response = connection.getresponse()
            body = response.read()
            connection.close()
            assert response.status == 404, (raw_path, response.status, body[:200])
    finally:
        stop(server)


@pytest.mark.parametrize("raw_path", STATIC_PATHS)
def test_djangos_test_client_answers_the_same_paths_404(client, raw_path):
    # The test client skips the static files handler (it is the ASGI/WSGI server's wrapper):
    # Django's URL resolver answers, and no URL matches; a NUL in a path is refused before
    # (studio.middleware.UnstorableTextMiddleware: no database keeps it).
    assert client.get(raw_path).status_code == (400 if "%00" in raw_path else 404)
