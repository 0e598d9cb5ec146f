"""What the studio reads from and writes into a video file (PyAV): duration, a thumbnail of
the first frame, and the generation's parameters in the MP4's own metadata."""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import tempfile
from dataclasses import dataclass
from typing import Any

import av

logger = logging.getLogger(__name__)

THUMBNAIL_WIDTH = 320


@dataclass(frozen=True)
class VideoFacts:
    duration_s: float | None
    thumbnail_jpeg: bytes | None


def probe(content: bytes) -> VideoFacts:
    """Duration and a JPEG of the first frame; ``None`` for what the file does not yield."""
    try:
        with av.open(io.BytesIO(content)) as container:
            stream = container.streams.video[0]
            duration = None
            if container.duration:
                duration = container.duration / av.time_base
            elif stream.duration and stream.time_base:
                duration = float(stream.duration * stream.time_base)
            frame = next(container.decode(stream), None)
            thumbnail = None
            if frame is not None:
                image = frame.to_image()
                image.thumbnail((THUMBNAIL_WIDTH, THUMBNAIL_WIDTH))
                out = io.BytesIO()
                image.convert("RGB").save(out, "JPEG", quality=85)
                thumbnail = out.getvalue()
            return VideoFacts(round(duration, 3) if duration else None, thumbnail)
    except (av.FFmpegError, IndexError, StopIteration, ValueError) as exc:
        logger.warning("cannot read the video (%s): no thumbnail or duration", type(exc).__name__)
        return VideoFacts(None, None)


def comment(parameters: dict[str, Any]) -> str:
    """``parameters`` as the JSON of an MP4's ``comment`` tag (what ``read_metadata`` parses)."""
    return json.dumps(parameters, separators=(",", ":"), default=str)


def remux_with_comment(path: str | os.PathLike, text: str) -> None:
    """Rewrite the MP4 at ``path`` with ``text`` as its ``comment`` tag: video and audio packets
    copied (not re-encoded), the index in front (``+faststart``). Staged beside ``path`` and
    swapped in with ``os.replace``; ``path`` is untouched if this raises."""
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    handle, staged = tempfile.mkstemp(prefix=".remux-", suffix=".mp4", dir=directory)
    os.close(handle)
    try:
        with av.open(path) as source, av.open(staged, "w", format="mp4",
                                              options={"movflags": "+faststart"}) as target:
            target.metadata["comment"] = text
            mapping = {stream.index: target.add_stream_from_template(stream)
                       for stream in source.streams if stream.type in ("video", "audio")}
            for packet in source.demux():
                if packet.stream.index in mapping and packet.dts is not None:
                    packet.stream = mapping[packet.stream.index]
                    target.mux(packet)
        os.replace(staged, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(staged)


def with_metadata(content: bytes, parameters: dict[str, Any]) -> bytes:
    """The same MP4 (streams copied, not re-encoded, faststart) with ``parameters`` as its comment tag."""
    handle, path = tempfile.mkstemp(prefix="studio-", suffix=".mp4")
    try:
        with os.fdopen(handle, "wb") as out:
            out.write(content)
        remux_with_comment(path, comment(parameters))
        with open(path, "rb") as result:
            return result.read()
    except (av.FFmpegError, ValueError) as exc:
        logger.warning("cannot write metadata into the video (%s): stored as received", type(exc).__name__)
        return content
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)


def read_metadata(content: bytes) -> dict[str, Any]:
    """The parameters ``with_metadata`` wrote, or ``{}``."""
    try:
        with av.open(io.BytesIO(content)) as container:
            return json.loads(container.metadata.get("comment", "{}"))
    except (av.FFmpegError, ValueError):
        return {}
