"""Images given to a generation are real still JPEG/PNG/WebP of sensible size, and image URLs
point at public http(s) servers (model_control/images.py; docs/security.md, "Images and URLs").

No network: IP literals, ``localhost`` and an injected resolver; ``example.com`` does not
resolve on an offline machine, which is allowed (the provider fetches the URL, not us).
"""

from __future__ import annotations

import base64
import io
import struct
import zlib

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from PIL import Image

from model_control import images
from model_control.backends import catalog
from model_control.images import (
    check_public_url,
    file_name_for,
    validate_data_url,
    validate_image_bytes,
)
from model_control.inputs import CatalogError
from videogen.models import Job

I2V = "fal-ai/wan/v2.2-a14b/image-to-video"


def encoded(fmt: str, size: tuple[int, int] = (64, 48), **options) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, (20, 120, 200)).save(out, fmt, **options)
    return out.getvalue()


def animated(fmt: str) -> bytes:
    out = io.BytesIO()
    frames = [Image.new("RGB", (64, 64), (i * 60, 0, 0)) for i in range(3)]
    frames[0].save(out, fmt, save_all=True, append_images=frames[1:])
    return out.getvalue()


def png_header_only(width: int, height: int) -> bytes:
    """A tiny PNG that claims ``width`` x ``height``: a decompression bomb's header."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b""))


def refusal(call, *args) -> str:
    with pytest.raises(CatalogError) as caught:
        call(*args)
    assert list(caught.value.errors) == ["image"]
    return caught.value.errors["image"]


# --- bytes --------------------------------------------------------------------------------------

@pytest.mark.parametrize(("fmt", "content_type"), [("PNG", "image/png"), ("JPEG", "image/jpeg"),
                                                   ("WEBP", "image/webp")])
def test_jpeg_png_and_webp_are_accepted_with_their_real_type_and_size(fmt, content_type):
    assert validate_image_bytes(encoded(fmt, (640, 360)), "image") == (content_type, 640, 360)


def test_the_size_limits_are_inclusive():
    assert validate_image_bytes(encoded("PNG", (images.MIN_SIDE, images.MIN_SIDE)), "image")[1:] == (32, 32)
    assert validate_image_bytes(encoded("PNG", (images.MAX_SIDE, 40)), "image")[1:] == (8192, 40)


BAD_BYTES = {
    "empty": (b"", "got an empty file"),
    "text": (b"a cat surfing, 4k, cinematic\n", "got a text file"),
    "html": (b"<!DOCTYPE html><html><body>hi</body></html>", "got an HTML page"),
    "svg": (b'<svg xmlns="http://www.w3.org/2000/svg"></svg>', "SVG is not accepted"),
    "pdf": (b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n", "got a PDF document"),
    "binary": (bytes(range(256)) * 4, "got a file that is not an image"),
    "gif": (encoded("GIF"), "got a GIF image"),
    "animated gif": (animated("GIF"), "got a GIF image"),
    "bmp": (encoded("BMP"), "got a BMP image"),
    "tiff": (encoded("TIFF"), "got a TIFF image"),
    "animated png": (animated("PNG"), "must be a still image; got an animated PNG with 3 frames"),
    "animated webp": (animated("WEBP"), "must be a still image; got an animated WebP"),
    "truncated png": (encoded("PNG")[:-30], "the PNG file is damaged or incomplete"),
    "truncated jpeg": (encoded("JPEG", (256, 256))[:400], "the JPEG file is damaged or incomplete"),
    "too small": (encoded("PNG", (16, 16)), "between 32 and 8192 px; got 16x16"),
    "too narrow": (encoded("PNG", (640, 20)), "got 640x20"),
    "too long a side": (png_header_only(9000, 40), "got 9000x40"),
    "too many pixels": (png_header_only(8000, 8000), "too many pixels: 8000x8000"),
    "past Pillow's warning": (png_header_only(10000, 9500), "too many pixels"),
    "past Pillow's error": (png_header_only(100000, 100000), "too many pixels"),
}


@pytest.mark.parametrize("case", BAD_BYTES)
def test_bad_bytes_are_refused_with_a_reason(case, recwarn):
    data, reason = BAD_BYTES[case]
    assert reason in refusal(validate_image_bytes, data, "image")
    assert not [w for w in recwarn if issubclass(w.category, Image.DecompressionBombWarning)]


def test_a_bomb_is_refused_even_when_warnings_are_errors():
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert "too many pixels" in refusal(validate_image_bytes, png_header_only(10000, 9500), "image")


# --- bounded decoding: the pixels are read, never all held ---------------------------------------

def png_of_rows(width: int, height: int, rows: bytes | None = None, *, depth: int = 8, colour: int = 2,
                interlace: int = 0, idat: bytes | None = None) -> bytes:
    """A PNG with valid chunk CRCs whose image data is ``rows`` (or ``idat``) as given."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
    if idat is None:
        idat = zlib.compress(rows)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, depth, colour, 0, 0,
                                                            interlace))
            + chunk(b"IDAT", idat) + chunk(b"IEND", b""))


