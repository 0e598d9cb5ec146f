"""Uploaded videos: what a job that restyles a video (video to video) accepts.

A video is taken as an uploaded file (multipart), checked where it is read, before a job
exists: a real MP4, MOV, WebM or Matroska file with a video stream PyAV can decode, within
``MAX_VIDEO_BYTES`` and ``MAX_SIDE`` a side. Its container header is parsed and its first frame
decoded; nothing more is read on the web side (the GPU worker decodes it, at 16 fps).
"""

from __future__ import annotations

import io
from dataclasses import dataclass

from model_control.errors import CatalogError
from model_control.images import with_extension

MAX_VIDEO_BYTES = 64 * 1024 * 1024
MIN_SIDE, MAX_SIDE = 16, 4096
ALLOWED_TEXT = "must be an MP4, MOV or WebM video"
# PyAV's container names -> what the file is served as.
CONTENT_TYPES = {"mp4": "video/mp4", "mov": "video/quicktime", "webm": "video/webm", "matroska": "video/x-matroska"}
EXTENSIONS = {"video/mp4": ".mp4", "video/quicktime": ".mov", "video/webm": ".webm", "video/x-matroska": ".mkv"}


@dataclass(frozen=True)
class VideoFacts:
    content_type: str
    width: int
    height: int
    seconds: float | None  # None when the container does not say


def looks_like_video(head: bytes) -> bool:
    """Whether a file's first bytes are an ISO media (MP4/MOV: a ``ftyp`` box) or an EBML
    (WebM/Matroska) container: the uploads read as a video rather than an image."""
    return head[4:8] == b"ftyp" or head.startswith(b"\x1a\x45\xdf\xa3")


def declared_video(file_name: str, content_type: str) -> bool:
    """Whether an upload says it is a video (its type or its name): checked as one, so a broken
    ``clip.mp4`` is answered as a video that cannot be read, not as an image."""
    return content_type.lower().startswith("video/") or file_name.lower().endswith(
        (*EXTENSIONS.values(), ".m4v"))


def validate_video_bytes(data: bytes, field: str) -> VideoFacts:
    """What an uploaded video is; ``CatalogError`` naming ``field`` when it is not one we take."""
    import av

    def refuse(message: str) -> CatalogError:
        return CatalogError({field: message})

    if not data:
        raise refuse(f"{ALLOWED_TEXT}; got an empty file")
    if len(data) > MAX_VIDEO_BYTES:
        raise refuse(f"the video is larger than {MAX_VIDEO_BYTES // (1024 * 1024)} MB")
    if not looks_like_video(data[:16]):
        raise refuse(f"{ALLOWED_TEXT}; got a file that is not one")
    try:
        with av.open(io.BytesIO(data), mode="r") as container:
            names = set(container.format.name.split(","))
            if not container.streams.video:
                raise refuse(f"{ALLOWED_TEXT}; this file has no video stream")
            stream = container.streams.video[0]
            width, height = stream.codec_context.width, stream.codec_context.height
            if not (MIN_SIDE <= width <= MAX_SIDE and MIN_SIDE <= height <= MAX_SIDE):
                raise refuse(f"width and height must be between {MIN_SIDE} and {MAX_SIDE} px; got {width}x{height}")
            first = next(iter(container.decode(stream)), None)
            if first is None:
                raise refuse(f"{ALLOWED_TEXT}; this one has no frames")
            seconds = container.duration / 1_000_000 if container.duration else None
    except CatalogError:
        raise
    except Exception:  # noqa: BLE001 - FFmpeg's errors for damaged or truncated files are many
        raise refuse(f"{ALLOWED_TEXT}; the file is damaged or incomplete") from None
    kind = next((CONTENT_TYPES[name] for name in ("webm", "mov", "mp4", "matroska") if name in names), None)
    if kind == "video/quicktime" and "mp4" in names:  # ISO media: the ftyp brand says which
        kind = "video/quicktime" if data[8:12] == b"qt  " else "video/mp4"
    return VideoFacts(kind or "video/mp4", width, height, seconds)


def file_name_for(name: str, content_type: str) -> str:
    """``name`` with the extension of ``content_type`` (``clip`` -> ``clip.mp4``)."""
    return with_extension(name, (EXTENSIONS.get(content_type, ".mp4"),), "video")
