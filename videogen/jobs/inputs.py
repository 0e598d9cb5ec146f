"""A job's input as it is kept in the database, and images on the provider's CDN.

``model.clean`` gives typed values (tuples, ``ImageInput`` with bytes); a job stores them as
JSON: uploaded images and videos go to storage (``uploads/<sha256>``) and are kept by reference, URLs
as they are. A fal job uploads each image to fal's CDN once per content hash
(``UploadCache``, which survives restarts).
"""

from __future__ import annotations

import functools
import hashlib
import mimetypes
from typing import Any

from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.utils import timezone

from model_control.backends import RemoteBackend
from model_control.catalog import VideoModel
from model_control.inputs import ImageInput, VideoInput
from runtime.locks import LockTimeout, named_lock
from videogen.models import UploadCache

CDN_CACHE_DAYS = 7
UPLOAD_WAIT_S = 120


def store_values(model: VideoModel, values: dict[str, Any]) -> dict[str, Any]:
    """JSON for ``Job.input``; uploads (images, videos) are written to storage once per content."""
    stored: dict[str, Any] = {}
    for name, value in values.items():
        if isinstance(value, ImageInput | VideoInput):
            if value.data is not None:
                digest = hashlib.sha256(value.data).hexdigest()
                extension = mimetypes.guess_extension(value.content_type) or ".img"
                path = f"uploads/{digest}{extension}"
                if not default_storage.exists(path):
                    path = default_storage.save(path, ContentFile(value.data))
                stored[name] = {"upload": path, "sha256": digest, "content_type": value.content_type,
                                "file_name": value.file_name}
            else:
                stored[name] = {"url": value.url}
        elif isinstance(value, tuple):
            stored[name] = list(value)
        else:
            stored[name] = value
    return stored


def load_values(model: VideoModel, stored: dict[str, Any]) -> dict[str, Any]:
    """``store_values`` undone: what ``model.wire_fields`` takes."""
    values: dict[str, Any] = {}
    for name, value in stored.items():
        param = model.param(name)
        if param is not None and param.kind == "video" and isinstance(value, dict) and "upload" in value:
            with default_storage.open(value["upload"], "rb") as handle:
                values[name] = VideoInput(data=handle.read(), content_type=value.get("content_type", "video/mp4"),
                                          file_name=value.get("file_name", "video.mp4"))
        elif param is not None and param.kind == "image" and isinstance(value, dict):
            if "upload" in value:
                with default_storage.open(value["upload"], "rb") as handle:
                    data = handle.read()
                values[name] = ImageInput(data=data, content_type=value.get("content_type", "image/png"),
                                          file_name=value.get("file_name", "image"))
            else:
                values[name] = ImageInput(url=value["url"])
        elif param is not None and param.kind == "size" and isinstance(value, list):
            values[name] = tuple(value)
        else:
            values[name] = value
    return values


def cdn_url(backend: RemoteBackend, image: ImageInput) -> str:
    """The provider's CDN URL for an uploaded image, uploading it only if this content is not
    there yet (``UploadCache``, by content hash, kept ``CDN_CACHE_DAYS``).

    Jobs submitted together with the same image upload it once: the first takes a lock named
    after the content hash (across every worker process), the others wake when it is
    released and find its row.
    """
    if image.url:
        return image.url
    digest = hashlib.sha256(image.data).hexdigest()

    def cached() -> str | None:
        row = UploadCache.objects.filter(provider=backend.name, sha256=digest,
                                         expires_at__gt=timezone.now()).first()
        return row.url if row is not None else None

    url = cached()
    if url is not None:
        return url
    try:
        with named_lock(f"upload:{backend.name}:{digest}", timeout=UPLOAD_WAIT_S):
            url = cached()
            if url is None:
                url = backend.upload(image)
                UploadCache.objects.update_or_create(provider=backend.name, sha256=digest, defaults={
                    "url": url, "expires_at": timezone.now() + timezone.timedelta(days=CDN_CACHE_DAYS)})
            return url
    except LockTimeout:  # the other uploader is stuck: upload it ourselves
        return backend.upload(image)


def image_resolver(backend: RemoteBackend):
    """``resolve_image`` for ``backend.submit``: uploads through the cache above."""
    return functools.partial(cdn_url, backend)
