"""The Gallery page: every job and realtime recording of the user, newest first, with its
settings in the catalog's words, filters, human dates, and the actions behind its buttons."""

from __future__ import annotations

import re
from datetime import timedelta
from html import unescape

import pytest
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.utils import timezone

from videogen.models import Job, Video
from videogen.templatetags.studio_tags import ago

pytestmark = [pytest.mark.modes, pytest.mark.django_db]


def make_job(owner, *, model_id="fal-ai/veo3.1", kind="text-to-video", status="completed", minutes_ago=0,
             video=True, **fields) -> Job:
    job = Job.objects.create(owner=owner, backend=fields.pop("backend", "fal"), model_id=model_id, kind=kind,
                             status=status, **{"input": {"prompt": f"{status} {model_id}"}, **fields})
    Job.objects.filter(pk=job.pk).update(created_at=timezone.now() - timedelta(minutes=minutes_ago))
    if video and status == "completed":
        make_video(owner, job=job, minutes_ago=minutes_ago, parameters={"job": str(job.pk), "model": model_id,
                                                                       "request": job.input})
    return Job.objects.get(pk=job.pk)


def make_video(owner, *, job=None, minutes_ago=0, parameters=None) -> Video:
    stem = f"videos/{owner.pk}/clip-{Video.objects.count()}"
    file = default_storage.save(f"{stem}.mp4", ContentFile(b"\x00\x00\x00\x18ftypmp42 clip"))
    thumb = default_storage.save(f"thumbnails/{owner.pk}/{stem.rsplit('/', 1)[1]}.jpg", ContentFile(b"\xff\xd8jpeg"))
    video = Video.objects.create(owner=owner, job=job, file=file, thumbnail=thumb, duration_s=5.0, size=20,
                                 parameters=parameters or {})
    Video.objects.filter(pk=video.pk).update(created_at=timezone.now() - timedelta(minutes=minutes_ago))
    return Video.objects.get(pk=video.pk)


def recording(owner, *, backend="local", minutes_ago=0, prompt="a fox in the snow", **more) -> Video:
    """What the realtime relay saves for a session: a Video with no job and kind realtime."""
    return make_video(owner, minutes_ago=minutes_ago, parameters={
        "kind": "realtime", "backend": backend, "session": "6f1c0d9e-0000-4000-8000-000000000001", "prompt": prompt,
        "width": 832, "height": 480, "seed": 42, **more,
        "timeline": {"prompts": [{"startTime": 0, "endTime": 4, "prompts": [{"text": prompt, "weight": 1.0}]},
                                 {"startTime": 4, "endTime": 8, "prompts": [{"text": "dawn", "weight": 1.0}]}]}})


def cards(html: str) -> list[str]:
    return re.findall(r'<li class="item" id="item-([0-9a-f-]+)"', html)


@pytest.fixture
def gallery(user, other_user):
    items = {
        "running": make_job(user, status="running", minutes_ago=1, queue_position=None, progress=0.25),
        "recording": recording(user, minutes_ago=3, model="local/krea-realtime", frames=93, num_denoising_steps=4),
        "done": make_job(user, status="completed", minutes_ago=10,
                         input={"prompt": "a paper boat", "duration": "4s", "resolution": "720p", "audio": False,
                                "aspect_ratio": "16:9", "seed": 7}, estimated_cost="0.8000"),
        "failed": make_job(user, model_id="fal-ai/wan-25-preview/image-to-video", kind="image-to-video",
                           status="failed", minutes_ago=60 * 5, error_type="rejected",
                           error_message="fal rejected the input: image_url: could not be read",
                           error_details=[{"field": "image_url", "message": "could not be read"}],
                           input={"prompt": "the cat waves", "duration": "10",
                                  "image": {"upload": "uploads/x.png", "sha256": "x", "file_name": "cat.png"}}),
        "fal-recording": recording(user, backend="fal", minutes_ago=60 * 24 * 3,
                                   prompt=[{"text": "waves at night", "weight": 0.7}, {"text": "storm", "weight": 0.3}]),
        "imported": make_video(user, minutes_ago=60 * 24 * 30, parameters={
            "model": "fal-ai/veo3.1", "request": {"prompt": "an old video", "duration": "8s"}}),
        "cancelled": make_job(user, status="cancelled", minutes_ago=60 * 24 * 40),
    }
    make_job(other_user, status="completed", input={"prompt": "not yours"})
    recording(other_user, prompt="not yours either")
    return {name: str(item.pk) for name, item in items.items()}


