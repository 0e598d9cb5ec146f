"""Images given to a generation: the bytes are a real, still JPEG/PNG/WebP of sensible size,
and a URL points at a public http(s) server.

Both answer ``CatalogError({field: message})`` (a 400 naming the field) with a message the
user can act on. The rules are listed in docs/security.md ("Images and URLs").
"""

from __future__ import annotations

import base64
import binascii
import io
import ipaddress
import socket
import threading
import warnings
from collections.abc import Callable, Iterable
from urllib.parse import urlsplit

from django.conf import settings
from PIL import Image, UnidentifiedImageError

from model_control.errors import CatalogError
from model_control.png_data import check_png_data

MAX_IMAGE_BYTES = 20 * 1024 * 1024
MIN_SIDE = 32  # px; providers scale small images up, but a favicon is not a first frame
MAX_SIDE = 8192  # px
MAX_URL_LENGTH = 2048
ALLOWED_PORTS = (80, 443)

# Pillow's format name -> the content type the studio sends on.
# MPO is how Pillow reads many phone cameras' JPEGs (a JPEG plus a preview or depth map).
FORMATS = {"JPEG": "image/jpeg", "MPO": "image/jpeg", "PNG": "image/png", "WEBP": "image/webp"}
ALLOWED_TEXT = "must be a JPEG, PNG or WebP image file"
_EXTENSIONS = {"image/jpeg": (".jpg", ".jpeg"), "image/png": (".png",), "image/webp": (".webp",)}

Resolver = Callable[[str], Iterable[str]]


# --- bytes --------------------------------------------------------------------------------------

def validate_image_bytes(data: bytes, field: str) -> tuple[str, int, int]:
    """``(content_type, width, height)`` of a real, still JPEG, PNG or WebP image.

    The content type is what the bytes are, whatever the upload or data URL declared.
    Refused (``CatalogError``): empty or oversized data, anything Pillow cannot open and
    verify, other formats (GIF, BMP, TIFF, ...), animations, sides outside
    ``MIN_SIDE..MAX_SIDE`` and more than ``STUDIO_MAX_IMAGE_PIXELS`` pixels (decompression
    bombs): sizes are read from the header, before any pixel is decoded, and the pixels are
    then read in bounded memory (:func:`_decode`).
    """
    def refuse(message: str) -> CatalogError:
        return CatalogError({field: message})

    if not data:
        raise refuse(f"{ALLOWED_TEXT}; got an empty file")
    if len(data) > MAX_IMAGE_BYTES:
        raise refuse(f"the image is larger than {MAX_IMAGE_BYTES // (1024 * 1024)} MB")
    kind: str | None = None
    try:
        with warnings.catch_warnings():
            # Past Pillow's own MAX_IMAGE_PIXELS it warns (and past twice that, raises):
            # either way a bomb, answered below as a 400 rather than a warning or a 500.
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as image:  # reads the header only
                kind, (width, height) = image.format, image.size
                frames = getattr(image, "n_frames", 1)
                if kind in FORMATS:
                    _check_size(width, height, refuse)
                    image.verify()
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise refuse(f"the image has too many pixels (at most {settings.STUDIO_MAX_IMAGE_PIXELS:,})") from None
    except UnidentifiedImageError:
        raise refuse(f"{ALLOWED_TEXT}; got {_what_is(data)}") from None
    except CatalogError:
        raise
    except Exception:  # noqa: BLE001 - Pillow's decoders raise many types for broken files
        kind = kind or _sniff(data)
        raise refuse(f"{ALLOWED_TEXT}; the {_format_name(kind)} file is damaged or incomplete") from None
    if kind not in FORMATS:
        suffix = " (convert it to PNG, or pick one frame)" if kind == "GIF" else ""
        raise refuse(f"{ALLOWED_TEXT}; got a {_format_name(kind)} image{suffix}")
    if frames > 1 and kind != "MPO":
        raise refuse(f"must be a still image; got an animated {_format_name(kind)} with {frames} frames")
    _decode(data, kind, refuse)
    return FORMATS[kind], width, height


