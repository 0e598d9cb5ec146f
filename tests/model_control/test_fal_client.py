"""FalClient against the fake fal over real HTTP: retries exactly where fal's client retries,
cancel, CDN upload, status with logs."""

from __future__ import annotations

import time

import pytest

from model_control.errors import (
    ProviderRejected,
    ProviderTimeout,
    ProviderUnauthorized,
    ProviderUnavailable,
)
from model_control.fal import FalClient, backoff_delay

APP = "fal-ai/wan/v2.2-a14b/image-to-video"


@pytest.fixture
def client(fake_fal) -> FalClient:
    settings = fake_fal.settings()
    return FalClient(fake_fal.key, queue_url=settings["FAL_QUEUE_URL"], run_url=settings["FAL_RUN_URL"],
                     rest_url=settings["FAL_REST_URL"], cdn_url=settings["FAL_CDN_URL"], timeout=10)


def submits(fake) -> int:
    return fake.count("POST", "/fal-ai/wan")


@pytest.mark.parametrize("switch", ["ingress_errors", "rate_limited"])
def test_it_retries_ingress_errors_and_rate_limits(client, fake_fal, switch):
    setattr(fake_fal, switch, 2)
    request = client.submit(APP, {"prompt": "p", "image_url": "https://x/y.png"})
    assert request.request_id in fake_fal.requests
    assert submits(fake_fal) == 3


def test_it_gives_up_after_max_attempts(client, fake_fal):
    client.max_attempts = 3
    fake_fal.ingress_errors = 5
    with pytest.raises(ProviderUnavailable, match="runner_unavailable"):
        client.submit(APP, {"prompt": "p"})
    assert submits(fake_fal) == 3


def test_it_does_not_retry_an_error_from_the_app_itself(client, fake_fal):
    fake_fal.app_errors = 1
    with pytest.raises(ProviderUnavailable):
        client.submit(APP, {"prompt": "p"})
    assert submits(fake_fal) == 1


def test_it_does_not_retry_a_user_set_timeout(client, fake_fal):
    fake_fal.user_timeout = 1
    with pytest.raises(ProviderTimeout, match="your timeout"):
        client.submit(APP, {"prompt": "p"}, request_timeout=30)
    assert submits(fake_fal) == 1
    assert fake_fal.calls[0]["headers"]["x-fal-request-timeout"] == "30"


def test_it_does_not_retry_a_422_and_names_the_field(client, fake_fal):
    fake_fal.reject_next = 1
    with pytest.raises(ProviderRejected) as caught:
        client.submit(APP, {"prompt": "p"})
    assert caught.value.details == [{"field": "prompt", "message": "Prompt is not allowed"}]
    assert submits(fake_fal) == 1


def test_it_never_resends_a_submit_whose_connection_dropped(client, fake_fal):
    fake_fal.drop_next = 1
    with pytest.raises(ProviderUnavailable, match="Cannot reach fal"):
        client.submit(APP, {"prompt": "p"})
    assert submits(fake_fal) == 1


def test_a_wrong_key_is_unauthorized_and_not_retried(client, fake_fal):
    client.key = "wrong"
    with pytest.raises(ProviderUnauthorized, match="FAL_KEY"):
        client.submit(APP, {"prompt": "p"})
    assert submits(fake_fal) == 1


def test_it_follows_the_urls_fal_returns_and_reports_status_with_logs(client, fake_fal):
    seen = []
    request = client.submit(APP, {"prompt": "p", "image_url": "https://x/y.png"},
                            webhook_url="http://127.0.0.1:1/hook?a=1")
    assert request.status_url.endswith(f"/fal-ai/wan/requests/{request.request_id}/status")
    assert fake_fal.calls[0]["query"]["fal_webhook"] == "http://127.0.0.1:1/hook?a=1"
    deadline = time.monotonic() + 10
    while not (seen and seen[-1].completed) and time.monotonic() < deadline:
        seen.append(client.status(request, logs=True))
        time.sleep(0.02)
    output = client.result(request)
    assert output["video"]["url"].endswith(".mp4")
    assert seen[-1].status == "COMPLETED"
    assert {s.status for s in seen} >= {"IN_PROGRESS", "COMPLETED"}
    assert any(s.logs for s in seen)
    status_calls = [c for c in fake_fal.calls if c["path"].endswith("/status")]
    assert status_calls and all(c["query"]["logs"] == "1" for c in status_calls)


def test_it_cancels_and_reports_what_fal_said(client, fake_fal):
    fake_fal.processing_time = 30
    request = client.submit(APP, {"prompt": "p"})
    assert client.cancel(request) == "CANCELLATION_REQUESTED"
    assert fake_fal.requests[request.request_id]["cancelled"]
    assert client.cancel(request) == "ALREADY_COMPLETED"
    assert client.cancel(client.handle(APP, "no-such-request")) == "NOT_FOUND"


def test_it_uploads_to_the_cdn_with_a_cached_storage_token(client, fake_fal):
    first = client.upload(b"\x89PNG one", content_type="image/png", file_name="one.png")
    second = client.upload(b"\x89PNG two", content_type="image/png", file_name="two.png")
    assert first != second
    assert [u["data"] for u in fake_fal.uploads] == [b"\x89PNG one", b"\x89PNG two"]
    assert fake_fal.uploads[0]["file_name"] == "one.png"
    assert fake_fal.count("POST", "/rest/storage/auth/token") == 1
    assert client.download(first)[0] == b"\x89PNG one"


def test_sync_run_returns_the_output(client, fake_fal):
    output = client.run("fal-ai/fast-animatediff/text-to-video", {"prompt": "p"})
    assert output["video"]["content_type"] == "video/mp4"


def test_backoff_grows_exponentially_with_jitter_and_is_capped():
    import random

    rng = random.Random(1)
    for attempt in range(12):
        delay = backoff_delay(attempt, rng)
        nominal = min(0.1 * 2**attempt, 30)
        assert 0.5 * nominal <= delay <= 1.5 * nominal