def test_the_gallery_lists_jobs_and_recordings_newest_first_with_their_settings(logged_in, gallery):
    html = logged_in.get("/gallery/").content.decode()
    assert cards(html) == list(gallery.values())  # the fixture made them newest first
    assert "not yours" not in html
    pieces = html.split('<li class="item" id="item-')[1:]
    card = {name: next(p for p in pieces if p.startswith(item)) for name, item in gallery.items()}
    done = card["done"]
    assert "a paper boat" in done and "Veo 3.1" in done and "Text to video" in done and "$0.80" in done
    for label, value in [("Duration", "4 s"), ("Resolution", "720p"), ("Generate audio", "no"),
                         ("Aspect ratio", "16:9"), ("Seed", "7")]:
        assert f"<dt>{label}</dt><dd>{value}</dd>" in done, label
    assert "<dt>audio</dt>" not in html and "<dt>aspect_ratio</dt>" not in html  # labels, not field names
    video_id = Job.objects.get(pk=gallery["done"]).video.pk
    assert f'<div class="player" data-src="/api/videos/{video_id}/file">' in done
    assert f'<img src="/api/videos/{video_id}/thumbnail" alt=""' in done  # a thumbnail until played
    assert f'<a class="play" href="/api/videos/{video_id}/file" aria-label="Play: a paper boat">' in done
    assert f'href="/video-generation/?from={gallery["done"]}"' in done and "?download=1" in done
    assert 'data-action="retry"' not in done and 'data-action="cancel"' not in done
    # Human dates, with the exact time in the title.
    assert re.search(r'<time datetime="[^"]+" title="\d{4}-\d\d-\d\d \d\d:\d\d \S+" data-relative>10 min ago</time>', done)
    assert ">5 h ago<" in card["failed"] and ">3 days ago<" in card["fal-recording"]
    assert re.search(r">\d{1,2} \w{3} \d{4}</time>", card["imported"])
    # A running job: live status and cancel, no video yet.
    running = card["running"]
    assert 'data-status="running"' in running and ">Generating<" in running and 'data-action="cancel"' in running
    assert 'value="0.25"' in running and 'class="player"' not in running
    # A failure says what happened, with the field in the page's words.
    failed = card["failed"]
    assert "The provider rejected an input" in failed and "<strong>Image</strong>: could not be read" in failed
    assert 'data-action="retry"' in failed and "<dt>Image</dt><dd>cat.png</dd>" in failed
    # A realtime recording: its settings, reused on the Realtime page, deleted through /api/videos/.
    rec = card["recording"]
    assert 'data-type="recording"' in rec and ">recording<" in rec and "Krea realtime (local GPU)" in rec
    assert "<dt>Size</dt><dd>832x480</dd>" in rec and "<dt>Seed</dt><dd>42</dd>" in rec
    assert "<dt>Prompt changes</dt><dd>1</dd>" in rec and "<dt>Backend</dt><dd>Local Krea realtime pipeline</dd>" in rec
    assert "<dt>Frames</dt><dd>93 frames</dd>" in rec and "<dt>Inference steps</dt><dd>4 steps</dd>" in rec
    assert f'href="/realtime/?from={gallery["recording"]}"' in rec and "Reuse settings" in rec
    assert f'data-delete-url="/api/videos/{gallery["recording"]}/"' in rec
    assert "Krea WAN 14B realtime (fal)" in card["fal-recording"]  # no model named: its backend's
    assert "waves at night (0.7) | storm (0.3)" in card["fal-recording"]
    assert "an old video" in card["imported"] and "<dt>Duration</dt><dd>8 s</dd>" in card["imported"]
    assert f'data-delete-url="/api/jobs/{gallery["done"]}/"' in done


