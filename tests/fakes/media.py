"""Tiny media payloads for the fakes: an MP4-shaped byte string and coloured JPEG frames."""

from __future__ import annotations

import hashlib
import io
import random
import struct

from PIL import Image, ImageDraw


def _box(kind: bytes, payload: bytes) -> bytes:
    """One ISO-BMFF box: 32-bit big-endian size, 4-byte type, payload."""
    return struct.pack(">I", 8 + len(payload)) + kind + payload


def tiny_mp4(seed: int = 0) -> bytes:
    """A small, syntactically valid ISO-BMFF file (ftyp, free, mdat); not playable.

    The mdat payload depends on ``seed`` so different jobs yield different bytes.
    """
    ftyp = _box(b"ftyp", b"isom" + struct.pack(">I", 0x200) + b"isom" + b"iso2" + b"mp42")
    free = _box(b"free", b"")
    payload = b"fake-video:" + str(seed).encode() + b":" + random.Random(seed).randbytes(256)
    return ftyp + free + _box(b"mdat", payload)


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
