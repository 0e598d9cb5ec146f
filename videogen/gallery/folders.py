"""Gallery folders from before jobs, imported into ``Video`` rows (then the rows are the truth).

The synchronous door used to write ``MEDIA_ROOT/videos/<user id>/<name>.mp4`` + ``<name>.json``
(the parameters). :func:`import_folders` makes a ``Video`` for each such file not yet known,
with its sidecar's parameters, size, hash, duration and thumbnail. The migration that creates
the gallery runs it once; ``manage.py import_gallery`` runs it again on demand.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from stat import S_ISREG
from typing import Any

from django.conf import settings

logger = logging.getLogger(__name__)

MAX_DEPTH = 32  # a sidecar nested deeper than this is cut there (the studio writes three levels)


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


def import_folders(video_model=None, user_model=None) -> dict[str, int]:
    """Make a ``Video`` for every MP4 in the users' gallery folders that has none yet.

    The models are parameters so a migration can pass its historical ones.
    """
    from django.contrib.auth import get_user_model
    from django.core.files.base import ContentFile
    from django.core.files.storage import default_storage

    from videogen.gallery import media

    if video_model is None:
        from videogen.models import Video as video_model
    user_model = user_model or get_user_model()
    counts = {"imported": 0, "known": 0, "skipped": 0}
    root = Path(settings.MEDIA_ROOT) / "videos"
    if not root.is_dir():
        return counts
    known = set(video_model.objects.values_list("file", flat=True))
    for folder in sorted(p for p in root.iterdir() if p.is_dir()):
        if not folder.name.isdigit() or not user_model.objects.filter(pk=int(folder.name)).exists():
            continue
        for path in sorted(folder.glob("*.mp4")):
            relative = f"videos/{folder.name}/{path.name}"
            if relative in known:
                counts["known"] += 1
                continue
            video = _load(path)
            if video is None:
                counts["skipped"] += 1
                continue
            content = path.read_bytes()
            facts = media.probe(content)
            thumbnail = ""
            if facts.thumbnail_jpeg:
                thumbnail = default_storage.save(f"thumbnails/{folder.name}/{path.stem}.jpg",
                                                 ContentFile(facts.thumbnail_jpeg))
            record = video_model.objects.create(
                owner_id=int(folder.name), file=relative, thumbnail=thumbnail, duration_s=facts.duration_s,
                size=len(content), sha256=hashlib.sha256(content).hexdigest(), parameters=video.metadata)
            created = _created(video.metadata.get("created"))
            if created is not None:
                video_model.objects.filter(pk=record.pk).update(created_at=created)
            counts["imported"] += 1
    return counts


def _created(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


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
