"""Gallery folders from before jobs are imported into Video rows, whatever state a sidecar
on disk is in; the listing and the page then read the rows."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from django.conf import settings

from videogen.gallery import folders as gallery
from videogen.models import Video

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


def imported(user) -> dict[str, Video]:
    gallery.import_folders()
    return {v.name: v for v in Video.objects.filter(owner=user)}


def test_a_poisoned_sidecar_does_not_break_the_import_and_its_video_still_lists(user, poisoned_gallery):
    by_name = imported(user)
    assert set(by_name) == {f"{stem}.mp4" for stem in poisoned_gallery}
    good = dict(by_name["good.mp4"].parameters)
    assert good == GOOD
    assert by_name["good.mp4"].created_at.isoformat().startswith("2024-05-01T10:00:00")
    for video in by_name.values():
        assert isinstance(video.parameters, dict)
        json.dumps(video.parameters, allow_nan=False).encode("utf-8")  # renders as strict JSON and UTF-8
    repaired = by_name["surrogate.mp4"].parameters
    assert repaired["request"]["prompt"] == "\ufffd a cat" and repaired["model"] == "fal-ai/veo3.1\ufffd"
    assert by_name["created-is-a-number.mp4"].parameters["request"] == {"prompt": "numbered"}
    assert by_name["garbage.mp4"].parameters == {} and by_name["a-list.mp4"].parameters == {}
    # Importing again adds nothing: the rows are the gallery now.
    assert gallery.import_folders()["imported"] == 0


def test_the_api_lists_a_poisoned_gallery(api, user, poisoned_gallery):
    by_name = imported(user)
    response = api.get("/api/videos/?limit=200")
    assert response.status_code == 200, response.content[:300]
    body = response.json()
    assert body["count"] == len(poisoned_gallery)
    names = {entry["name"] for entry in body["results"]}
    assert names == {f"{stem}.mp4" for stem in poisoned_gallery}
    for entry in body["results"]:  # what the file is called comes from the disk, not from its sidecar
        assert entry["url"] == f"/api/videos/{entry['id']}/file" and entry["size"] > 0
    assert api.get(f"/api/videos/{by_name['surrogate.mp4'].id}/file").status_code == 200


def test_the_gallery_page_shows_a_poisoned_gallery(logged_in, user, poisoned_gallery):
    by_name = imported(user)
    response = logged_in.get("/gallery/")
    assert response.status_code == 200
    page = response.content.decode("utf-8")
    assert "a good cat" in page and "\ufffd a cat" in page
    for video in by_name.values():
        assert f"/api/videos/{video.id}/file" in page


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
    assert list(imported(user)) == ["good.mp4"]
    assert api.get("/api/videos/").json()["count"] == 1
    assert logged_in.get("/gallery/").status_code == 200


@pytest.mark.parametrize("stem", list(POISONED_SIDECARS))
def test_each_poison_alone_leaves_the_page_and_the_api_answering(api, logged_in, user, stem):
    add_video(user, "good", json.dumps(GOOD).encode())
    add_video(user, stem, POISONED_SIDECARS[stem])
    by_name = imported(user)
    listed = api.get("/api/videos/")
    assert listed.status_code == 200, listed.content[:300]
    assert {entry["name"] for entry in listed.json()["results"]} == {"good.mp4", f"{stem}.mp4"}
    page = logged_in.get("/gallery/")
    assert page.status_code == 200 and f"/api/videos/{by_name[stem + '.mp4'].id}/file".encode() in page.content


def test_the_import_command_reports_what_it_did(user, capsys):
    from django.core.management import call_command

    add_video(user, "good", json.dumps(GOOD).encode())
    call_command("import_gallery")
    call_command("import_gallery")
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("imported 1,") and out[1].startswith("imported 0, already known 1")
