"""POST /models/video-generation-cloud/: TT Studio's view, reply for reply (docs/protocols.md)."""

from __future__ import annotations

import json

import pytest

pytestmark = pytest.mark.django_db
URL = "/models/video-generation-cloud/"


@pytest.mark.parametrize("fake_name", ["fake_tt_legacy", "fake_tt"])
def test_it_answers_the_upstream_video_as_an_attachment(logged_in, request, fake_name):
    fake = request.getfixturevalue(fake_name)
    response = logged_in.post(URL, {"prompt": "a lighthouse in a storm", "deploy_id": "cloud-1"})
    assert response.status_code == 200
    assert response["Content-Type"] == "video/mp4"
    assert response["Content-Disposition"] == "attachment; filename=generated_video.mp4"
    job_id = next(iter(fake.jobs))
    assert response.content == fake.video_bytes(job_id)
    assert fake.bodies[0] == {"prompt": "a lighthouse in a storm", "negative_prompt": "low quality",
                              "num_inference_steps": 12, "seed": 0}
    assert fake.calls[0]["headers"]["authorization"] == "Bearer tt-test-token"


def test_it_takes_json_and_the_browser_path_and_optional_overrides(logged_in, fake_tt_legacy):
    response = logged_in.post("/models-api/video-generation-cloud/", data=json.dumps(
        {"prompt": "waves", "deploy_id": 3, "negative_prompt": "blurry", "num_inference_steps": 20, "seed": 7}),
        content_type="application/json")
    assert response.status_code == 200
    assert fake_tt_legacy.bodies[-1] == {"prompt": "waves", "negative_prompt": "blurry",
                                          "num_inference_steps": 20, "seed": 7}


@pytest.mark.parametrize("data", [{}, {"prompt": ""}, {"prompt": "   "}, {"deploy_id": "1"}])
def test_it_needs_a_prompt(logged_in, fake_tt_legacy, data):
    response = logged_in.post(URL, data)
    assert response.status_code == 400
    assert response.content == b'{"error":"prompt is required"}'
    assert response["Content-Type"] == "application/json"
    assert fake_tt_legacy.calls == []


def test_it_says_when_the_cloud_url_is_not_configured(logged_in, settings):
    settings.CLOUD_VIDEO_GENERATION_URL = None
    response = logged_in.post(URL, {"prompt": "x"})
    assert response.status_code == 503
    assert response.content == b'{"error":"Cloud video generation URL not configured"}'


@pytest.mark.parametrize("fake_name", ["fake_tt_legacy", "fake_tt"])
def test_it_times_out_with_tt_studios_message(logged_in, settings, request, fake_name):
    fake = request.getfixturevalue(fake_name)
    fake.delay = 5
    settings.VIDEO_GENERATION_TIMEOUT = 0.5
    response = logged_in.post(URL, {"prompt": "slow"})
    assert response.status_code == 504
    assert response.content == b'{"error":"Video generation timed out. Please try again."}'


def test_it_rejects_a_bad_override_before_calling_upstream(logged_in, fake_tt_legacy):
    response = logged_in.post(URL, {"prompt": "x", "num_inference_steps": "many"})
    assert response.status_code == 400
    assert "num_inference_steps" in response.json()["error"]
    assert fake_tt_legacy.calls == []


# TT Studio's view passes an upstream 401 and 503 on with their status and answers every
# other upstream failure 500 (a timeout: 504, above); the body keeps the studio's message.
@pytest.mark.parametrize(("fake_name", "switch", "status", "words"), [
    ("fake_tt_legacy", "unauthorized", 401, "CLOUD_VIDEO_GENERATION_AUTH_TOKEN"),
    ("fake_tt", "unauthorized", 401, "CLOUD_VIDEO_GENERATION_AUTH_TOKEN"),
    ("fake_tt_legacy", "unavailable_next", 503, "HTTP 503"),
    ("fake_tt", "unavailable_next", 503, "HTTP 503"),
    ("fake_tt_legacy", "fail_next", 500, "Video generation failed"),
    ("fake_tt", "fail_next", 500, "failed the job"),
    ("fake_tt_legacy", "reject_next", 500, "rejected the input"),
    ("fake_tt_legacy", "echo_headers_next", 500, "HTTP 500"),
    ("fake_tt_legacy", "drop_next", 500, "Cannot reach Tenstorrent"),
])
def test_upstream_failures_answer_tt_studios_status_with_our_message(logged_in, request, fake_name, switch,
                                                                      status, words):
    fake = request.getfixturevalue(fake_name)
    setattr(fake, switch, True if switch == "unauthorized" else 1)
    response = logged_in.post(URL, {"prompt": "x"})
    assert response.status_code == status
    assert response["Content-Type"] == "application/json"
    assert words in response.json()["error"]
    assert b"tt-test-token" not in response.content and fake.base_url.encode() not in response.content


def test_anonymous_callers_get_401(client, fake_tt_legacy):
    assert client.post(URL, {"prompt": "x"}).status_code == 401
    assert fake_tt_legacy.calls == []
