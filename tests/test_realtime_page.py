"""The Realtime page as the server renders it: the realtime backends that can run (and what the
others miss), the stream's inputs from the catalog within the relay's limits, and no provider
key or token anywhere in the page or the scripts it loads. tests/test_realtime_browser.py
drives it in a browser against a live studio."""

from __future__ import annotations

import html as html_lib
import json
import re
from pathlib import Path

import pytest
from django.contrib.staticfiles import finders

from model_control import backends

pytestmark = [pytest.mark.modes, pytest.mark.django_db]


def page(client, query: str = "") -> str:
    response = client.get(f"/realtime/{query}")
    assert response.status_code == 200
    return response.content.decode()


def config_of(html: str) -> dict:
    return json.loads(re.search(r'<script id="rt-config" type="application/json">(.*?)</script>', html, re.S).group(1))


def radio(html: str, key: str) -> str:
    return re.search(rf'<input type="radio" name="backend" id="rt-backend-{key}"[^>]*>', html).group(0)


def help_of(html: str, key: str) -> str:
    return html_lib.unescape(re.search(rf'<p class="rt-help" id="rt-backend-{key}-help">(.*?)</p>', html, re.S).group(1))


def field(html: str, element_id: str) -> dict[str, str]:
    tag = re.search(rf'<(?:input|textarea)[^>]*\bid="{element_id}"[^>]*>', html).group(0)
    return dict(re.findall(r'([a-z-]+)="([^"]*)"', tag))


def no_local_pipeline(monkeypatch):
    from videogen.local.backend import LocalBackend

    monkeypatch.setattr(LocalBackend, "missing", lambda self: "no weights and no tiny demo configuration")


def krea_weights_loaded(monkeypatch):
    """The local backend runs Krea itself (a GPU worker with the weights), not its CPU demo."""
    from videogen.local.backend import LocalBackend

    monkeypatch.setattr(LocalBackend, "demo", lambda self: None)


def test_without_fal_the_local_backend_is_chosen_and_fal_says_what_it_misses(logged_in, settings):
    settings.FAL_KEY = None
    settings.STUDIO_REALTIME_BACKEND = "fal"  # the default cannot run: the first that can is chosen
    html = page(logged_in)
    assert "checked" in radio(html, "local") and "disabled" not in radio(html, "local")
    assert "disabled" in radio(html, "fal") and "checked" not in radio(html, "fal")
    assert help_of(html, "fal") == "Cannot run here: set FAL_KEY (or FAL_API_KEY)."
    assert "Krea realtime (local GPU)" in html and "Krea WAN 14B realtime (fal)" in html
    config = config_of(html)
    assert config["selected"] == "local"
    local_takes_images = backends.stream_backend("local").limits.takes_images  # the backend says
    assert config["backends"]["local"] == {"configured": True, "size_multiple": 16, "takes_images": local_takes_images,
                                           "title": "Krea realtime (local GPU)"}
    assert config["backends"]["fal"]["configured"] is False and config["backends"]["fal"]["takes_images"] is True
    assert config["socket_path"] == "/ws/realtime/" and config["frame_timeout_s"] == 10
    # The start frame's fields are shown when a backend that can run takes pictures: the local
    # pipeline does (a start frame, webcam mode), so the page names no backend as the only one.
    assert local_takes_images is True
    assert re.search(r'<div class="rt-images" id="rt-images">', html)
    assert "fal only" not in html and "Sent as a JPEG." in html
    assert not re.search(r'id="rt-start"[^>]*disabled', html) and 'role="alert"' not in html


def test_with_fal_configured_both_run_the_setting_picks_one_and_backend_in_the_address_another(logged_in, settings):
    settings.FAL_KEY = "fal-test-key-0001"
    settings.STUDIO_REALTIME_BACKEND = "fal"
    html = page(logged_in)
    assert "checked" in radio(html, "fal") and "disabled" not in radio(html, "local")
    assert config_of(html)["selected"] == "fal"
    assert help_of(html, "fal").startswith("fal.ai's Krea WAN 14B, relayed by the studio")
    assert re.search(r'<div class="rt-images" id="rt-images">', html)  # fal takes a start frame
    assert config_of(page(logged_in, "?backend=local"))["selected"] == "local"
    assert config_of(page(logged_in, "?backend=nonsense"))["selected"] == "fal"
    settings.STUDIO_REALTIME_BACKEND = "local"
    assert config_of(page(logged_in))["selected"] == "local"


def test_with_no_backend_that_can_run_the_page_says_why_and_start_is_off(logged_in, settings, monkeypatch):
    settings.FAL_KEY = None
    no_local_pipeline(monkeypatch)
    html = page(logged_in)
    alert = html_lib.unescape(re.search(r'<p class="rt-alert" role="alert">(.*?)</p>', html, re.S).group(1))
    assert "No realtime backend can run on this studio" in alert
    assert "no weights and no tiny demo configuration" in alert and "set FAL_KEY" in alert
    assert re.search(r'<button type="submit" form="rt-form" id="rt-start"[^>]*disabled>START</button>', html)
    assert "disabled" in radio(html, "local") and "disabled" in radio(html, "fal")
    assert config_of(html)["selected"] is None
    assert help_of(html, "local") == "Cannot run here: no weights and no tiny demo configuration."


