"""/api/jobs/: durable jobs end to end against the fake fal, on the embedded threads and on a
real Celery worker with Redis and PostgreSQL (the services pass)."""

from __future__ import annotations

import io
import time
from pathlib import Path

import pytest
from django.conf import settings as django_settings
from django.core.files.uploadedfile import SimpleUploadedFile
from PIL import Image
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from tests.conftest import EMBEDDED
from tests.fakes.fal import FakeFal
from tests.support.jobs import wait_until
from tests.support.processes import celery_worker, worker_env
from videogen.gallery import media
from videogen.jobs import services
from videogen.models import Job, JobStatus

pytestmark = [pytest.mark.modes, pytest.mark.django_db(transaction=True)]

T2V = "fal-ai/fast-animatediff/text-to-video"
I2V = "fal-ai/wan/v2.2-a14b/image-to-video"


@pytest.fixture(scope="module")
def fal_server():
    with FakeFal() as fake:
        yield fake


@pytest.fixture(scope="module")
def worker_media(fal_server, django_db_setup, django_db_blocker, tmp_path_factory):
    """The services pass: one real worker for the module, sharing the test's media folder."""
    if EMBEDDED:
        yield None
        return
    folder = tmp_path_factory.mktemp("media")
    with django_db_blocker.unblock():
        env = {**worker_env(), **fal_server.settings(), "STUDIO_MEDIA_ROOT": str(folder),
               "VIDEO_POLL_INTERVAL": "0.05", "JOB_DOWNLOAD_RETRY_S": "0.2"}
    with celery_worker(env, queues="default"):
        yield folder


@pytest.fixture
def fal(fal_server, worker_media, settings):
    for name, value in fal_server.settings().items():
        setattr(settings, name, value)
    settings.VIDEO_POLL_INTERVAL = 0.05
    if worker_media is not None:
        settings.MEDIA_ROOT = worker_media
    fal_server.processing_time, fal_server.reject_next, fal_server.complete_with_error = 0.2, 0, False
    fal_server.cdn_errors = 0
    return fal_server


def png() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (64, 48), (20, 200, 40)).save(out, "PNG")
    return out.getvalue()


def submits(fal, prompt: str) -> int:
    return sum(1 for r in fal.requests.values() if r["input"].get("prompt") == prompt)


def test_a_text_to_video_job_completes_with_its_file_thumbnail_and_sidecar(api, fal):
    response = api.post("/api/jobs/", {"model": T2V, "prompt": "a lighthouse at dusk", "seed": 7}, format="json")
    assert response.status_code == 202, response.content[:300]
    assert response["Location"] == f"/api/jobs/{response.json()['id']}/"
    job = wait_until(api, response.json()["id"])
    assert job["status"] == "completed", job
    assert job["provider_request_id"] in fal.requests and job["status_sequence"] >= 3
    assert job["progress"] == 1.0 and job["finished_at"] and job["estimated_cost"] is None
    video = job["video"]
    root = Path(django_settings.MEDIA_ROOT)
    stored = Job.objects.get(pk=job["id"]).video
    mp4 = root / stored.file.name
    assert mp4.read_bytes()[4:8] == b"ftyp" and video["size"] == mp4.stat().st_size
    assert media.read_metadata(mp4.read_bytes())["request"] == {"prompt": "a lighthouse at dusk", "seed": 7}
    assert (root / stored.thumbnail.name).read_bytes()[:3] == b"\xff\xd8\xff"  # a JPEG of the first frame
    assert mp4.with_suffix(".json").exists() and video["duration_s"] == pytest.approx(1.0, abs=0.2)
    served = api.get(f"/api/jobs/{job['id']}/video")
    assert b"".join(served.streaming_content) == mp4.read_bytes()
    assert submits(fal, "a lighthouse at dusk") == 1


def test_wait_answers_201_with_the_finished_job(api, fal):
    response = api.post("/api/jobs/?wait=20", {"model": T2V, "prompt": "waited for"}, format="json")
    assert response.status_code == 201 and response.json()["status"] == "completed"


def test_an_image_to_video_job_uploads_the_image_once_per_content(api, fal):
    uploads_before = len(fal.uploads)
    ids = []
    for prompt in ("the cat waves", "the cat bows"):
        image = SimpleUploadedFile("cat.png", png(), content_type="image/png")
        response = api.post("/api/jobs/", {"model": I2V, "prompt": prompt, "image": image, "resolution": "480p"},
                            format="multipart")
        assert response.status_code == 202, response.content[:300]
        ids.append(response.json()["id"])
    jobs = [wait_until(api, job_id) for job_id in ids]
    assert [j["status"] for j in jobs] == ["completed", "completed"]
    assert len(fal.uploads) == uploads_before + 1  # the second job reused the CDN upload
    sent = fal.requests[jobs[1]["provider_request_id"]]["input"]
    assert sent["image_url"] == fal.uploads[-1]["access_url"]