def adam7_rows(width: int, height: int, channels: int) -> bytes:
    """An interlaced image's raw data: the 7 passes' rows, filter 0, 8-bit samples."""
    out = b""
    for x0, y0, dx, dy in ((0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2),
                           (0, 1, 1, 2)):
        columns, rows = len(range(x0, width, dx)), len(range(y0, height, dy))
        if columns and rows:
            out += (b"\0" + bytes(range(columns * channels)).ljust(columns * channels, b"\1")[:columns * channels]) * rows
    return out


def test_pngs_of_every_kind_are_read_to_the_end_and_accepted():
    for mode in ("1", "L", "P", "LA", "RGBA", "I;16"):
        out = io.BytesIO()
        Image.new(mode, (80, 50)).save(out, "PNG")
        assert validate_image_bytes(out.getvalue(), "image") == ("image/png", 80, 50), mode
    interlaced = png_of_rows(37, 41, adam7_rows(37, 41, 3), interlace=1)
    assert Image.open(io.BytesIO(interlaced)).convert("RGB").size == (37, 41)  # Pillow reads it too
    assert validate_image_bytes(interlaced, "image") == ("image/png", 37, 41)


DAMAGED_PNGS = {
    "rows missing": png_of_rows(64, 64, (b"\0" + b"\7" * 192) * 40),
    "compressed data corrupted": png_of_rows(64, 64, idat=zlib.compress((b"\0" + bytes(range(192))) * 64)[:50]
                                             + b"\xff" * 40 + zlib.compress(b"x")[2:]),
    "an unknown row filter": png_of_rows(64, 64, (b"\0" + b"\7" * 192) * 10 + (b"\x09" + b"\7" * 192) * 54),
    "interlaced, one pass short": png_of_rows(37, 41, adam7_rows(37, 41, 3)[:-50], interlace=1),
}


@pytest.mark.parametrize("case", DAMAGED_PNGS)
def test_a_png_whose_pixels_are_damaged_is_refused_though_its_chunks_verify(case):
    assert "the PNG file is damaged or incomplete" in refusal(validate_image_bytes, DAMAGED_PNGS[case], "image")


def test_progressive_jpegs_are_read_and_a_cut_one_refused():
    noise = Image.effect_noise((256, 256), 60).convert("RGB")
    out = io.BytesIO()
    noise.save(out, "JPEG", progressive=True)
    assert validate_image_bytes(out.getvalue(), "image") == ("image/jpeg", 256, 256)
    assert "damaged or incomplete" in refusal(validate_image_bytes, out.getvalue()[:-2000], "image")


def test_a_cut_webp_is_refused():
    out = io.BytesIO()
    Image.effect_noise((256, 256), 60).convert("RGB").save(out, "WEBP")
    assert "WebP" in refusal(validate_image_bytes, out.getvalue()[:-100], "image")