def test_the_inputs_come_from_the_catalog_within_the_relays_limits(logged_in, settings, monkeypatch):
    from model_control.backends import catalog

    krea_weights_loaded(monkeypatch)
    settings.STUDIO_REALTIME_DEFAULT_BLOCKS = 4  # the socket's default; the page starts at the seed app's 20
    html = page(logged_in)
    described = {i["name"]: i for i in backends.describe(catalog().require("local/krea-realtime"))["inputs"]}
    for name in ("prompt", "steps", "seed"):
        assert f'class="rt-tag">{described[name]["label"]}</label>' in html, name
        assert html_lib.escape(described[name]["help"], quote=False) in html, name
    assert html_lib.escape(described["resolution"]["help"], quote=False) in html
    limits = backends.stream_backend("local").limits
    assert field(html, "rt-prompt")["maxlength"] == str(limits.max_prompt)
    width, height = field(html, "rt-width"), field(html, "rt-height")
    assert (width["value"], height["value"]) == ("832", "480")  # the catalog's default size
    assert width["min"] == height["min"] == "64" and width["max"] == height["max"] == "2048"
    assert width["step"] == height["step"] == str(limits.size_multiple) == "16"  # the local pipeline's
    blocks = field(html, "rt-blocks")
    assert (blocks["min"], blocks["max"], blocks["value"]) == ("10", "50", "20")
    steps = field(html, "rt-steps")
    assert (steps["min"], steps["max"], steps["value"]) == ("1", "8", "4")
    seed = field(html, "rt-seed-input")
    assert (seed["min"], seed["max"], seed["placeholder"]) == ("0", str(2**24), "random")
    assert "value" not in seed
    fps = field(html, "rt-fps-input")
    assert (fps["min"], fps["max"], fps["value"]) == ("1", "30", "8")
    strength = field(html, "rt-strength")
    assert (strength["min"], strength["max"], strength["value"]) == ("0.0", "1.0", "1.0")
    input_fps, input_strength = field(html, "rt-input-fps"), field(html, "rt-input-strength")
    assert (input_fps["min"], input_fps["max"], input_fps["value"]) == ("1", "30", "10")
    assert (input_strength["min"], input_strength["max"], input_strength["value"]) == ("0.0", "1.0", "0.5")
    limits = config_of(html)["limits"]
    assert limits["blocks"] == {"minimum": 10, "maximum": 50, "default": 20}
    assert limits["input_fps"] == {"minimum": 1, "maximum": 30, "default": 10}
    assert limits["seed"] == {"minimum": 0, "maximum": 2**24}
    assert limits["width"] == {"minimum": 64, "maximum": 2048, "default": 832, "step": 16}
    settings.STUDIO_REALTIME_MAX_BLOCKS = 15  # a socket that takes fewer: the slider ends there
    blocks = field(page(logged_in), "rt-blocks")
    assert (blocks["min"], blocks["max"], blocks["value"]) == ("10", "15", "15")
    assert "rt-demo-note" not in html and "demo:" not in html


def test_the_cpu_demo_is_named_under_its_backend_and_starts_at_a_size_it_can_stream(logged_in, settings, tmp_path,
                                                                                   monkeypatch):
    from videogen.local.backend import DEMO_NOTE
    from videogen.local.host import host
    from videogen.pages.realtime import DEMO_SIZE

    settings.FAL_KEY = "fal-test-key-0001"
    settings.STUDIO_REALTIME_BACKEND = "local"
    settings.MODELS_DIR = tmp_path  # no Krea weights: the tiny random model is what would run
    monkeypatch.setattr(host, "_loaded", None)
    html = page(logged_in)
    notes = re.findall(r'<p class="rt-demo-note">(.*?)</p>', html, re.S)
    assert [html_lib.unescape(note) for note in notes] == [DEMO_NOTE]  # under the local backend, not fal's
    assert DEMO_NOTE.startswith("demo: tiny random model on CPU; install weights with `manage.py download_models`")
    local_box = re.search(r'<div class="rt-backend">\s*<input[^>]*id="rt-backend-local".*?</div>', html, re.S).group(0)
    assert "rt-demo-note" in local_box
    assert (field(html, "rt-width")["value"], field(html, "rt-height")["value"]) == tuple(map(str, DEMO_SIZE))
    assert f"The CPU demo starts at {DEMO_SIZE[0]} x {DEMO_SIZE[1]}" in html_lib.unescape(html)
    assert f'<canvas id="rt-canvas" width="{DEMO_SIZE[0]}" height="{DEMO_SIZE[1]}"' in html
    assert config_of(html)["limits"]["width"]["default"] == DEMO_SIZE[0]
    # fal chosen: its own size, and no demo note for it
    html = page(logged_in, "?backend=fal")
    assert (field(html, "rt-width")["value"], field(html, "rt-height")["value"]) == ("832", "480")