@pytest.mark.parametrize(("query", "expected"), [
    ("status=running", ["running"]),
    ("status=completed", ["recording", "done", "fal-recording", "imported"]),
    ("status=failed", ["failed"]),
    ("kind=realtime", ["recording", "fal-recording"]),
    ("kind=image-to-video", ["failed"]),
    ("kind=text-to-video", ["running", "done", "imported", "cancelled"]),
    ("model=fal-ai/krea-wan-14b", ["fal-recording"]),
    ("model=local/krea-realtime&kind=realtime", ["recording"]),
    ("model=fal-ai/veo3.1&status=completed", ["done", "imported"]),
    ("status=failed&kind=realtime", []),
])
def test_the_gallery_filters_by_status_model_and_kind(logged_in, gallery, query, expected):
    response = logged_in.get(f"/gallery/?{query}")
    assert response.status_code == 200
    html = response.content.decode()
    assert cards(html) == [gallery[name] for name in expected]
    if not expected:
        assert "Nothing matches these filters" in html
    for name, value in (part.split("=") for part in query.split("&")):
        assert re.search(rf'<option value="{re.escape(value)}" selected>', html), name
    assert 'data-filtered="1"' in html


@pytest.mark.parametrize(("query", "message"), [
    ("status=done", "Unknown status 'done'"),
    ("kind=movie", "Unknown kind 'movie'"),
    ("model=no/such", "Unknown model 'no/such'"),
    ("page=0", "page must be a whole number"),
    ("page=abc", "page must be a whole number"),
    ("page=99999999999999999999", "page must be a whole number"),
])
def test_a_bad_filter_is_a_400_that_says_what_is_allowed(logged_in, gallery, query, message):
    response = logged_in.get(f"/gallery/?{query}")
    assert response.status_code == 400
    assert message in unescape(response.content.decode())


def test_the_gallery_pages_through_many_items(logged_in, user):
    from videogen.pages.presentation import PAGE_SIZE

    for minutes in range(PAGE_SIZE + 3):
        make_job(user, status="failed", minutes_ago=minutes, input={"prompt": f"job {minutes}"})
    first = logged_in.get("/gallery/").content.decode()
    second = logged_in.get("/gallery/?page=2").content.decode()
    assert len(cards(first)) == PAGE_SIZE and len(cards(second)) == 3
    assert 'rel="next"' in first and 'rel="prev"' in second and 'rel="next"' not in second
    assert not set(cards(first)) & set(cards(second))
    filtered = logged_in.get("/gallery/?status=failed").content.decode()
    assert 'href="?status=failed&amp;page=2"' in filtered


def test_one_card_is_served_for_live_updates_to_its_owner_only(logged_in, gallery, other_user):
    response = logged_in.get(f"/gallery/items/{gallery['running']}/")
    assert response.status_code == 200
    assert cards(response.content.decode()) == [gallery["running"]]
    assert cards(logged_in.get(f"/gallery/items/{gallery['recording']}/").content.decode()) == [gallery["recording"]]
    theirs = Job.objects.get(owner=other_user)
    assert logged_in.get(f"/gallery/items/{theirs.pk}/").status_code == 404
    assert logged_in.get("/gallery/items/00000000-0000-0000-0000-000000000000/").status_code == 404
    assert logged_in.get("/gallery/items/not-a-uuid/").status_code == 404


def test_a_recording_is_deleted_with_its_files_and_a_jobs_video_with_its_job(logged_in, gallery, other_user,
                                                                           django_capture_on_commit_callbacks):
    rec = Video.objects.get(pk=gallery["recording"])
    files = [rec.file.name, rec.thumbnail.name]
    assert all(default_storage.exists(name) for name in files)
    with django_capture_on_commit_callbacks(execute=True):
        response = logged_in.delete(f"/api/videos/{rec.pk}/")
    assert response.status_code == 204
    assert not Video.objects.filter(pk=rec.pk).exists()
    assert not any(default_storage.exists(name) for name in files)
    done = Job.objects.get(pk=gallery["done"])
    response = logged_in.delete(f"/api/videos/{done.video.pk}/")
    assert response.status_code == 204
    assert not Job.objects.filter(pk=done.pk).exists()
    theirs = Video.objects.filter(owner=other_user).first()
    assert logged_in.delete(f"/api/videos/{theirs.pk}/").status_code == 404
    assert Video.objects.filter(pk=theirs.pk).exists()
    assert logged_in.get(f"/api/videos/{gallery['imported']}/").json()["id"] == gallery["imported"]