def test_the_pixel_limit_is_a_setting_read_from_the_header(settings):
    settings.STUDIO_MAX_IMAGE_PIXELS = 1_000_000
    assert "too many pixels: 1001x1000 (at most 1,000,000)" in refusal(
        validate_image_bytes, png_header_only(1001, 1000), "image")
    assert validate_image_bytes(encoded("PNG", (1000, 1000)), "image")[1:] == (1000, 1000)


MEASURE = """
import sys, threading
import django
django.setup()
from model_control.images import validate_image_bytes
def megabytes(field):  # of this process since its exec (ru_maxrss would count the parent's too)
    return int(next(line for line in open("/proc/self/status") if line.startswith(field)).split()[1]) // 1024
data = open(sys.argv[1], "rb").read()
validate_image_bytes(open(sys.argv[2], "rb").read(), "image")  # codecs loaded first
base = megabytes("VmRSS")
barrier = threading.Barrier(6)
def validate():
    barrier.wait()
    validate_image_bytes(data, "image")
threads = [threading.Thread(target=validate) for _ in range(6)]
[thread.start() for thread in threads]
[thread.join() for thread in threads]
print(megabytes("VmHWM") - base)
"""


def test_six_40_megapixel_uploads_at_once_add_megabytes_not_gigabytes(tmp_path):
    """The review's case: a 113 KB PNG of 40 Mpx took ~100 MB while decoded; 6 at once (and
    6 baseline JPEGs) took the web process from 367 to 998 MB. Each decode now holds a few
    pieces of the data, so 6 at once add a few MB (docs/security.md has the numbers)."""
    import os
    import subprocess
    import sys

    from tests.support.processes import ROOT

    width, height = 8000, 5000
    compressor = zlib.compressobj(9)
    row = b"\0" + bytes([20, 120, 200]) * width
    idat = b"".join(compressor.compress(row) for _ in range(height)) + compressor.flush()
    (tmp_path / "big.png").write_bytes(png_of_rows(width, height, idat=idat))
    Image.new("L", (width, height), 90).save(tmp_path / "big.jpg", "JPEG")
    (tmp_path / "small.png").write_bytes(encoded("PNG"))
    assert (tmp_path / "big.png").stat().st_size < 200_000
    env = {k: v for k, v in os.environ.items() if not k.startswith(("REDIS_URL", "DATABASE_URL"))}
    env.update({"DJANGO_SETTINGS_MODULE": "studio.settings", "STUDIO_ENV_FILE": "",
                "STUDIO_DATA_DIR": str(tmp_path / "data"), "PYTHONPATH": str(ROOT)})
    for name in ("big.png", "big.jpg"):
        result = subprocess.run([sys.executable, "-c", MEASURE, str(tmp_path / name), str(tmp_path / "small.png")],
                                cwd=ROOT, env=env, capture_output=True, text=True, timeout=100)
        assert result.returncode == 0, result.stderr[-2000:]
        assert int(result.stdout.split()[-1]) < 40, (name, result.stdout)  # MB; it was 833-896 MB


def test_too_many_bytes_are_refused(monkeypatch):
    monkeypatch.setattr(images, "MAX_IMAGE_BYTES", 100)
    assert "larger than" in refusal(validate_image_bytes, encoded("PNG"), "image")


def test_the_file_name_follows_the_real_type():
    assert file_name_for("cat.png", "image/png") == "cat.png"
    assert file_name_for("cat.JPEG", "image/jpeg") == "cat.JPEG"
    assert file_name_for("cat.txt", "image/png") == "cat.png"
    assert file_name_for("cat", "image/webp") == "cat.webp"
    assert file_name_for(".png", "image/jpeg") == ".png.jpg"


# --- data URLs ----------------------------------------------------------------------------------

def data_url(data: bytes, declared: str = "image/png") -> str:
    return f"data:{declared};base64,{base64.b64encode(data).decode()}"


def test_a_data_url_is_checked_and_its_type_made_true():
    png = encoded("PNG")
    assert validate_data_url(data_url(png), "image") == data_url(png)
    assert validate_data_url(data_url(png, "image/jpeg"), "image") == data_url(png)  # the real type


