"""FAL_KEY and the Tenstorrent token never appear in a reply (body or header), a page, or a
log line, on success or failure."""

from __future__ import annotations

import io
import json
import logging

import pytest

from studio.logging import redact

pytestmark = pytest.mark.django_db


def everything_in(response) -> str:
    content = b"".join(response.streaming_content) if response.streaming else response.content
    return content.decode("latin-1") + json.dumps(dict(response.items()))


@pytest.fixture
def console_output():
    """What the studio's configured console handler writes (LOGGING in settings)."""
    from studio.logging import RedactSecretsFilter

    handler = next(h for h in logging.getLogger().handlers
                   if any(isinstance(f, RedactSecretsFilter) for f in h.filters))
    stream = io.StringIO()
    previous = handler.setStream(stream)
    yield stream
    handler.setStream(previous)


def test_no_key_or_token_in_any_reply_or_log_line(api, logged_in, fake_fal, fake_tt, console_output, caplog):
    caplog.set_level(logging.DEBUG)
    secrets = [fake_fal.key, fake_tt.token]
    replies = [
        api.post("/api/videos/generate", {"model": "fal-ai/fast-animatediff/text-to-video", "prompt": "ok"},
                 format="json"),
        api.post("/api/videos/generate", {"model": "tenstorrent/wan2.2-t2v", "prompt": "ok"}, format="json"),
        api.post("/api/fal", {"allowed_apps": ["krea-wan-14b"]}, format="json"),
        api.post("/api/fal/proxy", data="{}", content_type="application/json",
                 HTTP_X_FAL_TARGET_URL=f"{fake_fal.base_url}/fal-ai/fast-animatediff/text-to-video"),
        logged_in.post("/models/video-generation-cloud/", {"prompt": "ok"}),
    ]
    fake_fal.unauthorized = True
    fake_tt.unauthorized = True
    replies += [
        api.post("/api/videos/generate", {"model": "fal-ai/fast-animatediff/text-to-video", "prompt": "no"},
                 format="json"),
        api.post("/api/videos/generate", {"model": "tenstorrent/wan2.2-t2v", "prompt": "no"}, format="json"),
        api.post("/api/fal", {}, format="json"),
        logged_in.post("/models/video-generation-cloud/", {"prompt": "no"}),
    ]
    replies += [logged_in.get(path) for path in ("/", "/video-generation/", "/realtime/", "/gallery/",
                                                 "/api/models/", "/health", "/api/schema/")]
    assert [r.status_code for r in replies[:5]] == [200, 200, 200, 200, 200]
    assert {r.status_code for r in replies[5:9]} == {502}
    for response in replies:
        text = everything_in(response)
        for secret in secrets:
            assert secret not in text, f"{secret!r} leaked in a reply to {response.request['PATH_INFO']}"
    emitted = console_output.getvalue()
    assert "generation with fal-ai/fast-animatediff/text-to-video failed: unauthorized" in emitted
    assert "POST /v1/videos/generations" in emitted  # urllib3's DEBUG lines went through too
    for secret in secrets:
        assert secret not in emitted
        assert secret not in caplog.text


def test_the_log_filter_masks_keys_headers_and_token_parameters():
    line = ("POST https://fal.run/x?fal_jwt_token=abc.def&x=1 headers={'Authorization': 'Key sk-live-123'} "
            "Authorization: Bearer tt-secret-9 my-key-value")
    cleaned = redact(line, ["my-key-value"])
    for secret in ("abc.def", "sk-live-123", "tt-secret-9", "my-key-value"):
        assert secret not in cleaned
    assert "x=1" in cleaned
