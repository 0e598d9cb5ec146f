"""Studio's request shape, read from a DRF request: JSON or a form, images as uploads or URLs.

Shared by every door that takes a generation request (the synchronous generator, jobs,
TT Studio's endpoint); validation against a model happens in the catalog.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from rest_framework.exceptions import ParseError
from rest_framework.request import Request

from model_control import videos
from model_control.images import MAX_IMAGE_BYTES, file_name_for, validate_image_bytes
from model_control.inputs import CatalogError, ImageInput, VideoInput
from runtime.parsers import printable_name, unstorable

_FORM_NOISE = {"csrfmiddlewaretoken"}


def request_fields(request: Request) -> Mapping[str, Any]:
    """The request's JSON object or form fields; anything else (a JSON list, a number) is a 400."""
    data = request.data
    if not isinstance(data, Mapping):
        raise ParseError("The body must be a JSON object or a form.")
    return data


def studio_request(request: Request, exclude: set[str]) -> dict[str, Any]:
    """Studio's request shape from JSON or a multipart form (images as uploads or URLs,
    videos as uploads: what the bytes are decides which).

    A form field (name, value or file name) holding a character no database keeps (NUL; JSON
    bodies are checked by ``runtime.parsers``) is a ``CatalogError`` naming the field.
    """
    data: dict[str, Any] = {}
    fields = request_fields(request)
    for key in fields:
        _check_text(key, key, "the name ")
        if key in exclude or key in _FORM_NOISE:
            continue
        value = fields.get(key)
        if hasattr(value, "read"):  # an uploaded file
            continue
        if isinstance(value, str):
            _check_text(key, value)
        data[key] = value
    for key, upload in request.FILES.items():
        _check_text(key, key, "the name ")
        _check_text(key, upload.name or "", "the file name ")
        # What the bytes are decides, not the declared content type or the file name.
        head = upload.read(16)
        upload.seek(0)
        if videos.looks_like_video(head) or videos.declared_video(upload.name or "", upload.content_type or ""):
            if upload.size > videos.MAX_VIDEO_BYTES:
                raise CatalogError({key: f"the video is larger than {videos.MAX_VIDEO_BYTES // (1024 * 1024)} MB"})
            content = upload.read()
            facts = videos.validate_video_bytes(content, key)
            data[key] = VideoInput(data=content, content_type=facts.content_type,
                                   file_name=videos.file_name_for(upload.name or key, facts.content_type))
            continue
        if upload.size > MAX_IMAGE_BYTES:
            raise CatalogError({key: f"the file is larger than {MAX_IMAGE_BYTES // (1024 * 1024)} MB"})
        content = upload.read()
        content_type, _, _ = validate_image_bytes(content, key)
        data[key] = ImageInput(data=content, content_type=content_type,
                               file_name=file_name_for(upload.name or key, content_type))
    return data


def _check_text(field: str, text: str, what: str = "") -> None:
    """``CatalogError`` naming ``field`` when ``text`` cannot be stored (NUL, a lone surrogate)."""
    reason = unstorable(text)
    if reason:
        raise CatalogError({printable_name(field): what + reason})