@pytest.mark.parametrize(("url", "reason"), [
    ("data:image/png,not-base64", "must look like data:image/png;base64,"),
    ("data:image/png;base64,@@@@", "not valid base64"),
    (data_url(b"hello, I am text"), "got a text file"),
    (data_url(b""), "got an empty file"),
    (data_url(encoded("GIF"), "image/gif"), "got a GIF image"),
    (data_url(encoded("PNG", (8, 8))), "got 8x8"),
])
def test_bad_data_urls_are_refused(url, reason):
    assert reason in refusal(validate_data_url, url, "image")


# --- URLs ---------------------------------------------------------------------------------------

def no_dns(host: str) -> list[str]:
    raise AssertionError(f"{host} should not have been resolved")


@pytest.mark.parametrize("url", [
    "https://example.com/cat.png",
    "http://example.com/cat.png",
    "HTTPS://Example.COM/cat.png",
    "https://example.com:443/cat.png",
    "http://example.com:80/cat.png",
    "http://8.8.8.8/cat.png",
    "http://[2606:4700:4700::1111]/cat.png",
    "https://cdn.example.org/a/b/c.webp?size=large#top",
])
def test_public_urls_pass(url):
    def resolver(host: str) -> list[str]:
        return ["93.184.215.14", "2606:2800:21f:cb07:6820:80da:af6b:8b2c"]

    assert check_public_url(url, "image", resolver=resolver) == url


def test_a_name_that_does_not_resolve_here_passes():
    assert check_public_url("https://example.com/cat.png", "image", resolver=lambda host: []) \
        == "https://example.com/cat.png"
    # The real resolver, for a name that cannot resolve (RFC 6761 .invalid): no error either.
    assert check_public_url("https://studio-test.invalid/cat.png", "image")


LOOPBACK_LITERALS = [
    "127.0.0.1", "127.1", "127.0.1", "2130706433", "0x7f000001", "0x7F.0.0.1", "0x7f.1",
    "0177.0.0.1", "0177.1", "017700000001", "127.0.0.1.", "127.255.255.254",
    "[::1]", "[0:0:0:0:0:0:0:1]", "[::ffff:127.0.0.1]", "[::ffff:7f00:1]",
    "[2002:7f00:1::]", "[64:ff9b::127.0.0.1]", "１２７.０.０.１", "127。0。0。1",
]


@pytest.mark.parametrize("host", LOOPBACK_LITERALS)
def test_loopback_in_any_notation_is_refused(host):
    reason = refusal(check_public_url, f"http://{host}/cat.png", "image", no_dns)
    assert "must point at a public server" in reason and "loopback" in reason


@pytest.mark.parametrize(("host", "kind"), [
    ("10.1.2.3", "private"), ("172.16.0.9", "private"), ("192.168.1.1", "private"), ("0xa010203", "private"),
    ("169.254.169.254", "link-local"), ("[fe80::1]", "link-local"), ("[fe80::1%25eth0]", "link-local"),
    ("224.0.0.251", "multicast"), ("[ff02::1]", "multicast"),
    ("0.0.0.0", "unspecified"), ("0", "unspecified"), ("[::]", "unspecified"),
    ("[fc00::1]", "private"), ("[fd12:3456::1]", "private"), ("[::ffff:10.0.0.1]", "private"),
    ("[::ffff:169.254.169.254]", "link-local"), ("240.0.0.1", ""), ("255.255.255.255", ""),
    ("100.64.0.1", ""), ("192.0.2.1", ""), ("198.18.0.1", ""), ("[2001:db8::1]", ""),
])
def test_non_public_addresses_are_refused(host, kind):
    reason = refusal(check_public_url, f"https://{host}/cat.png", "image", no_dns)
    assert "must point at a public server" in reason and kind in reason


@pytest.mark.parametrize("host", ["localhost", "LocalHost", "localhost.", "a.localhost", "x.y.localhost"])
def test_localhost_names_are_refused_without_asking_dns(host):
    assert "this machine" in refusal(check_public_url, f"http://{host}/cat.png", "image", no_dns)


