"""The gallery lists every video it can serve, whatever state a sidecar on disk is in."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from django.conf import settings

from videogen import gallery

pytestmark = pytest.mark.django_db

GOOD = {"created": "2024-05-01T10:00:00+00:00", "model": "fal-ai/veo3.1", "request": {"prompt": "a good cat"}}
# What a sidecar may hold after a crash, a hand edit, a disk error or an older studio.
POISONED_SIDECARS = {
    "surrogate": json.dumps({"created": "2024-05-02T10:00:00+00:00", "model": "fal-ai/veo3.1\udfff",
                             "request": {"prompt": "\ud800 a cat", "\udc80key": "v"}}).encode(),
    "garbage": b"\xff\xfe\x00\x81 not json at all \xc3",
    "latin1": '{"request": {"prompt": "caf\xe9"}}'.encode("latin-1"),
    "truncated": b'{"created": "2024-05-03", "request": {"prom',
    "a-list": b"[1, 2, 3]",
    "a-string": b'"just a string"',
    "null": b"null",
    "created-is-a-number": b'{"created": 20240504, "request": {"prompt": "numbered"}}',
    "created-is-a-dict": b'{"created": {"at": "noon"}}',
    "not-a-number": b'{"created": "2024-05-05", "request": {"seed": NaN, "guidance": Infinity}}',
    "deep": b"[" * 100_000 + b"]" * 100_000,
    "claims-another-name": b'{"name": "evil.mp4", "url": "javascript:alert(1)", "size": -1}',
}


def folder(user) -> Path:
    path = Path(settings.MEDIA_ROOT) / "videos" / str(user.pk)
    path.mkdir(parents=True, exist_ok=True)
    return path


def add_video(user, stem: str, sidecar: bytes | None) -> None:
    (folder(user) / f"{stem}.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + stem.encode())
    if sidecar is not None:
        (folder(user) / f"{stem}.json").write_bytes(sidecar)


@pytest.fixture
def poisoned_gallery(user):
    add_video(user, "good", json.dumps(GOOD).encode())
    add_video(user, "no-sidecar", None)
    for stem, content in POISONED_SIDECARS.items():
        add_video(user, stem, content)
    add_video(user, "sidecar-is-a-folder", None)
    (folder(user) / "sidecar-is-a-folder.json").mkdir()
    return {"good", "no-sidecar", "sidecar-is-a-folder", *POISONED_SIDECARS}


def test_a_poisoned_sidecar_does_not_break_the_listing_and_its_video_still_lists(user, poisoned_gallery):
    videos = gallery.list_videos(user.pk)
    assert {v.name for v in videos} == {f"{stem}.mp4" for stem in poisoned_gallery}
    by_name = {v.name: v for v in videos}
    assert by_name["good.mp4"].metadata == GOOD
    for video in videos:
        assert isinstance(video.metadata, dict) and isinstance(video.created, str)
        json.dumps(video.metadata, allow_nan=False).encode("utf-8")  # renders as strict JSON and UTF-8
    repaired = by_name["surrogate.mp4"].metadata
    assert repaired["request"]["prompt"] == "\ufffd a cat" and repaired["model"] == "fal-ai/veo3.1\ufffd"
    assert by_name["created-is-a-number.mp4"].metadata["request"] == {"prompt": "numbered"}
    assert by_name["garbage.mp4"].metadata == {} and by_name["a-list.mp4"].metadata == {}


def test_the_api_lists_a_poisoned_gallery(api, poisoned_gallery):
    response = api.get("/api/videos/")
    assert response.status_code == 200, response.content[:300]
    body = response.json()
    assert body["count"] == len(poisoned_gallery)
    names = {entry["name"] for entry in body["videos"]}
    assert names == {f"{stem}.mp4" for stem in poisoned_gallery}
    for entry in body["videos"]:  # what the file is called comes from the disk, not from its sidecar
        assert entry["url"] == f"/gallery/files/{entry['name']}" and entry["size"] > 0
    assert api.get("/gallery/files/surrogate.mp4").status_code == 200


def test_the_gallery_page_shows_a_poisoned_gallery(logged_in, poisoned_gallery):
    response = logged_in.get("/gallery/")
    assert response.status_code == 200
    page = response.content.decode("utf-8")
    assert "a good cat" in page and "\ufffd a cat" in page
    for stem in poisoned_gallery:
        assert f"/gallery/files/{stem}.mp4" in page


def test_a_video_that_vanishes_or_has_an_unreadable_name_is_left_out(api, logged_in, user):
    add_video(user, "good", json.dumps(GOOD).encode())
    (folder(user) / "dangling.mp4").symlink_to(folder(user) / "gone.mp4")
    (folder(user) / "a-folder.mp4").mkdir()
    try:
        fd = os.open(os.fsencode(folder(user)) + b"/bad-\xff-name.mp4", os.O_CREAT | os.O_WRONLY, 0o600)
    except OSError:  # a file system that insists on UTF-8 names
        pass
    else:
        os.close(fd)
    assert [v.name for v in gallery.list_videos(user.pk)] == ["good.mp4"]
    assert api.get("/api/videos/").json()["count"] == 1
    assert logged_in.get("/gallery/").status_code == 200


@pytest.mark.parametrize("stem", list(POISONED_SIDECARS))
def test_each_poison_alone_leaves_the_page_and_the_api_answering(api, logged_in, user, stem):
    add_video(user, "good", json.dumps(GOOD).encode())
    add_video(user, stem, POISONED_SIDECARS[stem])
    listed = api.get("/api/videos/")
    assert listed.status_code == 200, listed.content[:300]
    assert {entry["name"] for entry in listed.json()["videos"]} == {"good.mp4", f"{stem}.mp4"}
    page = logged_in.get("/gallery/")
    assert page.status_code == 200 and f"/gallery/files/{stem}.mp4".encode() in page.content
