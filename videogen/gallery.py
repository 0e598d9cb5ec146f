"""Finished videos on disk, one folder per user, each MP4 with a JSON sidecar of its parameters.

``MEDIA_ROOT/videos/<user id>/<name>.mp4`` + ``<name>.json``. The sidecar is what "reuse
settings" reads: model, backend, the Studio request, what the provider got, its request id.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from django.conf import settings

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,150}\.mp4$")


@dataclass(frozen=True)
class GalleryVideo:
    name: str
    path: Path
    size: int
    metadata: dict[str, Any]

    @property
    def created(self) -> str:
        return self.metadata.get("created", "")


def user_dir(user_id: int) -> Path:
    return Path(settings.MEDIA_ROOT) / "videos" / str(int(user_id))


def save_video(user_id: int, file_name: str, content: bytes, metadata: dict[str, Any]) -> GalleryVideo:
    """Write the MP4 and its sidecar; a name already taken gets a numeric suffix."""
    folder = user_dir(user_id)
    folder.mkdir(parents=True, exist_ok=True)
    stem = Path(file_name).stem
    path = folder / f"{stem}.mp4"
    counter = 1
    while path.exists():
        path = folder / f"{stem}-{counter}.mp4"
        counter += 1
    record = {"created": datetime.now(UTC).isoformat(timespec="seconds"), "file": path.name, **metadata}
    path.with_suffix(".json").write_text(json.dumps(record, indent=2, default=str))
    path.write_bytes(content)
    return GalleryVideo(path.name, path, len(content), record)


def list_videos(user_id: int) -> list[GalleryVideo]:
    """The user's videos, newest first."""
    folder = user_dir(user_id)
    if not folder.is_dir():
        return []
    videos = [_load(path) for path in folder.glob("*.mp4")]
    return sorted(videos, key=lambda v: (v.created, v.name), reverse=True)


def find_video(user_id: int, name: str) -> GalleryVideo | None:
    """One of the user's videos by file name; never a path outside the user's folder."""
    if not _NAME.match(name):
        return None
    path = user_dir(user_id) / name
    return _load(path) if path.is_file() else None


def _load(path: Path) -> GalleryVideo:
    sidecar = path.with_suffix(".json")
    try:
        metadata = json.loads(sidecar.read_text()) if sidecar.exists() else {}
    except ValueError:
        metadata = {}
    return GalleryVideo(path.name, path, path.stat().st_size, metadata)