def test_the_i2v_services_names_and_aliases_work(api, fal):
    response = api.post("/api/jobs/", {"model": "wan", "image_url": "https://example.com/cat.png",
                                       "motion_prompt": "slow zoom", "duration_sec": 5, "resolution": "480p"},
                        format="json")
    assert response.status_code == 202, response.content[:300]
    job = wait_until(api, response.json()["id"])
    assert job["model_id"] == "fal-ai/wan-25-preview/image-to-video" and job["status"] == "completed"
    assert fal.requests[job["provider_request_id"]]["input"] == {
        "prompt": "slow zoom", "image_url": "https://example.com/cat.png", "duration": "5", "resolution": "480p"}


def test_cancel_stops_the_job_here_and_at_fal(api, fal):
    fal.processing_time = 30
    job_id = api.post("/api/jobs/", {"model": T2V, "prompt": "to cancel"}, format="json").json()["id"]
    running = wait_until(api, job_id, statuses=("submitted", "running"))
    cancelled = api.post(f"/api/jobs/{job_id}/cancel")
    assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
    request_id = running["provider_request_id"]
    deadline = time.monotonic() + 10
    while not fal.requests[request_id]["cancelled"] and time.monotonic() < deadline:
        time.sleep(0.05)
    assert fal.requests[request_id]["cancelled"]
    assert wait_until(api, job_id)["status"] == "cancelled"
    assert api.post(f"/api/jobs/{job_id}/cancel").json()["status"] == "cancelled"  # idempotent


def test_a_failure_keeps_its_type_and_message_and_retry_makes_a_new_job(api, fal):
    fal.reject_next = 1
    job_id = api.post("/api/jobs/", {"model": T2V, "prompt": "refused once"}, format="json").json()["id"]
    failed = wait_until(api, job_id)
    assert failed["status"] == "failed" and failed["error_type"] == "rejected"
    assert "Prompt is not allowed" in failed["error_message"]
    assert failed["error_details"] == [{"field": "prompt", "message": "Prompt is not allowed"}]
    retried = api.post(f"/api/jobs/{job_id}/retry")
    assert retried.status_code == 202 and retried.json()["retry_of"] == job_id
    assert wait_until(api, retried.json()["id"])["status"] == "completed"


def test_a_late_failure_from_fal_is_kept_on_the_job(api, fal):
    fal.complete_with_error = True
    job = wait_until(api, api.post("/api/jobs/", {"model": T2V, "prompt": "fails late"}, format="json").json()["id"])
    assert job["status"] == "failed" and job["error_type"] == "rejected" and job["provider_request_id"]


def test_another_users_job_is_a_404_everywhere(api, fal, other_user):
    job_id = api.post("/api/jobs/?wait=20", {"model": T2V, "prompt": "mine"}, format="json").json()["id"]
    bob = APIClient()
    bob.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=other_user).key}")
    for method, path in [("get", f"/api/jobs/{job_id}/"), ("post", f"/api/jobs/{job_id}/cancel"),
                         ("post", f"/api/jobs/{job_id}/retry"), ("delete", f"/api/jobs/{job_id}/"),
                         ("get", f"/api/jobs/{job_id}/video")]:
        assert getattr(bob, method)(path).status_code == 404, path
    assert bob.get("/api/jobs/").json()["count"] == 0 and bob.get("/api/videos/").json()["count"] == 0
    assert api.get(f"/api/jobs/{job_id}/").json()["status"] == "completed"


def test_the_list_filters_and_pages(api, fal):
    fal.reject_next = 1
    failed = api.post("/api/jobs/", {"model": T2V, "prompt": "one"}, format="json").json()["id"]
    wait_until(api, failed)
    done = api.post("/api/jobs/?wait=20", {"model": T2V, "prompt": "two"}, format="json").json()["id"]
    assert [j["id"] for j in api.get("/api/jobs/?status=failed").json()["results"]] == [failed]
    assert [j["id"] for j in api.get("/api/jobs/?status=completed").json()["results"]] == [done]
    page = api.get("/api/jobs/?limit=1&offset=1").json()
    assert page["count"] == 2 and [j["id"] for j in page["results"]] == [failed]
    assert api.get(f"/api/jobs/?model={T2V}").json()["count"] == 2
    for bad in ("status=lost", "limit=0", "limit=x", "offset=-1", "offset=6484304200907118084096"):
        response = api.get(f"/api/jobs/?{bad}")
        assert response.status_code == 400 and response.json()["error"]


