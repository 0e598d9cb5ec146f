"""TenstorrentClient against the fake over real HTTP: legacy vs media server, cancel,
polling through blips, failures."""

from __future__ import annotations

import threading

import pytest

from model_control.errors import ProviderCancelled, ProviderUnavailable
from model_control.tenstorrent import TenstorrentClient

FIELDS = {"prompt": "p", "negative_prompt": "low quality", "num_inference_steps": 12, "seed": 0}


def client_for(fake) -> TenstorrentClient:
    return TenstorrentClient(fake.url, fake.token, poll_interval=0.02)


def test_the_media_server_job_is_polled_and_downloaded(fake_tt):
    seen = []
    video = client_for(fake_tt).generate(FIELDS, timeout=10, on_status=lambda job: seen.append(job.status))
    assert video.job_id in fake_tt.jobs
    assert video.content == fake_tt.video_bytes(video.job_id)
    assert seen[0] == "queued" and seen[-1] == "completed"
    assert fake_tt.count("GET", f"/v1/videos/generations/{video.job_id}/download") == 1


def test_the_legacy_endpoint_answers_bytes_directly(fake_tt_legacy):
    video = client_for(fake_tt_legacy).generate(FIELDS, timeout=10)
    assert video.job_id is None and video.content[4:8] == b"ftyp"


def test_a_job_can_be_cancelled_and_the_waiter_is_told(fake_tt):
    fake_tt.delay = 30
    client = client_for(fake_tt)
    outcome = {}

    def wait() -> None:
        try:
            client.generate(FIELDS, timeout=20)
        except ProviderCancelled as exc:
            outcome["error"] = exc

    waiter = threading.Thread(target=wait)
    waiter.start()
    while not fake_tt.jobs:
        threading.Event().wait(0.02)
    job_id = next(iter(fake_tt.jobs))
    assert client.cancel(job_id) == "cancelling"
    waiter.join(10)
    assert outcome["error"].request_id == job_id


def test_a_poll_that_hits_a_blip_is_tried_again(fake_tt):
    fake_tt.delay = 0.3
    client = client_for(fake_tt)
    original = client.job

    def flaky(job_id, **kwargs):
        if not getattr(flaky, "done", False):
            flaky.done = True
            fake_tt.unavailable_next = 1
        return original(job_id, **kwargs)

    client.job = flaky
    assert client.generate(FIELDS, timeout=10).content


def test_a_503_on_submit_is_unavailable(fake_tt):
    fake_tt.unavailable_next = 1
    with pytest.raises(ProviderUnavailable, match="HTTP 503"):
        client_for(fake_tt).generate(FIELDS, timeout=10)
