"""Tiny media payloads for the fakes: playable MP4 clips and coloured JPEG frames."""

from __future__ import annotations

import functools
import hashlib
import io

from PIL import Image, ImageDraw


@functools.lru_cache(maxsize=64)
def tiny_mp4(seed: int = 0) -> bytes:
    """A real, playable H.264 MP4 (1 s, 160x96, 12 fps) whose frames depend on ``seed``.

    Different jobs yield different bytes, and a person trying the studio with the fakes
    sees a video that plays. PyAV carries its own libx264; run by hand, a fake without PyAV
    stops at start with one line saying so (``_cli.exit_if_missing``).
    """
    import av

    out = io.BytesIO()
    with av.open(out, mode="w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=12)
        stream.width, stream.height, stream.pix_fmt = 160, 96, "yuv420p"
        stream.options = {"preset": "ultrafast", "crf": "30"}
        for index in range(12):
            frame = Image.open(io.BytesIO(jpeg_frame(f"fake video {seed}", index, 160, 96)))
            for packet in stream.encode(av.VideoFrame.from_image(frame)):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return out.getvalue()


def _colour(text: str, index: int) -> tuple[int, int, int]:
    # hashlib (not hash()) keeps colours stable across processes (PYTHONHASHSEED).
    digest = hashlib.sha256(f"{text}\x00{index}".encode()).digest()
    return digest[0], digest[1], digest[2]


def jpeg_frame(text: str, index: int, width: int, height: int) -> bytes:
    """A real JPEG (quality 90) whose colour depends on ``text`` and ``index``.

    The background colour comes from the prompt alone (so a prompt change is visible at a
    glance) and a bar whose colour and position come from the frame index.
    """
    width, height = max(8, int(width)), max(8, int(height))
    base = hashlib.sha256(text.encode()).digest()
    image = Image.new("RGB", (width, height), (base[0], base[1], base[2]))
    draw = ImageDraw.Draw(image)
    bar_w = max(2, width // 8)
    x = (index * bar_w) % width
    draw.rectangle([x, 0, min(width - 1, x + bar_w - 1), height - 1], fill=_colour(text, index))
    if width >= 48 and height >= 16:
        draw.text((2, 2), f"{index} {text[:24]}", fill=(255, 255, 255))
    out = io.BytesIO()
    image.save(out, format="JPEG", quality=90)
    return out.getvalue()
