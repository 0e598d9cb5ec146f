"""videogen.gallery.mp4tags: the comment tag written into an MP4's index without re-muxing,
checked against FFmpeg (PyAV) as the reader: the tag it reads, the packets it demuxes."""

from __future__ import annotations

import io
import json
import os
import tempfile

import av
import numpy as np
import pytest

from tests.videogen.test_mp4 import gradient, top_level_boxes
from videogen.gallery import media, mp4tags


def encoded(*, faststart: bool = False, audio: bool = False, fragmented: bool = False, frames: int = 24) -> bytes:
    """An H.264 MP4 written by FFmpeg (PyAV), as a provider would send it."""
    flags = "+".join(flag for flag, wanted in (("faststart", faststart),
                                               ("frag_keyframe+empty_moov", fragmented)) if wanted)
    with tempfile.TemporaryDirectory() as folder:  # faststart's second pass reads the file back
        path = os.path.join(folder, "clip.mp4")
        _write(path, flags, audio, frames)
        with open(path, "rb") as written:
            return written.read()


def _write(path: str, flags: str, audio: bool, frames: int) -> None:
    with av.open(path, "w", format="mp4", options={"movflags": flags} if flags else {}) as container:
        video = container.add_stream("libx264", rate=12)
        video.width, video.height, video.pix_fmt = 64, 48, "yuv420p"
        video.options = {"preset": "ultrafast", "g": "6"}
        sound = container.add_stream("aac", rate=16000) if audio else None
        for index, frame in enumerate(gradient(frames)):
            container.mux(video.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
            if sound is not None:
                tone = (np.sin(np.arange(1024) * (index + 1) / 40) * 8000).astype(np.int16).reshape(1, -1)
                samples = av.AudioFrame.from_ndarray(tone, format="s16", layout="mono")
                samples.sample_rate, samples.pts = 16000, index * 1024
                container.mux(sound.encode(samples))
        container.mux(video.encode())
        if sound is not None:
            container.mux(sound.encode())


def packets(content: bytes) -> list[tuple[int, int | None, int | None, bytes]]:
    with av.open(io.BytesIO(content)) as container:
        return [(p.stream.index, p.pts, p.dts, bytes(p)) for p in container.demux() if p.size]


def tags(content: bytes) -> dict:
    with av.open(io.BytesIO(content)) as container:
        return dict(container.metadata)


@pytest.mark.parametrize("faststart", [False, True], ids=["index-at-the-end", "index-in-front"])
@pytest.mark.parametrize("audio", [False, True], ids=["video", "video-and-audio"])
def test_ffmpeg_reads_the_tag_and_the_same_packets_with_the_index_in_front(faststart, audio):
    source = encoded(faststart=faststart, audio=audio)
    assert (top_level_boxes(source).index("moov") < top_level_boxes(source).index("mdat")) is faststart
    text = json.dumps({"prompt": "a fox à l'aube", "seed": 7})
    tagged = mp4tags.with_comment(source, text)
    assert tags(tagged)["comment"] == text
    assert tags(tagged)["encoder"] == tags(source)["encoder"]  # the other tags stay
    assert packets(tagged) == packets(source)  # every chunk offset followed its media
    boxes = top_level_boxes(tagged)
    assert boxes[:2] == ["ftyp", "moov"] and boxes.index("moov") < boxes.index("mdat")
    assert len({stream for stream, *_ in packets(tagged)}) == (2 if audio else 1)


def test_a_second_tag_replaces_the_first():
    source = encoded()
    twice = mp4tags.with_comment(mp4tags.with_comment(source, "first"), "second")
    assert tags(twice)["comment"] == "second" and packets(twice) == packets(source)
    assert twice.count(b"\xa9cmt") == 1


def test_an_mp4_without_tags_gets_its_metadata_boxes():
    source = encoded()
    untagged = mp4tags._rewrite(source, lambda moov: moov.children.remove(moov.child(b"udta")))
    assert b"udta" not in untagged and packets(untagged) == packets(source)
    assert "encoder" not in tags(untagged)
    tagged = mp4tags.with_comment(untagged, "fresh")
    assert tags(tagged)["comment"] == "fresh" and packets(tagged) == packets(source)


@pytest.mark.parametrize("content", [
    encoded(fragmented=True),  # fragments: their offsets are not the index's
    b"\x1a\x45\xdf\xa3" + b"\0" * 60,  # WebM
    b"\0\0\0\x20ftypisom" + b"\0" * 8,  # an ftyp cut short
    b"",
], ids=["fragmented", "webm", "cut-short", "empty"])
def test_what_it_cannot_edit_is_a_value_error(content):
    with pytest.raises(ValueError):
        mp4tags.with_comment(content, "x")


def test_finish_tags_a_plain_mp4_in_place_and_re_muxes_anything_else():
    plain = encoded(faststart=False)
    stored, facts = media.finish(plain, {"prompt": "a fox"})
    assert media.read_metadata(stored) == {"prompt": "a fox"} and packets(stored) == packets(plain)
    assert facts.thumbnail_jpeg[:3] == b"\xff\xd8\xff" and facts.duration_s == pytest.approx(2.0, abs=0.1)
    fragmented = encoded(fragmented=True)
    stored, facts = media.finish(fragmented, {"prompt": "a fox"})
    assert media.read_metadata(stored) == {"prompt": "a fox"} and "moof" not in top_level_boxes(stored)
    assert facts.thumbnail_jpeg[:3] == b"\xff\xd8\xff" and len(packets(stored)) == len(packets(fragmented))
