"""Finished videos on disk, one folder per user, each MP4 with a JSON sidecar of its parameters.

``MEDIA_ROOT/videos/<user id>/<name>.mp4`` + ``<name>.json``. The sidecar is what "reuse
settings" reads: model, backend, the Studio request, what the provider got, its request id.
"""

from __future__ import annotations

import json
import logging
import math
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from stat import S_ISREG
from typing import Any

from django.conf import settings

logger = logging.getLogger(__name__)

MAX_DEPTH = 32  # a sidecar nested deeper than this is cut there (the studio writes three levels)
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,150}\.mp4$")


@dataclass(frozen=True)
class GalleryVideo:
    name: str
    path: Path
    size: int
    metadata: dict[str, Any]

    @property
    def created(self) -> str:
        created = self.metadata.get("created", "")
        return created if isinstance(created, str) else str(created)


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
    # Repaired on the way in too, so a sidecar always reads back as what was shown.
    record = _repair({"created": datetime.now(UTC).isoformat(timespec="seconds"), "file": path.name, **metadata})
    path.with_suffix(".json").write_text(json.dumps(record, indent=2, default=str), encoding="utf-8")
    path.write_bytes(content)
    return GalleryVideo(path.name, path, len(content), record)


def list_videos(user_id: int) -> list[GalleryVideo]:
    """The user's videos, newest first."""
    folder = user_dir(user_id)
    if not folder.is_dir():
        return []
    videos = [video for path in folder.glob("*.mp4") if (video := _load(path)) is not None]
    return sorted(videos, key=lambda v: (v.created, v.name), reverse=True)


def find_video(user_id: int, name: str) -> GalleryVideo | None:
    """One of the user's videos by file name; never a path outside the user's folder."""
    if not _NAME.match(name):
        return None
    return _load(user_dir(user_id) / name)


def _load(path: Path) -> GalleryVideo | None:
    """The video and its sidecar's metadata, or ``None`` for a name or file that cannot be served.

    A sidecar is data on disk, not a promise: one that cannot be read or parsed, is not a JSON
    object, or holds what cannot be shown again (lone surrogates, NaN) costs the video its
    metadata or those values, never the listing.
    """
    try:
        path.name.encode("utf-8")
        stat = path.stat()
    except (OSError, UnicodeEncodeError):  # a dangling link, gone since the glob, a name not in UTF-8
        return None
    if not S_ISREG(stat.st_mode):
        return None
    return GalleryVideo(path.name, path, stat.st_size, _read_sidecar(path.with_suffix(".json")))


def _read_sidecar(sidecar: Path) -> dict[str, Any]:
    try:
        raw = sidecar.read_bytes()
    except FileNotFoundError:
        return {}
    except OSError as exc:
        logger.warning("gallery: cannot read %s: %s", sidecar, exc)
        return {}
    try:
        value = json.loads(raw.decode("utf-8", errors="replace"))
    except (ValueError, RecursionError) as exc:
        logger.warning("gallery: %s is not JSON: %s", sidecar, str(exc)[:200])
        return {}
    if not isinstance(value, dict):
        logger.warning("gallery: %s holds a %s, not an object", sidecar, type(value).__name__)
        return {}
    metadata = _repair(value)
    if not isinstance(metadata.get("created", ""), str):
        metadata["created"] = str(metadata["created"])
    return metadata


def _repair(value: Any, depth: int = 0) -> Any:
    """``value`` with every string valid Unicode and every number finite, nested at most ``MAX_DEPTH``."""
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return "".join("\ufffd" if "\ud800" <= char <= "\udfff" else char for char in value)
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        if depth >= MAX_DEPTH:
            return {}
        return {_repair(key): _repair(item, depth + 1) for key, item in value.items()}
    if isinstance(value, list):
        return [_repair(item, depth + 1) for item in value] if depth < MAX_DEPTH else []
    return value