def test_delete_removes_the_job_and_its_files(api, fal):
    job = api.post("/api/jobs/?wait=20", {"model": T2V, "prompt": "to delete"}, format="json").json()
    stored = Job.objects.get(pk=job["id"]).video
    root = Path(django_settings.MEDIA_ROOT)
    files = [root / stored.file.name, root / stored.thumbnail.name, (root / stored.file.name).with_suffix(".json")]
    assert all(path.exists() for path in files)
    assert api.delete(f"/api/jobs/{job['id']}/").status_code == 204
    assert api.get(f"/api/jobs/{job['id']}/").status_code == 404
    assert not any(path.exists() for path in files)
    assert api.get("/api/videos/").json()["count"] == 0


def test_bad_requests_are_400_and_create_nothing(api, fal):
    for body in ({"prompt": "no model"}, {"model": T2V}, {"model": T2V, "prompt": "x", "fps": "fast"},
                 {"model": "fal-ai/krea-wan-14b", "prompt": "realtime"}):
        response = api.post("/api/jobs/", body, format="json")
        assert response.status_code == 400, (body, response.content[:200])
    assert api.post("/api/jobs/", {"model": "nope", "prompt": "x"}, format="json").status_code == 404
    assert api.post("/api/jobs/?wait=forever", {"model": T2V, "prompt": "x"}, format="json").status_code == 400
    assert Job.objects.count() == 0


def test_an_unfinished_job_is_picked_up_again_and_a_broken_submit_is_never_resent(api, fal, user):
    """What a worker does when it starts: pending jobs are submitted, an interrupted submit fails."""
    from django.utils import timezone

    waiting = Job.objects.create(owner=user, backend="fal", model_id=T2V, kind="text-to-video",
                                 input={"prompt": "left pending"})
    broken = Job.objects.create(owner=user, backend="fal", model_id=T2V, kind="text-to-video",
                                input={"prompt": "died mid-submit"},
                                submit_started_at=timezone.now() - timezone.timedelta(hours=1))
    assert services.sweep_jobs(remote_lease_s=0, pending_lease_s=0, everything=True) == {"polled": 0, "submitted": 2}
    assert wait_until(api, str(waiting.pk))["status"] == "completed"
    interrupted = wait_until(api, str(broken.pk))
    assert interrupted["status"] == "failed" and interrupted["error_type"] == "interrupted"
    assert submits(fal, "died mid-submit") == 0 and submits(fal, "left pending") == 1


def _fill_submit_slots(lease_s: float) -> list[str]:
    """Every fal submit slot taken by holders that will not release them themselves."""
    from runtime import slots

    taken = [f"held{n}" for n in range(django_settings.JOB_SUBMIT_CONCURRENCY)]
    assert all(slots.acquire("submit:fal", django_settings.JOB_SUBMIT_CONCURRENCY, holder, lease_s)
               for holder in taken)
    return taken


def _in_line(api, prompt: str) -> str:
    """A job created while every submit slot is taken: it stands in line, unsent."""
    from runtime import slots

    job = api.post("/api/jobs/", {"model": T2V, "prompt": prompt}, format="json").json()["id"]
    deadline = time.monotonic() + 10
    while slots.waiting("submit:fal") < 1 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert slots.waiting("submit:fal") == 1
    return job


def test_a_job_waits_in_line_for_a_submit_slot_and_a_woken_task_that_does_not_need_it_passes_it_on(api, fal):
    """A slot goes to the first job in line at its release; a task woken with a slot for a job
    that finished meanwhile hands it on at once (not after its 30 s lease)."""
    from runtime import slots
    from videogen.jobs import tasks

    done = api.post("/api/jobs/", {"model": T2V, "prompt": "done already"}, format="json").json()["id"]
    assert wait_until(api, done)["status"] == "completed"
    size = django_settings.JOB_SUBMIT_CONCURRENCY
    holders = _fill_submit_slots(lease_s=30)
    waiting = _in_line(api, "in line")
    time.sleep(0.3)
    assert submits(fal, "in line") == 0 and Job.objects.get(pk=waiting).status == JobStatus.PENDING
    tasks.submit_job(done, ["submit:fal", holders[0]])  # as a release would wake it
    assert wait_until(api, waiting, timeout=10)["status"] == "completed"
    assert submits(fal, "in line") == 1 and submits(fal, "done already") == 1
    for holder in holders[1:]:
        slots.release("submit:fal", holder, size, 30)
    assert slots.holders("submit:fal") == 0 and slots.waiting("submit:fal") == 0


