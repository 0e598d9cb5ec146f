"""FAL_KEY and the Tenstorrent token never appear in a reply (body or header), a page, or a
log line, on success or failure."""

from __future__ import annotations

import io
import json
import logging
import re

import pytest

from studio.logging import redact

pytestmark = pytest.mark.django_db(transaction=True)


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
    # fal and Tenstorrent refuse the keys (502; TT Studio's door passes the upstream 401 on); the
    # realtime token is the studio's own, so fal's refusal does not touch it.
    assert [r.status_code for r in replies[5:9]] == [502, 502, 200, 401]
    for response in replies:
        text = everything_in(response)
        for secret in secrets:
            assert secret not in text, f"{secret!r} leaked in a reply to {response.request['PATH_INFO']}"
    emitted = console_output.getvalue()
    assert "failed: unauthorized: fal refused the API key" in emitted
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


def test_an_upstream_error_that_echoes_the_token_reaches_nobody(api, logged_in, fake_tt, console_output):
    """A Tenstorrent 500 whose body lists the request's headers (Bearer <token>, host:port)."""
    server = fake_tt.base_url.removeprefix("http://")
    replies = []
    for door in ("studio", "tt"):
        fake_tt.echo_headers_next = 1
        if door == "studio":
            replies.append(api.post("/api/videos/generate", {"model": "tenstorrent/wan2.2-t2v", "prompt": "x"},
                                    format="json"))
        else:
            replies.append(logged_in.post("/models/video-generation-cloud/", {"prompt": "x"}))
    for response, status in zip(replies, (502, 500), strict=True):  # TT Studio's door: any other failure is 500
        assert response.status_code == status
        text = everything_in(response)
        assert "Internal Server Error" in response.json()["error"]  # the upstream's words still help
        assert fake_tt.token not in text
        assert server not in text and "127.0.0.1" not in text
    assert fake_tt.token not in console_output.getvalue()


def test_a_provider_that_cannot_be_reached_is_named_without_its_address(api, settings):
    settings.FAL_KEY = "fal-test-key"
    settings.FAL_QUEUE_URL = "http://127.0.0.1:9"  # nothing listens on the discard port
    response = api.post("/api/videos/generate", {"model": "fal-ai/fast-animatediff/text-to-video",
                                                 "prompt": "x"}, format="json")
    assert response.status_code == 502
    assert "Cannot reach fal" in response.json()["error"]
    assert "127.0.0.1" not in response.content.decode() and ":9" not in response.content.decode()


def test_any_error_reply_holding_a_configured_secret_is_scrubbed(rf, settings):
    from django.http import JsonResponse

    from studio.middleware import RedactErrorRepliesMiddleware

    settings.FAL_KEY = "fal-live-key-123456"
    leaky = RedactErrorRepliesMiddleware(lambda request: JsonResponse(
        {"error": "upstream said: key fal-live-key-123456 is wrong"}, status=502))
    assert b"fal-live-key-123456" not in leaky(rf.get("/")).content
    assert b"[redacted]" in leaky(rf.get("/")).content


def test_redaction_hides_hosts_but_keeps_ordinary_text():
    from model_control.redaction import hide_hosts

    assert hide_hosts("failed at http://10.0.0.5:8080/v1/videos (try again)") == "failed at [server] (try again)"
    assert hide_hosts("localhost:6379 and [::1]:8000") == "[server] and [server]"
    for ordinary in ("at 12:30", "aspect 16:9", "HTTP 500: boom"):
        assert hide_hosts(ordinary) == ordinary


def test_no_page_or_script_holds_a_provider_key(logged_in, user, settings):
    """Every page, with jobs, recordings and a token in it, and every script and stylesheet a
    page loads, rendered with both providers' secrets configured."""
    from pathlib import Path

    from django.contrib.staticfiles import finders

    from videogen.models import Job, Video

    settings.FAL_KEY = "fal-live-secret-0123456789"
    settings.CLOUD_VIDEO_GENERATION_URL = "http://127.0.0.1:9/v1/videos/generations"
    settings.CLOUD_VIDEO_GENERATION_AUTH_TOKEN = "tt-live-secret-0123456789"
    secrets = [settings.FAL_KEY, settings.CLOUD_VIDEO_GENERATION_AUTH_TOKEN]
    job = Job.objects.create(owner=user, backend="fal", model_id="fal-ai/veo3.1", kind="text-to-video",
                             status="failed", input={"prompt": "a boat"}, error_type="unauthorized",
                             error_message="fal refused the API key")
    video = Video.objects.create(owner=user, file="videos/x.mp4", parameters={"kind": "realtime", "backend": "fal",
                                                                             "prompt": "waves"})
    logged_in.post("/account/token/")
    pages = ["/", "/video-generation/", f"/video-generation/?from={job.pk}", f"/video-generation/?job={job.pk}",
             "/realtime/", "/gallery/", "/gallery/?kind=realtime", f"/gallery/items/{job.pk}/",
             f"/gallery/items/{video.pk}/", "/account/token/", "/api/models/", f"/api/jobs/{job.pk}/",
             "/api/videos/"]
    scripts = set()
    for path in pages:
        response = logged_in.get(path)
        assert response.status_code == 200, path
        text = everything_in(response)
        for secret in secrets:
            assert secret not in text, f"{secret!r} leaked in {path}"
        scripts |= set(re.findall(r'(?:src|href)="/static/([^"]+\.(?:js|mjs|css))"', text))
    assert {"studio/generate.js", "studio/gallery.js", "studio/studio.css"} <= scripts
    root = Path(finders.find("studio/studio.js")).parent.parent
    scripts |= {str(p.relative_to(root)) for p in root.rglob("*") if p.suffix in (".js", ".mjs")}
    for name in scripts:
        content = Path(finders.find(name)).read_text()
        for secret in [*secrets, "FAL_KEY", "AUTH_TOKEN"]:
            assert secret not in content, f"{secret!r} in {name}"
