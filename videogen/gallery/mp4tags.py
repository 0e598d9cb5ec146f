"""An MP4's ``comment`` tag written into its index (the ``moov`` box) without touching its
media: the boxes are edited, the samples are copied as they are.

What FFmpeg's muxer writes for ``metadata["comment"]`` and its demuxer reads back:
``moov/udta/meta`` (handler ``mdir``) ``/ilst/©cmt/data`` (UTF-8). The edited ``moov`` goes
first, after ``ftyp`` (a browser plays the file while it downloads, as FFmpeg's
``+faststart`` does), and every chunk offset (``stco``/``co64``) follows the media that moved.

Only a plain ISO media file is edited: one ``moov``, no fragments (``moof``), offsets that
still fit. Anything else is a ``ValueError``, and the caller re-muxes the file with FFmpeg
instead (``videogen.gallery.media``). For a finished job this is the difference between
rewriting a few kilobytes of index and demuxing and muxing every packet of the video.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass

# Boxes whose children hold what is edited here: the chunk offsets (moov/trak/mdia/minf/stbl)
# and the tags (moov/udta/meta/ilst).
_CONTAINERS = frozenset({b"moov", b"trak", b"mdia", b"minf", b"stbl", b"udta", b"meta", b"ilst"})
_COMMENT = b"\xa9cmt"
_UTF8 = 1
# An iTunes-style metadata handler, as FFmpeg writes it: version/flags, pre_defined, 'mdir',
# reserved ('appl', 0, 0) and an empty name.
_MDIR_HANDLER = b"\0\0\0\0" + b"\0\0\0\0" + b"mdir" + b"appl" + b"\0" * 8 + b"\0"


@dataclass
class _Box:
    kind: bytes
    body: bytes = b""  # a leaf's content
    children: list[_Box] | None = None  # a container's boxes
    prefix: bytes = b""  # a full box's version and flags before its children (an ISO 'meta')

    def child(self, kind: bytes) -> _Box | None:
        return next((box for box in self.children or () if box.kind == kind), None)

    def encode(self) -> bytes:
        content = self.prefix + (b"".join(box.encode() for box in self.children)
                                 if self.children is not None else self.body)
        size = 8 + len(content)
        if size > 0xFFFFFFFF:
            return struct.pack(">I4sQ", 1, self.kind, size + 8) + content
        return struct.pack(">I4s", size, self.kind) + content


@dataclass
class _Span:
    kind: bytes
    start: int
    header: int
    end: int
    moved_by: int = 0


def _spans(data: bytes | memoryview, start: int, end: int) -> list[_Span]:
    """The boxes laid one after another in ``data[start:end]``."""
    spans = []
    at = start
    while at < end:
        if end - at < 8:
            raise ValueError("a box header is cut short")
        size, kind = struct.unpack_from(">I4s", data, at)
        header = 8
        if size == 1:
            if end - at < 16:
                raise ValueError("a 64-bit box header is cut short")
            size, header = struct.unpack_from(">Q", data, at + 8)[0], 16
        elif size == 0:  # to the end
            size = end - at
        if size < header or at + size > end:
            raise ValueError(f"box {kind!r} has an impossible size")
        spans.append(_Span(kind, at, header, at + size))
        at += size
    return spans


def _parse(data: bytes, span: _Span) -> _Box:
    if span.kind not in _CONTAINERS:
        return _Box(span.kind, body=data[span.start + span.header:span.end])
    start, prefix = span.start + span.header, b""
    if span.kind == b"meta":
        # ISO's 'meta' is a full box (4 bytes of version and flags), QuickTime's is not: the
        # handler box comes first either way.
        if data[start + 4:start + 8] == b"hdlr":
            pass
        elif data[start + 8:start + 12] == b"hdlr":
            start, prefix = start + 4, data[start:start + 4]
        else:
            raise ValueError("a 'meta' box without its handler")
    return _Box(span.kind, prefix=prefix, children=[_parse(data, child) for child in _spans(data, start, span.end)])


def _set_comment(moov: _Box, text: str) -> None:
    udta = moov.child(b"udta")
    if udta is None:
        udta = _Box(b"udta", children=[])
        moov.children.append(udta)
    meta = udta.child(b"meta")
    if meta is None:
        meta = _Box(b"meta", prefix=b"\0\0\0\0", children=[_Box(b"hdlr", body=_MDIR_HANDLER)])
        udta.children.append(meta)
    handler = meta.child(b"hdlr")
    if handler is None or handler.body[8:12] != b"mdir":
        raise ValueError("the metadata box is not iTunes-style ('mdir')")
    ilst = meta.child(b"ilst")
    if ilst is None:
        ilst = _Box(b"ilst", children=[])
        meta.children.append(ilst)
    value = _Box(b"data", body=struct.pack(">II", _UTF8, 0) + text.encode())
    ilst.children = [box for box in ilst.children if box.kind != _COMMENT] + [_Box(_COMMENT, children=[value])]


def _offset_tables(moov: _Box):
    for trak in moov.children:
        if trak.kind != b"trak":
            continue
        stbl = trak
        for kind in (b"mdia", b"minf", b"stbl"):
            stbl = stbl.child(kind) if stbl is not None else None
        if stbl is None:
            raise ValueError("a track without its sample table")
        tables = [box for box in stbl.children if box.kind in (b"stco", b"co64")]
        if len(tables) != 1:
            raise ValueError("a track without one chunk offset table")
        yield tables[0]


def _shift_offsets(moov: _Box, moved: list[_Span]) -> None:
    """Every chunk offset moved by as much as the top-level box it points into."""
    def shifted(offset: int) -> int:
        for span in moved:
            if span.start <= offset < span.end:
                return offset + span.moved_by
        raise ValueError(f"a chunk offset ({offset}) points outside the file's boxes")

    for table in _offset_tables(moov):
        wide = table.kind == b"co64"
        version_flags, count = table.body[:4], struct.unpack_from(">I", table.body, 4)[0]
        item = "Q" if wide else "I"
        if len(table.body) < 8 + count * (8 if wide else 4):
            raise ValueError("a chunk offset table is cut short")
        offsets = struct.unpack_from(f">{count}{item}", table.body, 8)
        new = [shifted(offset) for offset in offsets]
        if not wide and new and max(new) > 0xFFFFFFFF:
            raise ValueError("the chunk offsets no longer fit in 32 bits")
        table.body = version_flags + struct.pack(f">I{count}{item}", count, *new)


def with_comment(content: bytes, text: str) -> bytes:
    """``content`` (an MP4) with ``text`` as its comment tag and its index in front; the
    media bytes unchanged. ``ValueError`` when the file is not a plain MP4 this can edit."""
    return _rewrite(content, lambda moov: _set_comment(moov, text))


def _rewrite(content: bytes, edit: Callable[[_Box], None]) -> bytes:
    """``content`` with its ``moov`` changed by ``edit`` and put first after ``ftyp``."""
    top = _spans(content, 0, len(content))
    kinds = [span.kind for span in top]
    if not kinds or kinds[0] != b"ftyp" or kinds.count(b"moov") != 1 or b"moof" in kinds:
        raise ValueError("not a plain (unfragmented) MP4 with one index")
    moov_span = top[kinds.index(b"moov")]
    moov = _parse(content, moov_span)
    edit(moov)
    size = len(moov.encode())  # the offsets' values do not change the index's size
    rest = [span for span in top if span.kind not in (b"ftyp", b"moov")]
    at = top[0].end + size
    for span in rest:
        span.moved_by = at - span.start
        at += span.end - span.start
    _shift_offsets(moov, rest)
    view = memoryview(content)
    return b"".join([view[top[0].start:top[0].end], moov.encode(), *(view[s.start:s.end] for s in rest)])
