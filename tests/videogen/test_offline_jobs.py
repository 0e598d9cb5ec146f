"""Offline jobs on the local pipeline (``local/krea-offline``) through POST /api/jobs/: the
tiny pipeline on the embedded GPU thread in pass 1, on a real ``celery worker`` (queues
default and gpu) with Redis and PostgreSQL in pass 2."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from django.conf import settings as django_settings
from django.utils import timezone

from tests.conftest import EMBEDDED
from tests.support.jobs import wait_until
from tests.support.media import decoded
from tests.support.processes import celery_worker, wait_for, worker_env
from videogen.gallery import media
from videogen.jobs import services, tasks
from videogen.models import Job, JobStatus, Video

pytestmark = [pytest.mark.modes, pytest.mark.django_db(transaction=True)]

MODEL = "local/krea-offline"
embedded_only = pytest.mark.skipif(not EMBEDDED, reason="changes the pipeline inside this process")


@pytest.fixture(scope="module")
def worker_media(django_db_setup, django_db_blocker, tmp_path_factory):
    """The services pass: one real worker on both queues, holding the tiny pipeline."""
    if EMBEDDED:
        yield None
        return
    folder = tmp_path_factory.mktemp("media")
    with django_db_blocker.unblock():
        env = {**worker_env(), "STUDIO_MEDIA_ROOT": str(folder), "STUDIO_PIPELINE": "tiny",
               "STUDIO_PIPELINE_DEVICE": "cpu"}
    with celery_worker(env, queues="default,gpu", name="gpu"):
        yield folder


@pytest.fixture
def local(worker_media, settings):
    from videogen.local.host import host

    settings.STUDIO_PIPELINE, settings.STUDIO_PIPELINE_DEVICE = "tiny", "cpu"
    if worker_media is not None:
        settings.MEDIA_ROOT = worker_media
    host.unload()
    yield host
    host.unload()


def post(api, **fields):
    return api.post("/api/jobs/", {"model": MODEL, **fields}, format="json")


def test_an_offline_job_runs_on_the_gpu_worker_to_a_playable_mp4(api, local):
    response = post(api, prompt="a paper boat on a rainy street", resolution="320x192", num_frames=18, seed=2,
                    steps=2)
    assert response.status_code == 202, response.content[:300]
    assert response.json()["backend"] == "local" and response.json()["estimated_cost"] == "0.0000"
    job = wait_until(api, response.json()["id"], timeout=120)
    assert job["status"] == "completed", job
    assert job["progress"] == 1.0 and job["provider_request_id"] == "" and job["attempts"] == 1
    assert "block 2/2: 12 frames" in " ".join(job["logs_tail"]) and "block 1/2: 6 frames" in job["logs_tail"][0]
    assert job["status_sequence"] >= 4  # running, two progress events, completed
    stored = Job.objects.get(pk=job["id"]).video
    content = (Path(django_settings.MEDIA_ROOT) / stored.file.name).read_bytes()
    assert decoded(content) == (18, 320, 192)
    tags = media.read_metadata(content)
    assert tags["request"] == {"prompt": "a paper boat on a rainy street", "resolution": "320x192",
                               "num_frames": 18, "seed": 2, "steps": 2}
    sent = tags["provider_input"]
    assert sent["random_weights"] is True and sent["denoising_steps"] == "1000,500" and sent["blocks"] == 2
    assert sent["width"] == 320 and sent["pipeline"] == "tiny-random" and sent["generation_fps"] > 0
    assert job["video"]["duration_s"] == pytest.approx(18 / 16, abs=0.1) and job["video"]["thumbnail"]
    served = api.get(f"/api/jobs/{job['id']}/video")
    assert b"".join(served.streaming_content) == content
    tasks.run_job.apply((job["id"],))  # a late duplicate delivery does nothing
    assert Job.objects.get(pk=job["id"]).attempts == 1 and Video.objects.filter(job_id=job["id"]).count() == 1


def test_bad_values_are_a_400_naming_the_field(api, local):
    for fields, name in (({"resolution": "830x480"}, "resolution"), ({"num_frames": 10000}, "num_frames"),
                         ({"steps": 9}, "steps"), ({"seed": -1}, "seed"), ({"prompt": ""}, "prompt")):
        response = post(api, **{"prompt": "a fox", **fields})
        assert response.status_code == 400, (fields, response.content[:200])
        assert name in response.json()["fields"], response.json()
    assert Job.objects.count() == 0


def test_cancel_stops_the_run_between_blocks(api, local):
    long_id = post(api, prompt="a long river", resolution="832x480", num_frames=594).json()["id"]
    wait_for(lambda: Job.objects.get(pk=long_id).progress != 0, 90, "the first of its 50 blocks", interval=0.05)
    cancelled = api.post(f"/api/jobs/{long_id}/cancel")
    assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
    started = time.monotonic()
    short = wait_until(api, post(api, prompt="next", resolution="320x192", num_frames=9).json()["id"], timeout=60)
    assert short["status"] == "completed", short
    # the one GPU thread (or GPU worker) was free again long before the 50 blocks could have run
    assert time.monotonic() - started < 30
    job = Job.objects.get(pk=long_id)
    assert job.status == JobStatus.CANCELLED and not Video.objects.filter(job=job).exists()
    assert len(job.logs_tail) < 10 and job.progress < 0.2


@embedded_only
def test_a_pipeline_that_cannot_load_fails_the_job_saying_why(api, local, settings, tmp_path):
    settings.STUDIO_PIPELINE, settings.MODELS_DIR = "full", tmp_path / "no-weights"
    job = wait_until(api, post(api, prompt="x", resolution="320x192", num_frames=9).json()["id"], timeout=60)
    assert job["status"] == "failed" and job["error_type"] == "unavailable"
    assert "cannot run on this worker" in job["error_message"] and "download_models" in job["error_message"]


@embedded_only
def test_a_pipeline_error_mid_run_fails_the_job_with_it(api, local, monkeypatch):
    session = local.get().session

    def broken(latents):
        raise RuntimeError("cuDNN error: CUDNN_STATUS_EXECUTION_FAILED")

    monkeypatch.setattr(session.vae, "decode_block", broken)
    job = wait_until(api, post(api, prompt="x", resolution="320x192", num_frames=9).json()["id"], timeout=60)
    assert job["status"] == "failed" and job["error_type"] == "failed"
    assert job["error_message"] == "The local pipeline failed: RuntimeError: cuDNN error: CUDNN_STATUS_EXECUTION_FAILED"
    monkeypatch.undo()
    assert wait_until(api, post(api, prompt="y", resolution="320x192", num_frames=9).json()["id"],
                      timeout=60)["status"] == "completed"  # the pipeline still serves the next job


def test_a_job_is_claimed_once_and_taken_over_only_from_a_dead_worker(user, monkeypatch):
    dispatched = []
    monkeypatch.setattr(services, "_dispatch", lambda name, job_id, countdown=None, queue=None: dispatched.append(
        (name, job_id, countdown)))
    job = Job.objects.create(owner=user, backend="local", model_id=MODEL, kind="text-to-video",
                             input={"prompt": "x"})
    claimed = services.begin_worker_run(job.pk, lease_s=60, queue="gpu")
    assert claimed.status == JobStatus.RUNNING and claimed.attempts == 1 and claimed.submit_started_at
    assert services.begin_worker_run(job.pk, lease_s=60, queue="gpu") is None  # a duplicate while it runs
    assert dispatched[-1][:2] == ("gpu.run_job", str(job.pk)) and 55 < dispatched[-1][2] <= 61
    assert services.record_worker_progress(job.pk, progress=0.5, log="block 1/2").progress == 0.5
    Job.objects.filter(pk=job.pk).update(updated_at=timezone.now() - timezone.timedelta(seconds=61))
    again = services.begin_worker_run(job.pk, lease_s=60, queue="gpu")  # its worker died: run it again
    assert again.attempts == 2 and again.progress == 0.0 and "no sign of life" in again.logs_tail[-1]
    services.cancel_job(again)
    assert services.record_worker_progress(job.pk, progress=0.9) is None  # the run stops here
    assert services.begin_worker_run(job.pk, lease_s=60, queue="gpu") is None


def _clip(seed: int, frames: int = 24):
    """A 64x48 clip of moving noise (frames at 16 fps), as MP4 bytes."""
    import numpy as np

    from tests.support.media import mp4_of

    base = (np.random.default_rng(seed).random((48, 96, 3)) * 255).astype(np.uint8)
    return mp4_of(np.stack([base[:, i:i + 64] for i in range(frames)]), fps=16)


def upload(api, content: bytes, name: str = "walk.mp4", content_type: str = "video/mp4", **fields):
    from django.core.files.uploadedfile import SimpleUploadedFile

    return api.post("/api/jobs/", {"model": MODEL, "prompt": "a watercolour street", "resolution": "320x192",
                                   "seed": 4, "steps": 2, "video": SimpleUploadedFile(name, content, content_type),
                                   **fields}, format="multipart")


def test_a_video_to_video_job_follows_the_uploaded_video(api, local):
    """A user restyles a video from the REST door (a multipart upload): the video's length sets
    the frames, what comes out depends on it, and the upload is kept to reuse."""
    from tests.support.media import frames_of

    clip = _clip(1)
    first = upload(api, clip, strength=0.7)
    assert first.status_code == 202, first.content[:300]
    other = upload(api, _clip(2), name="other.mp4")
    assert other.status_code == 202, other.content[:300]
    done = [wait_until(api, r.json()["id"], timeout=120) for r in (first, other)]
    assert [job["status"] for job in done] == ["completed", "completed"], done
    videos = [(Path(django_settings.MEDIA_ROOT) / Job.objects.get(pk=job["id"]).video.file.name).read_bytes()
              for job in done]
    # 24 input frames at 16 fps make 2 blocks (9 + 12 read): 6 + 12 frames out
    assert decoded(videos[0]) == (18, 320, 192) and decoded(videos[1]) == (18, 320, 192)
    sent = media.read_metadata(videos[0])["provider_input"]
    assert sent["input_video_frames"] == 24 and sent["strength"] == 0.7 and sent["blocks"] == 2
    assert media.read_metadata(videos[1])["provider_input"]["strength"] == 0.8  # the pipeline's default
    a, b = frames_of(videos[0]), frames_of(videos[1])
    assert max(abs(x.astype(int) - y.astype(int)).mean() for x, y in zip(a, b, strict=True)) > 1.0
    kept = api.get(f"/api/jobs/{done[0]['id']}/inputs/video")
    assert kept.status_code == 200 and kept["Content-Type"] == "video/mp4"
    assert b"".join(kept.streaming_content) == clip
    assert Job.objects.get(pk=done[0]["id"]).input["video"]["file_name"] == "walk.mp4"
    again = api.post(f"/api/jobs/{done[0]['id']}/retry")  # the same upload, run again
    assert again.status_code in (201, 202), again.content[:300]
    rerun = wait_until(api, again.json()["id"], timeout=120)
    assert rerun["status"] == "completed" and rerun["input"]["video"] == done[0]["input"]["video"]


def test_a_video_that_cannot_be_restyled_is_a_400_naming_the_field(api, local):
    import io

    from PIL import Image

    still = io.BytesIO()
    Image.new("RGB", (64, 64), (200, 80, 40)).save(still, format="PNG")
    clip = _clip(3)
    for response, name, fragment in (
        (upload(api, clip[: len(clip) // 2]), "video", "damaged or incomplete"),
        (upload(api, b"just some text", name="clip.mp4"), "video", "MP4, MOV or WebM video"),
        (upload(api, still.getvalue(), name="still.png", content_type="image/png"), "video", "got an image"),
        (post(api, prompt="a fox", strength=0.5), "strength", "goes with a video"),
        (post(api, prompt="a fox", video="https://example.com/walk.mp4"), "video", "uploaded video file"),
    ):
        assert response.status_code == 400, (name, response.content[:300])
        assert fragment in response.json()["fields"][name], response.json()
    assert Job.objects.count() == 0
    # too short for one block (9 frames at 16 fps): the job says so rather than running
    job = wait_until(api, upload(api, _clip(4, frames=5)).json()["id"], timeout=60)
    assert job["status"] == "failed" and "at least 9 frames" in job["error_message"]
