"""A backend is one module: a test-only backend, registered here and nowhere else, works
through every door a user has (REST job, the synchronous door, the generation page, the
bulk command, cancel and retry), driven by the same job lifecycle as fal and Tenstorrent.

Embedded mode only: the backend lives in this test process, and Celery worker processes of
the services mode could not see it.
"""

from __future__ import annotations

import io
import itertools
import json
import re
import threading
from decimal import Decimal
from typing import Any

import pytest
from django.core.management import call_command
from PIL import Image

from model_control import backends
from model_control.backends import GeneratedVideo, ProviderStatus, RemoteBackend, Submitted, catalog
from model_control.catalog import IMAGE_TO_VIDEO, TEXT_TO_VIDEO, VideoModel, flat_per_second
from model_control.inputs import ImageInput, Param
from tests.conftest import EMBEDDED
from tests.fakes.media import tiny_mp4
from tests.support.jobs import wait_until
from tests.support.media import decoded
from videogen.models import Job

pytestmark = [pytest.mark.django_db(transaction=True),
              pytest.mark.skipif(not EMBEDDED, reason="the backend lives in this process")]


class EchoBackend(RemoteBackend):
    """Answers every request with a clip after ``polls`` status checks; remembers every call."""

    name = "echo"
    title = "Echo (test backend)"

    def __init__(self) -> None:
        self.calls: list[tuple[str, Any]] = []
        self.checked: dict[str, int] = {}
        self.polls = 2
        self._ids = itertools.count(1)
        self._lock = threading.Lock()

    def models(self) -> list[VideoModel]:
        prompt = Param("prompt", "text", "text", required=True)
        return [
            VideoModel("echo/t2v", "Echo text to video", self.name, TEXT_TO_VIDEO,
                       (prompt, Param("seed", "seed", "int", minimum=0, maximum=99)),
                       backend_title=self.title, price=flat_per_second("0.01"), aliases=("echo",)),
            VideoModel("echo/i2v", "Echo image to video", self.name, IMAGE_TO_VIDEO,
                       (prompt, Param("image", "picture", "image", required=True)),
                       backend_title=self.title),
        ]

    def missing(self) -> str | None:
        return None

    def submit(self, model, values, *, timeout, resolve_image=None, webhook_url=None) -> Submitted:
        fields = model.wire_fields(values)
        for name, value in list(fields.items()):
            if isinstance(value, ImageInput):
                fields[name] = f"<{len(value.data)} bytes>"
        with self._lock:
            request_id = f"echo-{next(self._ids)}"
            self.calls.append(("submit", (model.id, fields)))
        return Submitted(request_id, fields)

    def check(self, model, request_id) -> ProviderStatus:
        with self._lock:
            self.checked[request_id] = self.checked.get(request_id, 0) + 1
            done = self.checked[request_id] >= self.polls
        return ProviderStatus("completed" if done else "running", progress=0.5)

    def fetch(self, model, request_id, fields, *, timeout) -> GeneratedVideo:
        self.calls.append(("fetch", request_id))
        return GeneratedVideo(tiny_mp4(seed=7), "video/mp4", model.id, self.name, request_id, fields)

    def cancel(self, model, request_id) -> str:
        self.calls.append(("cancel", request_id))
        return "CANCELLED"


@pytest.fixture
def echo(settings):
    settings.VIDEO_POLL_INTERVAL = 0.02
    backend = backends.register(EchoBackend())
    yield backend
    backends.unregister(backend.name)


def test_it_is_in_the_catalog_and_the_models_api(api, echo):
    assert catalog().get("echo") is catalog().require("echo/t2v")
    listed = {m["id"]: m for m in api.get("/api/models/").json()["models"]}
    assert listed["echo/t2v"]["backend_title"] == "Echo (test backend)" and listed["echo/t2v"]["configured"]
    estimate = api.get("/api/models/echo/t2v/estimate").json()
    assert Decimal(estimate["estimated_cost"]) == Decimal("0.05")


def test_a_rest_job_runs_to_its_video_and_retries(api, echo):
    response = api.post("/api/jobs/", {"model": "echo", "prompt": "a heron", "seed": 3}, format="json")
    assert response.status_code == 202, response.content[:300]
    job = wait_until(api, response.json()["id"])
    assert job["status"] == "completed" and job["provider_request_id"] == "echo-1", job
    assert job["backend"] == "echo" and job["video"]["duration_s"] > 0
    assert echo.calls[0] == ("submit", ("echo/t2v", {"text": "a heron", "seed": 3}))
    assert echo.checked["echo-1"] == 2  # polled until the backend said completed
    retried = api.post(f"/api/jobs/{job['id']}/retry")
    assert retried.status_code == 202
    assert wait_until(api, retried.json()["id"])["status"] == "completed"
    assert [c for c in echo.calls if c[0] == "submit"][-1] == ("submit", ("echo/t2v", {"text": "a heron", "seed": 3}))


def test_bad_input_is_refused_before_the_backend_hears_of_it(api, echo):
    response = api.post("/api/jobs/", {"model": "echo/t2v", "prompt": "x", "seed": 100}, format="json")
    assert response.status_code == 400 and "seed" in response.json()["fields"]
    assert echo.calls == [] and Job.objects.count() == 0


def test_the_synchronous_door_answers_the_mp4(api, echo):
    response = api.post("/api/videos/generate", {"model": "echo/t2v", "prompt": "a kite"}, format="json")
    assert response.status_code == 200, response.content[:300]
    assert response["Content-Type"] == "video/mp4" and response["X-Studio-Model"] == "echo/t2v"
    assert decoded(response.content)[0] > 0


def test_cancel_reaches_the_backend(api, echo):
    echo.polls = 10**6
    job_id = api.post("/api/jobs/", {"model": "echo/t2v", "prompt": "never done"}, format="json").json()["id"]
    wait_until(api, job_id, statuses=("running",))
    assert api.post(f"/api/jobs/{job_id}/cancel").json()["status"] == "cancelled"
    request_id = Job.objects.get(pk=job_id).provider_request_id
    wait_until_true(lambda: ("cancel", request_id) in echo.calls)


def wait_until_true(check, timeout: float = 10) -> None:
    import time

    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def test_the_generation_page_offers_it_with_its_inputs(logged_in, echo):
    html = logged_in.get("/video-generation/?model=echo/t2v").content.decode()
    data = json.loads(re.search(r'<script id="page-data" type="application/json">(.*?)</script>', html, re.S).group(1))
    assert data["selected"] == "echo/t2v"
    model = next(m for m in data["models"] if m["id"] == "echo/t2v")
    assert [i["name"] for i in model["inputs"]] == ["prompt", "seed"]
    assert '<optgroup label="Echo (test backend)">' in html
    home = logged_in.get("/").content.decode()
    assert "Echo text to video" in home


def test_the_bulk_command_makes_one_job_per_image(api, echo, user, tmp_path):
    images = tmp_path / "images"
    images.mkdir()
    for n in range(2):
        Image.new("RGB", (32, 32), (90 * n, 10, 10)).save(images / f"{n}.png")
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("it blinks\n")
    out = io.StringIO()
    call_command("bulk_generate", str(prompts), "--images-dir", str(images), "--model", "echo/i2v",
                 "--user", user.username, "--yes", stdout=out, stderr=io.StringIO())
    jobs = Job.objects.filter(model_id="echo/i2v")
    assert jobs.count() == 2 and {j.status for j in jobs} == {"completed"}, out.getvalue()
    sent = [c[1][1] for c in echo.calls if c[0] == "submit"]
    assert all(s["text"] == "it blinks" and s["picture"].endswith("bytes>") for s in sent)
