"""A PNG's image data read to the end without holding its pixels.

Pillow's ``verify`` checks a PNG's chunks and their CRCs, not the compressed pixels inside
them; decoding them would hold the whole image (40 Mpx: 120 MB as RGB). :func:`check_png_data`
inflates the data in pieces instead and checks that every row the header promises is there,
each with a known filter, keeping nothing (the format: https://www.w3.org/TR/png/).
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Iterator

# Bytes of compressed PNG data fed to zlib at once, and the most it may give back per call.
_INFLATE_PIECE = 1 << 16
_PNG_CHANNELS = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}  # colour type -> samples per pixel
# Adam7 interlacing: (first column, first row, column step, row step) of each of the 7 passes.
_ADAM7 = ((0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2))


def _png_layout(ihdr: bytes) -> list[tuple[int, int]]:
    """``(rows, bytes per row with its filter byte)`` of each pass the PNG header describes."""
    width, height, depth, colour, _, _, interlace = struct.unpack(">IIBBBBB", ihdr[:13])
    if colour not in _PNG_CHANNELS or depth not in (1, 2, 4, 8, 16):
        raise ValueError(f"colour type {colour} at {depth} bits")
    bits = _PNG_CHANNELS[colour] * depth
    layout = []
    for x0, y0, dx, dy in (_ADAM7 if interlace else ((0, 0, 1, 1),)):
        columns, rows = (width - x0 + dx - 1) // dx, (height - y0 + dy - 1) // dy
        if columns > 0 and rows > 0:
            layout.append((rows, 1 + (columns * bits + 7) // 8))
    return layout


def _row_starts(layout: list[tuple[int, int]]) -> Iterator[int]:
    """Where each row (its filter byte) starts in the inflated data."""
    offset = 0
    for rows, size in layout:
        for _ in range(rows):
            yield offset
            offset += size


def check_png_data(data: bytes) -> None:
    """``ValueError`` unless the PNG's compressed image data inflates to every row its header
    promises, each starting with a known filter (0-4).

    Inflated in pieces of ``_INFLATE_PIECE`` bytes that are looked at and dropped: the memory
    is a few of those, whatever the image's size. Data past the last row is not read (a
    decoder ignores it too), so a stream that inflates far beyond its header costs nothing.
    """
    view = memoryview(data)
    inflater = zlib.decompressobj()
    layout: list[tuple[int, int]] | None = None
    expected = produced = 0
    row_starts: Iterator[int] = iter(())
    next_row: int | None = None

    def take(piece: bytes) -> None:
        nonlocal produced, next_row
        end = produced + len(piece)
        while next_row is not None and next_row < end:
            if piece[next_row - produced] > 4:
                raise ValueError(f"unknown row filter {piece[next_row - produced]}")
            next_row = next(row_starts, None)
        produced = end

    position = 8
    while position + 8 <= len(data):
        length, kind = struct.unpack(">I4s", view[position:position + 8])
        body = view[position + 8:position + 8 + length]
        if len(body) < length:
            raise ValueError("a chunk is cut short")
        if kind == b"IHDR" and layout is None:
            layout = _png_layout(bytes(body))
            expected = sum(rows * size for rows, size in layout)
            row_starts = _row_starts(layout)
            next_row = next(row_starts, None)
        elif kind == b"IDAT" and layout is not None:
            for start in range(0, length, _INFLATE_PIECE):
                take(inflater.decompress(body[start:start + _INFLATE_PIECE], _INFLATE_PIECE))
                while inflater.unconsumed_tail and produced < expected:
                    take(inflater.decompress(inflater.unconsumed_tail, _INFLATE_PIECE))
                if produced >= expected:
                    return
        elif kind == b"IEND":
            break
        position += 12 + length
    take(inflater.flush())
    if layout is None or produced < expected:
        raise ValueError(f"image data ends after {produced} of {expected} bytes")