def test_every_control_is_labelled_and_the_status_bar_has_its_fields(logged_in, monkeypatch):
    krea_weights_loaded(monkeypatch)
    html = page(logged_in)
    for element_id in ("rt-prompt", "rt-width", "rt-height", "rt-blocks", "rt-steps", "rt-seed-input", "rt-fps-input",
                       "rt-start-frame", "rt-strength", "rt-backend-local", "rt-backend-fal"):
        assert re.search(f'<label for="{element_id}"( class="rt-tag")?>', html), element_id
        assert field(html, element_id)["aria-describedby"], element_id
    for name, label in (("start", "START"), ("stop", "STOP"), ("reset", "RST"), ("download", "DL"), ("random", "RND")):
        assert re.search(rf'<button type="(?:button|submit)"[^>]*id="rt-{name}"[^>]*>{label}</button>', html), name
    assert re.search(r'aria-label="RST: reset the stream"', html) and re.search(r'aria-label="DL: download[^"]*"', html)
    for name in ("state", "fps", "frames", "dropped", "buffer", "size", "seed", "last"):
        assert f'<dd id="rt-{name}"' in html, name
    assert '<canvas id="rt-canvas" width="832" height="480"' in html
    assert '<p id="rt-status" class="rt-status" role="status">' in html
    assert 'href="/gallery/?kind=realtime"' in html
    assert '<link rel="stylesheet" href="/static/studio/realtime.css">' in html
    assert '<script type="module" src="/static/studio/realtime.js"></script>' in html


def loaded_files(html: str) -> dict[str, str]:
    """The static files the page loads, with every module they import (followed recursively)."""
    pending = set(re.findall(r'(?:src|href)="/static/([^"]+\.(?:js|mjs|css))"', html))
    seen: dict[str, str] = {}
    while pending:
        name = pending.pop()
        if name in seen:
            continue
        path = finders.find(name)
        assert path, f"{name} is loaded by the page but not a static file"
        seen[name] = Path(path).read_text()
        for target in re.findall(r'(?:^|\n)\s*(?:import|export)\b[^"\';]*?from\s*["\'](\.{1,2}/[^"\']+)["\']', seen[name]):
            pending.add(str(Path(name).parent.joinpath(target)).replace("\\", "/"))
            pending = {_normal(p) for p in pending}
    return seen


def _normal(name: str) -> str:
    parts: list[str] = []
    for part in name.split("/"):
        if part == "..":
            parts.pop()
        elif part not in (".", ""):
            parts.append(part)
    return "/".join(parts)


def test_the_page_and_its_scripts_hold_no_provider_key_and_never_talk_to_fal_directly(logged_in, settings):
    settings.FAL_KEY = "fal-live-secret-0123456789"
    settings.FAL_REALTIME_URL = "wss://fal.example.test"
    settings.CLOUD_VIDEO_GENERATION_AUTH_TOKEN = "tt-live-secret-0123456789"
    html = page(logged_in)
    files = loaded_files(html)
    # realtime.js and the vendored msgpack it imports, module by module.
    assert {"studio/realtime.js", "studio/realtime.css", "vendor/msgpack/dist.esm/index.mjs",
            "vendor/msgpack/dist.esm/encode.mjs"} <= set(files)
    assert "studio/msgpack.js" not in files and finders.find("studio/msgpack.js") is None
    for name, text in {"the page": html, **files}.items():
        for secret in (settings.FAL_KEY, settings.CLOUD_VIDEO_GENERATION_AUTH_TOKEN, "FAL_KEY"):
            assert secret not in text, f"{secret!r} in {name}"
        for direct in ("fal.example.test", "fal_jwt_token", "/api/fal", "fal.run", "krea-wan-14b/ws"):
            assert direct not in text, f"{direct!r} in {name}"
    assert 'import { encode } from "../vendor/msgpack/dist.esm/index.mjs";' in files["studio/realtime.js"]


def test_the_page_needs_a_login_and_only_answers_get(client, logged_in):
    assert logged_in.post("/realtime/").status_code == 405
    logged_in.logout()
    response = client.get("/realtime/")
    assert response.status_code == 302 and response["Location"].startswith("/accounts/login/")


def test_reuse_settings_of_a_recording_fills_in_the_page(logged_in, user, other_user):
    from tests.test_gallery_page import recording

    mine = recording(user, prompt="a fox at dusk", width=320, height=192, seed=77, num_blocks=12,
                     num_denoising_steps=3)
    html = page(logged_in, f"?from={mine.pk}")
    assert ">a fox at dusk</textarea>" in html  # the prompt it started with, not a later one
    assert field(html, "rt-width")["value"] == "320" and field(html, "rt-height")["value"] == "192"
    assert field(html, "rt-blocks")["value"] == "12" and field(html, "rt-steps")["value"] == "3"
    assert field(html, "rt-seed-input")["value"] == "77"
    assert 'checked' in radio(html, "local")
    theirs = recording(other_user)
    job_video = recording(user, kind="text-to-video")
    for bad in (theirs.pk, job_video.pk, "not-a-uuid"):
        assert logged_in.get(f"/realtime/?from={bad}").status_code == 404