def file_name_for(name: str, content_type: str) -> str:
    """``name`` with an extension that matches ``content_type`` (``cat.txt`` -> ``cat.png``)."""
    return with_extension(name, _EXTENSIONS.get(content_type, ()), "image")


def with_extension(name: str, extensions: tuple[str, ...], empty_stem: str) -> str:
    """``name`` if it ends with one of ``extensions``, else its stem with the first of them."""
    if not extensions or name.lower().endswith(extensions):
        return name
    stem = name.rsplit(".", 1)[0] if "." in name.lstrip(".") else name
    return f"{stem or empty_stem}{extensions[0]}"


def validate_data_url(url: str, field: str) -> str:
    """A ``data:image/...;base64,...`` URL checked like an upload; the type is set to the real one."""
    header, comma, payload = url.partition(",")
    if not comma or not header.lower().endswith(";base64"):
        raise CatalogError({field: "a data: URL must look like data:image/png;base64,<base64 data>"})
    if len(payload) > MAX_IMAGE_BYTES * 4 // 3 + 4:
        raise CatalogError({field: f"the image is larger than {MAX_IMAGE_BYTES // (1024 * 1024)} MB"})
    try:
        data = base64.b64decode("".join(payload.split()), validate=True)
    except (binascii.Error, ValueError):
        raise CatalogError({field: "the data: URL is not valid base64"}) from None
    content_type, _, _ = validate_image_bytes(data, field)
    declared = header[len("data:"):].split(";", 1)[0].lower()
    if declared == content_type:
        return url
    return f"data:{content_type};base64,{base64.b64encode(data).decode('ascii')}"


def _check_size(width: int, height: int, refuse: Callable[[str], CatalogError]) -> None:
    limit = settings.STUDIO_MAX_IMAGE_PIXELS
    if width * height > limit:
        raise refuse(f"the image has too many pixels: {width}x{height} (at most {limit:,})")
    if not (MIN_SIDE <= width <= MAX_SIDE and MIN_SIDE <= height <= MAX_SIDE):
        raise refuse(f"width and height must be between {MIN_SIDE} and {MAX_SIDE} px; got {width}x{height}")


def _decode(data: bytes, kind: str, refuse: Callable[[str], CatalogError]) -> None:
    """Read every byte of image data once, in as little memory as the format allows.

    ``verify`` checks a PNG's chunks but not its compressed pixels, and reads none of a JPEG's
    image data; a full decode would hold every pixel (40 Mpx: 120 MB as RGB, ~600 MB for a
    WebP through Pillow). So: PNG data is inflated in pieces and counted, never kept
    (``model_control.png_data``); a baseline JPEG is decoded at 1/8 scale (libjpeg reads the
    whole entropy-coded stream and keeps 1/64 of the pixels); a progressive JPEG needs all
    its coefficients (2 to 6 bytes a pixel) whatever the scale, so those decode one at a time
    per process (``_FULL_DECODES``). A WebP is not decoded: opening it ran libwebp's demuxer,
    which refuses an incomplete file, and decoding finds nothing more (libwebp decodes a
    damaged lossy stream without an error).
    """
    if kind == "WEBP":
        return
    try:
        if kind == "PNG":
            check_png_data(data)
            return
        with Image.open(io.BytesIO(data)) as image:
            progressive = bool(image.info.get("progressive") or image.info.get("progression"))
            image.draft(None, (1, 1))  # the smallest scale libjpeg offers: 1/8 a side
            if progressive:
                with _FULL_DECODES:
                    image.load()
            else:
                image.load()
    except Exception:  # noqa: BLE001
        raise refuse(f"{ALLOWED_TEXT}; the {_format_name(kind)} file is damaged or incomplete") from None


