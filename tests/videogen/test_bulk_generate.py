"""``manage.py bulk_generate``: prompts x images as durable jobs, against the fake fal.

Jobs run on the embedded threads of this process, so these tests run in the embedded pass
only (not marked ``modes``).
"""

from __future__ import annotations

import io
import time
from pathlib import Path

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from PIL import Image

from videogen.management.commands import bulk_generate
from videogen.management.commands.bulk_generate import parse_prompts
from videogen.models import Job, JobStatus, Video

pytestmark = pytest.mark.django_db(transaction=True)

WAN_22 = "fal-ai/wan/v2.2-a14b/image-to-video"


class Terminal(io.StringIO):
    """stdin as a person at a terminal types it."""

    def isatty(self) -> bool:
        return True


@pytest.fixture(autouse=True)
def quick(monkeypatch):
    monkeypatch.setattr(bulk_generate, "POLL_S", 0.05)


@pytest.fixture
def admin(django_user_model):
    return django_user_model.objects.create_superuser("root", password="admin-pass-42")


@pytest.fixture
def fal(fake_fal, settings):
    settings.VIDEO_POLL_INTERVAL = 0.05
    fake_fal.processing_time = 0.1
    return fake_fal


def write_images(folder: Path, count: int) -> Path:
    folder.mkdir(exist_ok=True)
    for n in range(count):
        Image.new("RGB", (64, 48), (40 * n, 120, 200)).save(folder / f"img{n}.png", "PNG")
    (folder / "notes.txt").write_text("not an image")
    return folder


def write_prompts(path: Path, prompts: list[str]) -> Path:
    path.write_text("# my prompts\n" + "\n---\n".join(prompts) + "\n")
    return path


def bulk(*args, stdin=None, **options) -> tuple[str, CommandError | None]:
    out = io.StringIO()
    try:
        call_command("bulk_generate", *args, stdout=out, stderr=io.StringIO(), stdin=stdin or io.StringIO(),
                     **options)
    except CommandError as exc:
        return out.getvalue(), exc
    return out.getvalue(), None


@pytest.fixture
def inputs(tmp_path):
    images = write_images(tmp_path / "images", 2)
    prompts = write_prompts(tmp_path / "prompts.txt", ["a slow zoom", "the cat waves", "rain starts"])
    return str(prompts), str(images)


# -- the prompts file --------------------------------------------------------------------------

def test_prompts_are_separated_by_dashes_or_blank_lines_and_comments_are_dropped():
    text = """
# a comment, not a prompt
  first prompt,
  on two lines
---
second prompt
   ---

third prompt
# a comment inside does not end the prompt
 continued


---
---
"""
    assert parse_prompts(text) == ["first prompt, on two lines", "second prompt",
                                   "third prompt continued"]
    assert parse_prompts("one\n\ntwo\n\n\n  three  \n") == ["one", "two", "three"]
    assert parse_prompts("one\n---\ntwo\n---\n") == ["one", "two"]
    assert parse_prompts("# only comments\n\n---\n") == []


def test_an_empty_prompts_file_is_a_clear_error(tmp_path, admin):
    images = write_images(tmp_path / "images", 1)
    (tmp_path / "p.txt").write_text("# nothing\n---\n\n")
    _, error = bulk(str(tmp_path / "p.txt"), images_dir=str(images), dry_run=True)
    assert error is not None and "No prompts" in str(error)


# -- the plan ----------------------------------------------------------------------------------

def test_dry_run_pairs_every_image_with_every_prompt_shows_the_cost_and_creates_nothing(inputs, admin, fal):
    out, error = bulk(*inputs[:1], images_dir=inputs[1], resolution="480p", duration="5", dry_run=True)
    assert error is None, error
    assert "all combinations: 2 images x 3 prompts" in out and "jobs:     6" in out
    assert "fal-ai/wan-25-preview/image-to-video" in out  # the default alias, wan
    # Wan 2.5 at 480p: $0.05/s x 5 s each.
    assert "$0.25 per job" in out and "$1.50 in total for 6 jobs" in out
    rows = [line for line in out.splitlines() if "$0.25  " in line]
    assert [row.split()[1] for row in rows] == ["img0.png"] * 3 + ["img1.png"] * 3
    assert "notes.txt" not in out and "Dry run: no jobs were created." in out
    assert Job.objects.count() == 0