@pytest.mark.parametrize("addresses", [["127.0.0.1"], ["93.184.215.14", "10.0.0.5"], ["::1"],
                                       ["169.254.169.254"], ["fe80::1%eth0"], ["::ffff:192.168.0.1"]])
def test_a_name_resolving_to_a_forbidden_address_is_refused(addresses):
    asked = []

    def resolver(host: str) -> list[str]:
        asked.append(host)
        return addresses

    reason = refusal(check_public_url, "https://Images.Example.COM/cat.png", "image", resolver)
    assert asked == ["images.example.com"]
    assert "images.example.com resolves to" in reason


def test_the_real_resolver_is_used_by_default(monkeypatch):
    import socket

    monkeypatch.setattr(socket, "getaddrinfo", lambda host, *a, **k: [
        (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("192.168.7.7", 0))])
    assert "resolves to 192.168.7.7" in refusal(check_public_url, "https://nas.example/x.png", "image")


@pytest.mark.parametrize(("url", "reason"), [
    ("javascript:alert(1)", "must be an http(s) URL; got a javascript: URL"),
    ("file:///etc/passwd", "must be an http(s) URL"),
    ("ftp://example.com/cat.png", "must be an http(s) URL"),
    ("gopher://example.com/", "must be an http(s) URL"),
    ("//example.com/cat.png", "got no scheme"),
    ("http:example.com/cat.png", "must be a full http(s) URL"),
    ("http:///cat.png", "has no host"),
    ("https://user:secret@example.com/cat.png", "user name or password"),
    ("https://example.com@127.0.0.1/cat.png", "user name or password"),
    ("https://@example.com/cat.png", "user name or password"),
    ("https://example.com:8080/cat.png", "port must be 80 or 443"),
    ("https://example.com:22/cat.png", "port must be 80 or 443"),
    ("https://example.com:0/cat.png", "port must be 80 or 443"),
    ("https://example.com:99999/cat.png", "not a valid URL"),
    ("https://example.com\\@127.0.0.1/cat.png", "backslashes"),
    ("https://example.com/ cat.png", "spaces"),
    ("https://example.com/\ncat.png", "control characters"),
    ("https://%31%32%37.0.0.1/cat.png", "percent-encoded"),
    ("https://1.2.3.4.5/cat.png", "not a valid host name or IP address"),
    ("https://example.256/cat.png", "not a valid host name or IP address"),
    ("https://256.0.0.1/cat.png", "not a valid host name or IP address"),
    ("https://[::1/cat.png", "not a valid URL"),
    ("https://example.com/" + "a" * 3000, "longer than 2048"),
])
def test_malformed_or_sneaky_urls_are_refused(url, reason):
    assert reason in refusal(check_public_url, url, "image", no_dns)


def test_the_catalog_checks_image_urls_and_data_urls():
    model = catalog().require(I2V)
    with pytest.raises(CatalogError) as caught:
        model.clean({"prompt": "p", "image": "http://127.0.0.1/cat.png"})
    assert caught.value.errors["image"].startswith("must point at a public server")  # no "image: " prefix
    with pytest.raises(CatalogError) as caught:
        model.clean({"prompt": "p", "image": data_url(b"plain text", "image/png")})
    assert "got a text file" in caught.value.errors["image"]
    values = model.clean({"prompt": "p", "image": data_url(encoded("JPEG"), "image/png")})
    assert values["image"].url.startswith("data:image/jpeg;base64,")
    assert model.clean({"prompt": "p", "image": "https://example.com/cat.png"})["image"].url \
        == "https://example.com/cat.png"


# --- through the door: POST /api/jobs/ ------------------------------------------------------------