def test_the_gallery_and_its_cards_need_a_login(client, gallery):
    response = client.get("/gallery/")
    assert response.status_code == 302 and response["Location"].startswith("/accounts/login/")
    assert client.get(f"/gallery/items/{gallery['done']}/").status_code == 302


def test_dates_read_like_a_person_says_them():
    now = timezone.now()
    assert ago(now - timedelta(seconds=10), now) == "just now"
    assert ago(now - timedelta(minutes=3), now) == "3 min ago"
    assert ago(now - timedelta(hours=2, minutes=10), now) == "2 h ago"
    assert ago(now - timedelta(days=3), now) == "3 days ago"
    assert re.fullmatch(r"\d{1,2} \w{3} \d{4}", ago(now - timedelta(days=30), now))


def test_a_recording_says_how_its_session_ended_and_a_stopped_one_is_not_completed(logged_in, user):
    from videogen.models import RealtimeSession

    ended = {}
    for minutes, (reason, status, error) in enumerate([
            ("completed", "completed", ""), ("stopped", "completed", ""), ("timeout", "failed", "no frame for 10 s"),
            ("error", "failed", "The local pipeline failed: RuntimeError: boom")]):
        video = recording(user, minutes_ago=minutes, prompt=f"ended by {reason}")
        RealtimeSession.objects.create(owner=user, backend="local", model_id="local/krea-realtime", status=status,
                                       end_reason=reason, error_message=error, video=video)
        ended[reason] = str(video.pk)
    older = recording(user, minutes_ago=60, prompt="from before sessions")  # no session: no verdict invented
    html = logged_in.get("/gallery/?kind=realtime").content.decode()
    pieces = {p.split('"', 1)[0]: p for p in html.split('<li class="item" id="item-')[1:]}

    def badge(video_id: str) -> tuple[str, str]:
        return re.search(r'<span class="badge status-(\w+)" data-role="status">([^<]+)</span>', pieces[video_id]).groups()

    assert badge(ended["completed"]) == ("completed", "Completed")
    assert badge(ended["stopped"]) == ("cancelled", "Stopped")
    assert badge(ended["timeout"]) == ("failed", "Timed out")
    assert badge(ended["error"]) == ("failed", "Ended by an error")
    assert "RuntimeError: boom" in pieces[ended["error"]]
    assert badge(str(older.pk)) == ("completed", "Done")
    # the card served for live updates says the same
    assert "Stopped</span>" in logged_in.get(f"/gallery/items/{ended['stopped']}/").content.decode()



def test_a_recording_saved_from_a_dead_workers_parts_says_it_is_partial(logged_in, user):
    from videogen.models import RealtimeSession

    salvaged = recording(user, prompt="the worker died", partial=True)  # what sessions.salvage_recording saves
    RealtimeSession.objects.create(owner=user, backend="local", model_id="local/krea-realtime", status="failed",
                                   end_reason="timeout", error_message="no frame for 10 s", video=salvaged)
    whole = recording(user, minutes_ago=1, prompt="a whole one")
    html = logged_in.get("/gallery/?kind=realtime").content.decode()
    pieces = {p.split('"', 1)[0]: p for p in html.split('<li class="item" id="item-')[1:]}
    card = pieces[str(salvaged.pk)]
    assert re.search(r'<span class="badge" data-role="partial"[^>]*>partial</span>', card)
    assert "the last seconds may be missing" in card and ">Timed out</span>" in card
    assert 'data-role="partial"' not in pieces[str(whole.pk)]
    assert 'data-role="partial"' in logged_in.get(f"/gallery/items/{salvaged.pk}/").content.decode()

def test_a_queued_job_says_where_it_waits_in_words(logged_in, user):
    first = make_job(user, status="submitted", queue_position=0, video=False)
    later = make_job(user, status="submitted", queue_position=3, minutes_ago=1, video=False)
    html = logged_in.get("/gallery/").content.decode()
    assert "next in line at the provider" in html and "3 jobs ahead of it at the provider" in html
    assert "ahead in the provider" not in html and str(first.pk) in html and str(later.pk) in html