def test_the_sweep_hands_slots_whose_holder_vanished_to_the_jobs_in_line(api, fal):
    """Holders that died (their leases run out, nobody releases) do not strand the line."""
    from runtime import slots
    from videogen.jobs import tasks

    _fill_submit_slots(lease_s=0.5)
    waiting = _in_line(api, "behind the dead")
    time.sleep(0.6)
    assert Job.objects.get(pk=waiting).status == JobStatus.PENDING
    tasks.sweep_jobs()
    assert wait_until(api, waiting, timeout=10)["status"] == "completed"
    assert submits(fal, "behind the dead") == 1
    assert slots.holders("submit:fal") == 0 and slots.waiting("submit:fal") == 0


def test_the_cap_counts_unfinished_jobs(api, fal, settings):
    settings.STUDIO_MAX_UNFINISHED_GENERATIONS = 1
    fal.processing_time = 30
    first = api.post("/api/jobs/", {"model": T2V, "prompt": "slow one"}, format="json")
    second = api.post("/api/jobs/", {"model": T2V, "prompt": "slow two"}, format="json")
    assert first.status_code == 202 and second.status_code == 429 and second["Retry-After"]
    api.post(f"/api/jobs/{first.json()['id']}/cancel")
    assert api.post("/api/jobs/", {"model": T2V, "prompt": "after cancel"}, format="json").status_code == 202
    # One query: the new job may move from pending to submitted between two.
    assert Job.objects.filter(status__in=[JobStatus.PENDING, JobStatus.SUBMITTED, JobStatus.RUNNING]).count() == 1


async def test_the_owners_socket_gets_job_events_and_the_state_of_unfinished_jobs_on_connect(
        api, fal, user, ws_headers):
    from asgiref.sync import sync_to_async
    from channels.testing import WebsocketCommunicator

    from studio.asgi import application

    fal.processing_time = 1.0
    headers = await sync_to_async(ws_headers)()
    post = sync_to_async(lambda body: api.post("/api/jobs/", body, format="json").json())
    running = await post({"model": T2V, "prompt": "already running"})
    await sync_to_async(wait_until)(api, running["id"], statuses=("submitted", "running"))
    socket = WebsocketCommunicator(application, "/ws/events/", headers=headers)
    assert (await socket.connect())[0]
    assert (await socket.receive_json_from(timeout=5))["type"] == "hello"
    first = await socket.receive_json_from(timeout=5)
    assert first["type"] == "job.status" and first["job"] == running["id"]
    fresh = await post({"model": T2V, "prompt": "watched"})
    seen: list[dict] = []
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        event = await socket.receive_json_from(timeout=20)
        if event.get("job") == fresh["id"]:
            seen.append(event)
            if event["status"] == "completed":
                break
    assert [e["status"] for e in seen if e["type"] == "job.status"][-1] == "completed"
    assert {"pending", "submitted", "completed"} <= {e["status"] for e in seen}
    sequences = [e["sequence"] for e in seen]
    assert sequences == sorted(sequences)
    await socket.disconnect()


def test_a_logged_in_browser_starts_a_job_with_its_session(logged_in, fal):
    response = logged_in.post("/api/jobs/?wait=20", {"model": T2V, "prompt": "from a page"},
                              content_type="application/json")
    assert response.status_code == 201, response.content[:300]
    assert response.json()["status"] == "completed"


def test_the_fal_proxy_serves_the_status_of_the_users_own_jobs_only(api, fal, other_user):
    job = api.post("/api/jobs/?wait=20", {"model": T2V, "prompt": "proxied status"}, format="json").json()
    status_url = f"{fal.base_url}/fal-ai/fast-animatediff/requests/{job['provider_request_id']}/status"
    mine = api.get("/api/fal/proxy", HTTP_X_FAL_TARGET_URL=status_url)
    assert mine.status_code == 200 and mine.json()["status"] == "COMPLETED"
    bob = APIClient()
    bob.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=other_user).key}")
    assert bob.get("/api/fal/proxy", HTTP_X_FAL_TARGET_URL=status_url).status_code == 404