def test_one_to_one_pairs_image_i_with_prompt_i(tmp_path, admin):
    images = write_images(tmp_path / "images", 2)
    prompts = write_prompts(tmp_path / "p.txt", ["first", "second"])
    out, error = bulk(str(prompts), images_dir=str(images), one_to_one=True, dry_run=True, model="kling")
    assert error is None, error
    assert "one to one: 2 images with 2 prompts" in out and "jobs:     2" in out
    rows = [line.split() for line in out.splitlines() if "$0.35  " in line]  # Kling's 5 s price
    assert [(row[1], row[3]) for row in rows] == [("img0.png", "first"), ("img1.png", "second")]


def test_one_to_one_with_different_counts_is_an_error(inputs, admin):
    _, error = bulk(*inputs[:1], images_dir=inputs[1], one_to_one=True, dry_run=True)
    assert error is not None and "2 images and 3 prompts" in str(error)
    assert Job.objects.count() == 0


def test_a_model_without_a_published_price_says_so(inputs, admin, monkeypatch):
    from model_control.backends import catalog

    model = catalog().require(WAN_22)
    monkeypatch.setattr(type(model), "price_of", lambda self, values: {
        "model": self.id, "currency": "USD", "estimated_cost": None,
        "basis": "no published price for this model"})
    out, error = bulk(*inputs[:1], images_dir=inputs[1], model=WAN_22, dry_run=True)
    assert error is None, error
    assert f"Estimated cost: unknown: {WAN_22} has no published price." in out


def test_every_job_is_validated_before_anything_is_created(inputs, admin, fal):
    _, error = bulk(*inputs[:1], images_dir=inputs[1], model=WAN_22, duration="5", yes=True)
    assert error is not None and "Nothing was created" in str(error)
    assert "duration: not accepted by fal-ai/wan/v2.2-a14b/image-to-video" in str(error)
    _, error = bulk(*inputs[:1], images_dir=inputs[1], resolution="4k", yes=True)
    assert "resolution: must be one of 480p, 720p, 1080p" in str(error)
    assert Job.objects.count() == 0 and not fal.requests


def test_a_broken_image_is_named_before_anything_is_created(inputs, admin):
    (Path(inputs[1]) / "broken.jpg").write_bytes(b"not really a jpeg")
    _, error = bulk(*inputs[:1], images_dir=inputs[1], yes=True)
    assert error is not None and "broken.jpg: not a readable image" in str(error)
    assert Job.objects.count() == 0


def test_only_image_to_video_models_are_accepted(inputs, admin):
    _, error = bulk(*inputs[:1], images_dir=inputs[1], model="fal-ai/veo3.1/fast", dry_run=True)
    assert error is not None and "text-to-video model" in str(error) and "wan-2.2" in str(error)
    _, error = bulk(*inputs[:1], images_dir=inputs[1], model="nope", dry_run=True)
    assert error is not None and "Unknown model 'nope'" in str(error)


def test_without_a_superuser_or_user_it_refuses(inputs, user):
    _, error = bulk(*inputs[:1], images_dir=inputs[1], yes=True)
    assert error is not None and "no superuser" in str(error)
    _, error = bulk(*inputs[:1], images_dir=inputs[1], yes=True, user="nobody")
    assert error is not None and "No user 'nobody'" in str(error)


def test_list_models_shows_the_image_to_video_models_with_prices_and_configuration(settings):
    settings.FAL_KEY = ""
    out, error = bulk(list_models=True)
    assert error is None
    assert "fal-ai/wan-25-preview/image-to-video (alias: wan, wan-2.5)" in out
    assert "$0.75 per job (1080p at $0.15/s x 5 s)" in out and "configured: no (set FAL_KEY" in out
    assert "tenstorrent/wan2.2-i2v" in out and "no published price" in out
    assert "fal-ai/veo3.1/fast" not in out and "animatediff" not in out


# -- confirmation ------------------------------------------------------------------------------

def test_without_yes_a_non_interactive_stdin_is_refused(inputs, admin, fal):
    out, error = bulk(*inputs[:1], images_dir=inputs[1], resolution="480p")
    assert error is not None and "stdin is not a terminal" in str(error) and "--yes" in str(error)
    assert "Estimated cost" in out and Job.objects.count() == 0 and not fal.requests