BAD_JSON_IMAGES = {
    "http://127.0.0.1/cat.png": "loopback",
    "http://2130706433/cat.png": "loopback",
    "http://0x7f000001/cat.png": "loopback",
    "http://[::ffff:127.0.0.1]/cat.png": "loopback",
    "http://localhost/cat.png": "this machine",
    "http://metadata.localhost/cat.png": "this machine",
    "http://169.254.169.254/latest/meta-data/": "link-local",
    "http://192.168.0.10/cat.png": "private",
    "https://user:pw@example.com/cat.png": "user name or password",
    "https://example.com:8443/cat.png": "port must be 80 or 443",
    "ftp://example.com/cat.png": "must be an uploaded image file or an http(s) URL",
    "data:image/png;base64,aGVsbG8=": "got a text file",
    "data:image/gif;base64," + base64.b64encode(encoded("GIF")).decode(): "got a GIF image",
}


@pytest.mark.django_db
@pytest.mark.parametrize("field", ["image", "image_url"])
def test_the_jobs_api_refuses_bad_image_urls_with_the_field_and_a_reason(api, field):
    for url, reason in BAD_JSON_IMAGES.items():
        response = api.post("/api/jobs/", {"model": I2V, "prompt": "p", field: url}, format="json")
        assert response.status_code == 400, (url, response.content[:300])
        assert reason in response.json()["fields"]["image"], (url, response.json())
    assert Job.objects.count() == 0


BAD_UPLOADS = {
    "empty.png": (b"", "image/png", "got an empty file"),
    "notes.png": (b"just some text, renamed", "image/png", "got a text file"),
    "page.jpg": (b"<html><body>hi</body></html>", "image/jpeg", "got an HTML page"),
    "anim.gif": (animated("GIF"), "image/gif", "got a GIF image"),
    "anim.png": (animated("PNG"), "image/png", "must be a still image"),
    "tiny.png": (encoded("PNG", (10, 10)), "image/png", "got 10x10"),
    "bomb.png": (png_header_only(100000, 100000), "image/png", "too many pixels"),
    "cut.jpg": (encoded("JPEG", (256, 256))[:400], "image/jpeg", "damaged or incomplete"),
}


@pytest.mark.django_db
def test_the_jobs_api_refuses_bad_uploads_with_the_field_and_a_reason(api):
    for name, (data, content_type, reason) in BAD_UPLOADS.items():
        for field in ("image", "last_image"):
            upload = SimpleUploadedFile(name, data, content_type=content_type)
            good = SimpleUploadedFile("ok.png", encoded("PNG"), content_type="image/png")
            body = {"model": I2V, "prompt": "p", field: upload}
            if field == "last_image":
                body["image"] = good
            response = api.post("/api/jobs/", body, format="multipart")
            assert response.status_code == 400, (name, field, response.content[:300])
            assert reason in response.json()["fields"][field], (name, field, response.json())
    assert Job.objects.count() == 0


@pytest.mark.django_db(transaction=True)
def test_a_good_upload_still_works_and_its_real_type_is_used(api, fake_fal):
    """A PNG sent as ``cat.jpg``/``image/jpeg`` goes on as what it is: ``cat.png``, ``image/png``."""
    png = encoded("PNG", (640, 360))
    upload = SimpleUploadedFile("cat.jpg", png, content_type="image/jpeg")
    response = api.post("/api/jobs/?wait=20", {"model": I2V, "prompt": "the cat waves", "image": upload,
                                               "resolution": "480p"}, format="multipart")
    assert response.status_code == 201, response.content[:300]
    job = response.json()
    assert job["status"] == "completed", job
    sent = fake_fal.uploads[-1]
    assert sent["data"] == png and sent["content_type"] == "image/png" and sent["file_name"] == "cat.png"
    assert fake_fal.requests[job["provider_request_id"]]["input"]["image_url"] == sent["access_url"]


@pytest.mark.django_db(transaction=True)
def test_a_good_image_url_still_works(api, fake_fal):
    response = api.post("/api/jobs/?wait=20", {"model": I2V, "prompt": "p", "image": "https://example.com/cat.png",
                                               "resolution": "480p"}, format="json")
    assert response.status_code == 201, response.content[:300]
    job = response.json()
    assert fake_fal.requests[job["provider_request_id"]]["input"]["image_url"] == "https://example.com/cat.png"