# Progressive JPEG decodes at once in one process: each holds every DCT coefficient (up to
# 6 bytes a pixel), so the peak is one image's, not one per upload arriving together.
_FULL_DECODES = threading.BoundedSemaphore(1)

def _format_name(kind: str | None) -> str:
    return {"JPEG": "JPEG", "MPO": "JPEG", "PNG": "PNG", "WEBP": "WebP", None: "image"}.get(kind, kind or "image")


def _sniff(data: bytes) -> str | None:
    """The format a file's first bytes claim, for a message about a file Pillow cannot open."""
    if data.startswith(b"\xff\xd8\xff"):
        return "JPEG"
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "PNG"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "WEBP"
    return None


def _what_is(data: bytes) -> str:
    """A few words on what a non-image is, for the error message."""
    head = data[:4096]
    if head.startswith(b"%PDF"):
        return "a PDF document"
    if head.lstrip().lower().startswith((b"<!doctype html", b"<html")):
        return "an HTML page"
    if head.lstrip().lower().startswith((b"<svg", b"<?xml")):
        return "an SVG/XML file (SVG is not accepted)"
    if head.startswith(b"PK\x03\x04"):
        return "a ZIP archive"
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError as exc:
        text = head[:exc.start].decode("utf-8") if exc.start > len(head) - 4 else None
    if text is not None and all(ch.isprintable() or ch in "\r\n\t" for ch in text):
        return "a text file"
    return "a file that is not an image"


# --- URLs ---------------------------------------------------------------------------------------

def check_public_url(url: str, field: str, resolver: Resolver | None = None) -> str:
    """``url`` if it is an http(s) URL of a public server; else ``CatalogError``.

    Refused: other schemes, user-info, ports other than 80/443, control characters, spaces
    and backslashes, hosts that are (in any IPv4 notation, or IPv6) or resolve to loopback,
    private, link-local, multicast, reserved, unspecified or otherwise non-global addresses,
    ``localhost`` and ``*.localhost``. A name that does not resolve here is let through: the
    provider fetches the URL, not the studio, and this machine may have no DNS.
    ``resolver`` (name -> addresses) defaults to ``socket.getaddrinfo``.
    """
    def refuse(message: str) -> CatalogError:
        return CatalogError({field: message})

    if not isinstance(url, str) or not url:
        raise refuse("must be an http(s) URL")
    if len(url) > MAX_URL_LENGTH:
        raise refuse(f"the URL is longer than {MAX_URL_LENGTH} characters")
    if any(ch.isspace() or not ch.isprintable() or ch == "\\" for ch in url):
        raise refuse("the URL contains spaces, control characters or backslashes")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise refuse("is not a valid URL") from None
    if parts.scheme not in ("http", "https"):
        raise refuse(f"must be an http(s) URL; got {f'a {parts.scheme}: URL' if parts.scheme else 'no scheme'}")
    if not url.lower().startswith(f"{parts.scheme}://"):
        raise refuse("must be a full http(s) URL, like https://example.com/cat.png")
    if "@" in parts.netloc:
        raise refuse("the URL must not contain a user name or password (user@host)")
    if port is not None and port not in ALLOWED_PORTS:
        raise refuse(f"the URL's port must be 80 or 443 (or none); got {port}")
    host = parts.hostname or ""
    if not host.rstrip("."):
        raise refuse("the URL has no host")
    if "%" in host and ":" not in host:
        raise refuse("the URL's host must not be percent-encoded")
    try:
        # IDNA maps look-alikes the way clients do (fullwidth digits, ideographic full stops).
        ascii_host = host if ":" in host else host.encode("idna").decode("ascii").lower()
        address = _ip_literal(ascii_host.rstrip("."))
    except (UnicodeError, ValueError):
        raise refuse(f"{host!r} is not a valid host name or IP address") from None
    if address is not None:
        reason = _forbidden(address)
        if reason:
            raise refuse(f"must point at a public server; {host} is {reason}")
        return url
    ascii_host = ascii_host.rstrip(".")
    if ascii_host == "localhost" or ascii_host.endswith(".localhost"):
        raise refuse(f"must point at a public server; {host} is this machine")
    for text in (resolver or _resolve)(ascii_host):
        try:
            resolved = ipaddress.ip_address(text.split("%", 1)[0])
        except ValueError:
            continue
        reason = _forbidden(resolved)
        if reason:
            raise refuse(f"must point at a public server; {host} resolves to {resolved}, {reason}")
    return url