def test_a_person_answering_no_creates_nothing(inputs, admin, fal):
    out, error = bulk(*inputs[:1], images_dir=inputs[1], resolution="480p", stdin=Terminal("n\n"))
    assert "Proceed? [y/N]" in out and error is not None and "Not confirmed" in str(error)
    assert Job.objects.count() == 0


# -- the run -----------------------------------------------------------------------------------

def test_a_confirmed_run_completes_every_job_with_its_video(tmp_path, admin, fal):
    images = write_images(tmp_path / "images", 2)
    prompts = write_prompts(tmp_path / "p.txt", ["waves", "bows"])
    out, error = bulk(str(prompts), images_dir=str(images), resolution="480p", stdin=Terminal("y\n"))
    assert error is None, out
    assert Job.objects.filter(owner=admin, status=JobStatus.COMPLETED).count() == 4
    assert Video.objects.filter(owner=admin).count() == 4
    assert "4/4 finished: 4 done, 0 failed" in out and "4 completed, 0 failed, of 4 jobs" in out
    assert "GET /api/videos/" in out and out.count("  ok     #") == 4
    sent = sorted((r["input"]["prompt"], r["input"]["resolution"]) for r in fal.requests.values())
    assert sent == [("bows", "480p"), ("bows", "480p"), ("waves", "480p"), ("waves", "480p")]
    assert len(fal.uploads) == 2  # one CDN upload per image


def test_on_a_terminal_the_bar_is_redrawn_in_place(tmp_path, admin, fal):
    images = write_images(tmp_path / "images", 1)
    prompts = write_prompts(tmp_path / "p.txt", ["one", "two"])
    out = Terminal()
    call_command("bulk_generate", str(prompts), images_dir=str(images), resolution="480p", yes=True, stdout=out)
    text = out.getvalue()
    assert "\r[" in text and "\r[##############################] 2/2 finished: 2 done" in text
    assert "2 completed, 0 failed, of 2 jobs" in text


def test_the_cap_is_waited_for_not_failed_on(tmp_path, admin, fal, settings):
    settings.STUDIO_MAX_UNFINISHED_GENERATIONS = 2
    images = write_images(tmp_path / "images", 1)
    prompts = write_prompts(tmp_path / "p.txt", ["one", "two", "three", "four", "five"])
    out, error = bulk(str(prompts), images_dir=str(images), model="wan-2.2", yes=True, user="root")
    assert error is None, out
    assert "the most STUDIO_MAX_UNFINISHED_GENERATIONS allows" in out and "waiting for the cap" in out
    assert Job.objects.filter(status=JobStatus.COMPLETED).count() == 5
    assert "5 completed, 0 failed, of 5 jobs" in out


def test_a_failed_job_gives_a_non_zero_exit_naming_the_reason(tmp_path, admin, fal):
    images = write_images(tmp_path / "images", 1)
    prompts = write_prompts(tmp_path / "p.txt", ["only one"])
    fal.reject_next = 1
    out, error = bulk(str(prompts), images_dir=str(images), resolution="480p", yes=True)
    assert error is not None and error.returncode == 1 and "1 of 1 jobs failed" in str(error)
    assert "FAILED #1 img0.png 'only one'" in out and "rejected: " in out and "Prompt is not allowed" in out
    assert Job.objects.get().status == JobStatus.FAILED


def test_ctrl_c_stops_waiting_and_leaves_the_jobs_running(tmp_path, admin, fal, monkeypatch):
    fal.processing_time = 30
    images = write_images(tmp_path / "images", 1)
    prompts = write_prompts(tmp_path / "p.txt", ["slow"])

    def interrupt(seconds):
        raise KeyboardInterrupt

    monkeypatch.setattr(bulk_generate, "pause", interrupt)
    out, error = bulk(str(prompts), images_dir=str(images), resolution="480p", yes=True)
    assert error is not None and error.returncode == 130
    assert "Stopped waiting (Ctrl-C)" in out and "1 jobs are unfinished and were left as they are" in out
    assert Job.objects.get().status not in (JobStatus.FAILED, JobStatus.CANCELLED)
    fal.processing_time = 0.1  # the job goes on without the command and finishes
    deadline = time.monotonic() + 20
    while Job.objects.get().status != JobStatus.COMPLETED and time.monotonic() < deadline:
        time.sleep(0.05)
    assert Job.objects.get().status == JobStatus.COMPLETED
