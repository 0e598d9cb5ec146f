"""Putting a finished video into its owner's gallery: the MP4 (with its parameters in the
file's metadata), a JSON sidecar, a first-frame thumbnail and the ``Video`` row.

Every file goes through Django's storage API (MEDIA_ROOT or an S3 bucket)."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from django.core.files.base import ContentFile
from django.core.files.storage import default_storage

from videogen.gallery import media
from videogen.models import Job, Video


def slug(text: str) -> str:
    """A file-name-safe form of a model id or label."""
    return "".join(c if c.isalnum() else "-" for c in text.lower()).strip("-")[:80]


def save_video(owner_id: int, name: str, content: bytes, parameters: dict[str, Any], *,
               job: Job | None = None) -> Video:
    """Store ``content`` as ``videos/<owner>/<name>.mp4`` (a free name is picked if taken) with
    ``parameters`` in its metadata and sidecar; returns the new ``Video``."""
    content, facts = media.finish(content, parameters)
    path = default_storage.save(f"videos/{owner_id}/{name}.mp4", ContentFile(content))
    default_storage.save(path.rsplit(".", 1)[0] + ".json",
                         ContentFile(json.dumps(parameters, indent=2, default=str).encode()))
    thumbnail = ""
    if facts.thumbnail_jpeg:
        thumbnail = default_storage.save(f"thumbnails/{owner_id}/{path.rsplit('/', 1)[-1][:-4]}.jpg",
                                         ContentFile(facts.thumbnail_jpeg))
    return Video.objects.create(owner_id=owner_id, job=job, file=path, thumbnail=thumbnail,
                                duration_s=facts.duration_s, size=len(content),
                                sha256=hashlib.sha256(content).hexdigest(), parameters=parameters)