def _resolve(host: str) -> list[str]:
    """The addresses ``host`` resolves to here; none if it does not resolve."""
    try:
        answers = socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)
    except (OSError, UnicodeError):
        return []  # unknown here (or no DNS at all): the provider resolves it, not us
    return [str(answer[4][0]) for answer in answers]


def _ip_literal(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """The address ``host`` names if it is an IP literal in any notation a client may accept.

    None for a domain name; ``ValueError`` for something that is neither (``1.2.3.4.5``).
    """
    if ":" in host:  # only an IPv6 literal (from [...]) has a colon in urlsplit's hostname
        return ipaddress.IPv6Address(host)  # ValueError if it is not one
    parsed = _whatwg_ipv4(host)
    if parsed is not None:
        return parsed
    try:  # the C library's own reading (inet_aton: 127.1, 0x7f.1, 0177.0.0.1, 2130706433)
        return ipaddress.IPv4Address(socket.inet_aton(host))
    except (OSError, ValueError):
        return None


def _whatwg_ipv4(host: str) -> ipaddress.IPv4Address | None:
    """The WHATWG URL standard's IPv4 parser: 1-4 parts, each decimal, 0x-hex or 0-octal."""
    parts = host.split(".")
    if parts and parts[-1] == "" and len(parts) > 1:
        parts.pop()
    if not parts or _number(parts[-1]) is None:
        return None  # does not end in a number: a domain name
    numbers = [_number(part) for part in parts]
    if len(parts) > 4 or any(n is None for n in numbers):
        raise ValueError(host)
    *first, last = numbers
    if any(n > 255 for n in first) or last >= 256 ** (5 - len(numbers)):
        raise ValueError(host)
    value = last
    for index, number in enumerate(first):
        value += number * 256 ** (3 - index)
    return ipaddress.IPv4Address(value)


_DIGITS = {10: set("0123456789"), 8: set("01234567"), 16: set("0123456789abcdefABCDEF")}


def _number(part: str) -> int | None:
    """One IPv4 part as a number (``0x7f``, ``0177``, ``127``), or None if it is not one."""
    text, base = part, 10
    if text[:2].lower() == "0x":
        text, base = text[2:], 16
        if not text:
            return 0
    elif len(text) > 1 and text.startswith("0"):
        text, base = text[1:], 8
    if not text or not set(text) <= _DIGITS[base]:
        return None
    return int(text, base)


def _forbidden(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str | None:
    """Why a URL must not point at ``address``, or None for a public address."""
    if isinstance(address, ipaddress.IPv6Address):
        embedded = address.ipv4_mapped or address.sixtofour or _nat64(address)
        if embedded is not None:
            reason = _forbidden(embedded)
            if reason:
                return reason
        if address.teredo is not None:
            return "a Teredo tunnel address"
    for flag, reason in (("is_unspecified", "an unspecified address"), ("is_loopback", "a loopback address"),
                         ("is_link_local", "a link-local address"), ("is_multicast", "a multicast address"),
                         ("is_private", "a private address"), ("is_reserved", "a reserved address")):
        if getattr(address, flag):
            return reason
    if isinstance(address, ipaddress.IPv6Address) and address.is_site_local:
        return "a site-local address"
    if not address.is_global:
        return "not a public address"
    return None


_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")


def _nat64(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF) if address in _NAT64 else None