def test_a_failed_download_is_tried_again_and_nothing_is_paid_twice(api, fal, settings):
    settings.JOB_DOWNLOAD_RETRY_S = 0.2
    fal.cdn_errors = 2
    job = wait_until(api, api.post("/api/jobs/", {"model": T2V, "prompt": "flaky cdn"}, format="json").json()["id"])
    assert job["status"] == "completed", job
    assert Job.objects.get(pk=job["id"]).download_attempts == 2
    assert any("trying again" in line for line in job["logs_tail"])
    assert submits(fal, "flaky cdn") == 1


def test_download_videos_fetches_what_the_provider_finished(api, fal, settings):
    from django.core.management import call_command

    settings.JOB_DOWNLOAD_RETRY_S = 600  # the job would wait ten minutes for its next try
    fal.cdn_errors = 1000
    job_id = api.post("/api/jobs/", {"model": T2V, "prompt": "fetched by hand"}, format="json").json()["id"]
    wait_for_attempt = time.monotonic() + 20
    while not Job.objects.filter(pk=job_id, download_attempts__gte=1).exists():
        assert time.monotonic() < wait_for_attempt, "the download was never tried"
        time.sleep(0.05)
    assert api.get(f"/api/jobs/{job_id}/").json()["status"] == "running"
    fal.cdn_errors = 0
    call_command("download_videos")
    assert api.get(f"/api/jobs/{job_id}/").json()["status"] == "completed"
    call_command("download_videos")  # nothing left: says so
    assert submits(fal, "fetched by hand") == 1


def test_a_preview_runs_the_fast_variant_first_and_the_final_replaces_it(api, fal):
    fal.processing_time = 0.2
    response = api.post("/api/jobs/", {"model": T2V, "prompt": "progressive", "preview": True}, format="json")
    assert response.status_code == 202, response.content[:300]
    final = response.json()
    preview = final["preview"]
    assert preview["model_id"] == "fal-ai/fast-animatediff/turbo/text-to-video"
    assert wait_until(api, preview["id"])["status"] == "completed"
    done = wait_until(api, final["id"])
    assert done["status"] == "completed" and done["video"] is not None
    assert done["preview"]["status"] == "completed" and done["preview"]["video"] is None  # replaced
    videos = api.get("/api/videos/").json()
    assert [v["job"] for v in videos["results"]] == [final["id"]]
    apps = sorted(r["app_id"] for r in fal.requests.values() if r["input"].get("prompt") == "progressive")
    assert apps == ["fal-ai/fast-animatediff/text-to-video", "fal-ai/fast-animatediff/turbo/text-to-video"]


def test_a_preview_of_a_model_without_a_fast_variant_is_a_400(api, fal):
    response = api.post("/api/jobs/", {"model": "fal-ai/veo3.1/image-to-video", "prompt": "x", "preview": True,
                                       "image": "https://example.com/cat.png"}, format="json")
    assert response.status_code == 400 and "preview" in response.json()["fields"]
    assert Job.objects.count() == 0


def test_the_api_writes_a_job_exactly_as_its_serializer_describes_it(api, fal, user):
    """``job_data`` (fast, used by every door) and ``JobSerializer`` (the schema) agree."""
    from rest_framework.renderers import JSONRenderer

    from videogen.jobs.api import JobSerializer, job_data

    first = api.post("/api/jobs/", {"model": T2V, "prompt": "a lantern", "seed": 4}, format="json").json()
    done = wait_until(api, first["id"])
    retried = api.post(f"/api/jobs/{done['id']}/retry").json()
    Job.objects.filter(pk=retried["id"]).update(error_details={"x": [1]}, actual_cost="0.1234")
    render = JSONRenderer().render
    for job in Job.objects.select_related("video").all():
        assert render(job_data(job)) == render(JobSerializer(job).data)


def test_deleting_an_unfinished_job_stops_it_at_the_provider_though_its_row_is_gone(api, fal):
    """The cancel task runs after the delete's transaction (the normal case with a broker):
    it must still reach fal, which would otherwise keep working, paid."""
    fal.processing_time = 30
    job_id = api.post("/api/jobs/", {"model": T2V, "prompt": "to delete while it runs"}, format="json").json()["id"]
    request_id = wait_until(api, job_id, statuses=("submitted", "running"))["provider_request_id"]
    assert api.delete(f"/api/jobs/{job_id}/").status_code == 204
    assert not Job.objects.filter(pk=job_id).exists()
    deadline = time.monotonic() + 10
    while not fal.requests[request_id]["cancelled"] and time.monotonic() < deadline:
        time.sleep(0.05)
    assert fal.requests[request_id]["cancelled"]
