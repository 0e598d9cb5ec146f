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

from videogen.gallery import mp4tags

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
            # One frame wanted: a decoder's frame threads would start (and fill) for nothing.
            stream.thread_type = "NONE"
            frame = next(container.decode(stream), None)
            return VideoFacts(_duration(container, stream), _thumbnail(frame))
    except (av.FFmpegError, IndexError, StopIteration, ValueError) as exc:
        logger.warning("cannot read the video (%s): no thumbnail or duration", type(exc).__name__)
        return VideoFacts(None, None)


def _duration(container, stream) -> float | None:
    duration = None
    if container.duration:
        duration = container.duration / av.time_base
    elif stream.duration and stream.time_base:
        duration = float(stream.duration * stream.time_base)
    return round(duration, 3) if duration else None


def _thumbnail(frame) -> bytes | None:
    """A JPEG of ``frame`` at most THUMBNAIL_WIDTH pixels wide (None without a frame)."""
    if frame is None:
        return None
    image = frame.to_image()
    image.thumbnail((THUMBNAIL_WIDTH, THUMBNAIL_WIDTH))
    out = io.BytesIO()
    image.convert("RGB").save(out, "JPEG", quality=85)
    return out.getvalue()


def comment(parameters: dict[str, Any]) -> str:
    """``parameters`` as the JSON of an MP4's ``comment`` tag (what ``read_metadata`` parses)."""
    return json.dumps(parameters, separators=(",", ":"), default=str)


def remux_with_comment(path: str | os.PathLike, text: str, *, facts: bool = False) -> VideoFacts | None:
    """Rewrite the MP4 at ``path`` with ``text`` as its ``comment`` tag: video and audio packets
    copied (not re-encoded), the index in front (``+faststart``). Staged beside ``path`` and
    swapped in with ``os.replace``; ``path`` is untouched if this raises. With ``facts``, the
    video's duration and a thumbnail of its first frame are read on the way (decoded from the
    packets being copied), so nobody has to open the file again for them."""
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    handle, staged = tempfile.mkstemp(prefix=".remux-", suffix=".mp4", dir=directory)
    os.close(handle)
    found = None
    try:
        with av.open(path) as source, av.open(staged, "w", format="mp4",
                                              options={"movflags": "+faststart"}) as target:
            target.metadata["comment"] = text
            mapping = {stream.index: target.add_stream_from_template(stream)
                       for stream in source.streams if stream.type in ("video", "audio")}
            video = source.streams.video[0] if facts and source.streams.video else None
            first = None
            for packet in source.demux():
                if packet.stream.index not in mapping or packet.dts is None:
                    continue
                if video is not None and first is None and packet.stream.index == video.index:
                    first = next(iter(video.codec_context.decode(packet)), None)
                packet.stream = mapping[packet.stream.index]
                target.mux(packet)
            if video is not None:
                if first is None:
                    first = next(iter(video.codec_context.decode(None)), None)
                found = VideoFacts(_duration(source, video), _thumbnail(first))
        os.replace(staged, path)
        return found
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(staged)


def with_metadata(content: bytes, parameters: dict[str, Any]) -> bytes:
    """The same MP4 (streams copied, not re-encoded, faststart) with ``parameters`` as its comment tag."""
    return finish(content, parameters)[0]


def finish(content: bytes, parameters: dict[str, Any]) -> tuple[bytes, VideoFacts]:
    """The MP4 with ``parameters`` as its comment tag (index in front), and its duration and
    first-frame thumbnail. A plain MP4 (what providers send) gets the tag by editing its
    index (``mp4tags``: the media bytes copied as they are); anything else is re-muxed into
    one by FFmpeg, the facts read on the way."""
    text = comment(parameters)
    try:
        tagged = mp4tags.with_comment(content, text)
    except ValueError as exc:
        logger.info("re-muxing the video to tag it (%s)", exc)
    else:
        return tagged, probe(tagged)
    handle, path = tempfile.mkstemp(prefix="studio-", suffix=".mp4")
    try:
        with os.fdopen(handle, "wb") as out:
            out.write(content)
        facts = remux_with_comment(path, text, facts=True)
        with open(path, "rb") as result:
            finished = result.read()
        return finished, facts if facts is not None else probe(finished)
    except (av.FFmpegError, ValueError) as exc:
        logger.warning("cannot write metadata into the video (%s): stored as received", type(exc).__name__)
        return content, probe(content)
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
