"""The Realtime page in a real browser (Debian's chromium via playwright) against a live studio
(`manage.py runstudio`): frames from the local tiny pipeline drawn on the canvas, the prompt
steered mid-stream, RND, RST, STOP, the WebM download and the studio's MP4; the fal backend
through the studio's relay (the loopback fake fal) with a start frame, a drawing (canvas
mode) and chromium's fake camera (webcam mode); the same two modes on the local tiny
pipeline, whose frames then depend on the pictures; the socket's list of refused settings
shown in the page's words, and the parameters the local pipeline ignores; the page's 10 s
frame timeout; its typeface, brackets and animated border. Screenshots go to
$STUDIO_SCREENSHOTS (scripts/screenshots: docs/ui/)."""

from __future__ import annotations

import io
import re
import time
from pathlib import Path

import numpy
import pytest
from PIL import Image

from tests.support.processes import wait_for
from tests.support.realtime import frame_difference
from tests.test_browser import CHROMIUM, live_studio, log_in, png, shot

pytestmark = [pytest.mark.browser, pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="chromium not installed")]

EBML_MAGIC = b"\x1a\x45\xdf\xa3"  # every WebM (Matroska) file starts with it


@pytest.fixture(scope="module")
def studio(tmp_path_factory):
    # The studio's own frame timeout is longer than the page's (10 s), so the timeout test
    # sees the page's timer, not the studio's error.
    with live_studio(tmp_path_factory.mktemp("studio"), STUDIO_PIPELINE="tiny", STUDIO_PIPELINE_DEVICE="cpu",
                     STUDIO_REALTIME_BACKEND="local", STUDIO_REALTIME_FRAME_TIMEOUT="40") as studio:
        yield studio


@pytest.fixture
def page(browser, studio):
    page = log_in(browser, studio)
    yield page
    errors = list(page.errors)
    page.context.close()
    assert not errors, errors


def frames(page) -> int:
    return int(page.get_attribute("#rt", "data-frames"))


def more_frames(page, than: int, timeout: float = 60000) -> None:
    page.wait_for_function(f"Number(document.getElementById('rt').dataset.frames) > {than}", timeout=timeout)


def canvas_colours(page) -> dict:
    """How many distinct colours the canvas shows and how bright it is, from its pixels."""
    return page.evaluate("""() => {
        const canvas = document.getElementById('rt-canvas');
        const data = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height).data;
        const colours = new Set();
        let sum = 0;
        for (let i = 0; i < data.length; i += 4) {
            colours.add((data[i] << 16) | (data[i + 1] << 8) | data[i + 2]);
            sum += data[i] + data[i + 1] + data[i + 2];
        }
        return {colours: colours.size, mean: sum / (data.length / 4) / 3, width: canvas.width, height: canvas.height};
    }""")


def border_animation(page, selector: str) -> str:
    return page.evaluate("s => getComputedStyle(document.querySelector(s)).animationName", selector)


def pictures_sent(page) -> int:
    return int(page.get_attribute("#rt", "data-pictures-sent") or 0)


def more_pictures(page, than: int, timeout: float = 20000) -> None:
    page.wait_for_function(f"Number(document.getElementById('rt').dataset.picturesSent) > {than}", timeout=timeout)


def share(jpeg: bytes, test) -> float:
    """The share of a JPEG's pixels for which ``test(r, g, b)`` holds (on arrays of channels)."""
    pixels = numpy.asarray(Image.open(io.BytesIO(jpeg)).convert("RGB")).astype(int)
    return float(numpy.mean(test(pixels[..., 0], pixels[..., 1], pixels[..., 2])))


def choose_mode(page, label: str) -> None:
    page.get_by_label(label, exact=True).check()
    assert page.get_attribute("#rt", "data-mode") == label.lower()


def local_limits():
    """The local backend's StreamLimits, as the live studio's socket reads them."""
    from videogen.local.backend import stream_limits

    return stream_limits()


def first_frames(page) -> list[bytes]:
    """The JPEG frames the page's realtime sockets receive from now on, as they come."""
    received: list[bytes] = []

    def watch_socket(socket) -> None:
        if "/ws/realtime/" in socket.url:
            socket.on("framereceived", lambda payload: received.append(payload) if isinstance(payload, bytes) else None)

    page.on("websocket", watch_socket)
    return received


def accessible_names(page) -> set[tuple[str, str]]:
    tree = page.context.new_cdp_session(page).send("Accessibility.getFullAXTree")
    return {(node["role"]["value"], node["name"]["value"]) for node in tree["nodes"]
            if node.get("role") and node.get("name") and node["name"].get("value")}


def test_the_local_pipeline_streams_is_steered_stopped_and_downloaded(studio, page):
    page.goto(f"{studio.base}/realtime/")
    assert page.get_by_label("Krea realtime (local GPU)").is_checked()
    assert page.get_by_label("Krea WAN 14B realtime (fal)").is_enabled()
    assert page.is_visible("#rt-images")  # the local pipeline takes a start frame in text mode too
    names = accessible_names(page)  # as chromium tells a screen reader
    for role, name in (("spinbutton", "Width"), ("textbox", "Prompt"),
                       ("button", "START"), ("button", "RST: reset the stream"), ("button", "RND: a random seed")):
        assert (role, name) in names, (role, name)
    assert not [name for _, name in names if "[" in name or "]" in name]  # the brackets are only drawn
    for role, name in (("radio", "Text"), ("radio", "Canvas"), ("radio", "Webcam"), ("slider", "Blocks"),
                       ("slider", "Playback FPS")):
        assert (role, name) in names, (role, name)
    assert page.get_by_label("Text", exact=True).is_checked()  # the page opens in text mode
    # The seed's look: JetBrains Mono (vendored), [ BRACKETED ] buttons, no border animation when idle.
    font = page.evaluate("""async () => {
        await document.fonts.ready;
        return [getComputedStyle(document.getElementById('rt')).fontFamily,
                [...document.fonts].filter(f => f.family.replace(/["']/g, '') === 'JetBrains Mono' && f.status === 'loaded')
                                   .map(f => f.weight)];
    }""")
    assert font[0].startswith('"JetBrains Mono"') and "400" in font[1], font
    assert any(url.endswith("/static/vendor/jetbrains-mono/files/jetbrains-mono-latin-400-normal.woff2")
               for url in studio.seen)
    assert page.evaluate("getComputedStyle(document.getElementById('rt-start'), '::before').content").startswith('"[ "')
    assert page.evaluate("getComputedStyle(document.getElementById('rt-start'), '::after').content").startswith('" ]"')
    assert border_animation(page, "#rt-canvas-box") == "none"
    # Playback FPS sits in the left column, under the inputs, beside the output.
    fps_box, output_box = page.locator("#rt-fps-input").bounding_box(), page.locator("#rt-canvas-box").bounding_box()
    assert fps_box["x"] + fps_box["width"] < output_box["x"]
    page.get_by_label("Width", exact=True).fill("184")  # the local pipeline takes multiples of 16: 192
    page.get_by_label("Height", exact=True).fill("184")
    page.get_by_label("Seed", exact=True).fill("7")
    sockets = []
    page.on("websocket", lambda socket: sockets.append(socket.url))
    prompt = page.get_by_label("Prompt", exact=True)
    prompt.fill("   ")
    page.get_by_role("button", name="START", exact=True).click()  # nothing is sent without a prompt
    assert page.inner_text("#rt-prompt-error") == "Prompt is required."
    assert prompt.get_attribute("aria-invalid") == "true" and "rt-prompt-error" in prompt.get_attribute("aria-describedby")
    assert page.evaluate("document.activeElement.id") == "rt-prompt" and page.inner_text("#rt-state") == "idle"
    prompt.fill("a red fox in the snow")
    blocks = page.get_by_label("Blocks", exact=True)  # a slider over the page's range, 10-50
    assert (blocks.get_attribute("min"), blocks.get_attribute("max")) == ("10", "50")
    blocks.fill("5")
    assert blocks.input_value() == "10"  # the slider keeps to its range
    blocks.fill("50")
    assert page.inner_text("#rt-blocks-value") == "50"  # the value is shown beside its label
    assert page.inner_text("#rt-state") == "idle" and page.is_disabled("#rt-stop") and not sockets
    assert page.evaluate("document.getElementById('rt-fps-input').value") == "8"
    page.get_by_role("button", name="START", exact=True).click()

    more_frames(page, 0, timeout=120000)
    assert sockets == [f"{studio.base.replace('http', 'ws')}/ws/realtime/?backend=local"]
    session_id = page.get_attribute("#rt", "data-session")
    assert re.fullmatch(r"[0-9a-f-]{36}", session_id)
    assert page.inner_text("#rt-state") == "streaming"
    assert page.inner_text("#rt-size") == "192x192" and page.inner_text("#rt-seed") == "7"
    assert page.get_by_label("Width", exact=True).input_value() == "192"  # snapped on the page, before sending
    assert "START local text 192x192, 50 blocks" in page.inner_text("#rt-log")
    assert "Krea realtime (local GPU) takes multiples of 16." in page.inner_text("#rt-size-help")
    page.wait_for_function("document.getElementById('rt-overlay').hidden")  # a frame was drawn
    drawn = canvas_colours(page)
    assert (drawn["width"], drawn["height"]) == (192, 192)
    assert drawn["colours"] > 50 and drawn["mean"] > 5, drawn  # not blank: the pipeline's pattern
    counted = frames(page)
    more_frames(page, counted)  # the counter rises
    assert int(page.inner_text("#rt-frames")) > counted

    prompt.fill("a snow owl taking off")  # sent 400 ms after the last keystroke
    page.wait_for_function("document.getElementById('rt').dataset.promptsSent === '1'", timeout=5000)
    assert "prompt: a snow owl taking off" in page.inner_text("#rt-log")
    page.get_by_role("button", name=re.compile(r"^RND")).click()
    seed = int(page.get_by_label("Seed", exact=True).input_value())
    assert 0 <= seed <= 2**24 and f"seed: {seed}" in page.inner_text("#rt-log") and page.inner_text("#rt-seed") == str(seed)
    page.get_by_role("button", name=re.compile(r"^RST")).click()
    assert "→ reset" in page.inner_text("#rt-log")
    more_frames(page, frames(page) + 30)  # two blocks and a half made after the changes
    assert re.fullmatch(r"\d+/64( \(\d+ skipped\))?", page.inner_text("#rt-buffer"))
    assert float(page.inner_text("#rt-fps").split()[0]) > 0
    assert re.fullmatch(r"\d+\.\d s / 10 s", page.inner_text("#rt-last"))
    assert border_animation(page, "#rt-canvas-box") == "rt-rainbow"  # the active stream's border moves
    assert page.is_visible("#rt-demo") and "random weights" in page.inner_text("#rt-demo")  # the CPU demo says so
    assert page.is_disabled("#rt-mode-canvas") and page.is_disabled("#rt-width")  # fixed while it streams
    shot(page, "realtime")

    page.get_by_role("button", name="STOP", exact=True).click()
    page.wait_for_selector("#rt[data-state=stopped]")
    assert page.is_enabled("#rt-start") and page.is_disabled("#rt-stop") and page.is_disabled("#rt-reset")
    assert border_animation(page, "#rt-canvas-box") == "none"
    page.wait_for_function("!document.getElementById('rt-download').disabled", timeout=10000)
    with page.expect_download() as download_info:
        page.get_by_role("button", name=re.compile(r"^DL")).click()
    download = download_info.value
    assert download.suggested_filename == f"realtime-{session_id}.webm"
    webm = Path(download.path()).read_bytes()
    assert webm[:4] == EBML_MAGIC and len(webm) > 1000 and b"webm" in webm[:64]

    page.wait_for_selector("#rt-result:not([hidden])", timeout=60000)
    mp4 = page.get_attribute("#rt-mp4", "href")
    assert re.fullmatch(r"/api/videos/[0-9a-f-]{36}/file", mp4)
    response = page.request.get(f"{studio.base}{mp4}")
    assert response.status == 200 and response.headers["content-type"] == "video/mp4"
    assert page.get_attribute("#rt-gallery", "href") == "/gallery/?kind=realtime"

    detail = page.request.get(f"{studio.base}/api/realtime/sessions/{session_id}/").json()
    assert detail["status"] == "completed" and detail["video"]["url"] == mp4
    assert detail["params"]["width"] == 192 and detail["params"]["num_blocks"] == 50
    limits = local_limits()  # a stream's first block is short (6 frames), and so is the first after a reset
    assert (limits.first_block_frames, limits.block_frames) == (6, 12)
    assert detail["frames"] < 2 * limits.first_block_frames + limits.block_frames * 48, \
        "the stream ran to its end (with its reset): STOP did not stop it"
    spans = detail["timeline"]["prompts"]
    assert [span["prompts"][0]["text"] for span in spans] == ["a red fox in the snow", "a snow owl taking off"]
    events = detail["timeline"]["events"]
    assert any(event.get("seed") == seed for event in events), events
    assert any(event.get("reset") for event in events), events


def test_the_fal_backend_streams_through_the_studio_with_a_start_frame(studio, page, tmp_path):
    fal = studio.fal
    picture = tmp_path / "start.png"
    picture.write_bytes(png(colour=(30, 160, 220)))
    page.goto(f"{studio.base}/realtime/?backend=fal")
    assert page.get_by_label("Krea WAN 14B realtime (fal)").is_checked()
    page.get_by_label("Width", exact=True).fill("100")  # fal takes multiples of 8: 104
    page.get_by_label("Width", exact=True).blur()
    assert page.get_by_label("Width", exact=True).input_value() == "104"
    page.get_by_label("Height", exact=True).fill("64")
    page.get_by_label("Blocks", exact=True).fill("10")
    page.get_by_label("Prompt", exact=True).fill("waves on a black sand beach")
    page.get_by_label("Start frame", exact=True).set_input_files(str(picture))
    page.get_by_label("Strength", exact=True).fill("0.6")
    sessions_before = len(fal.ws_sessions)
    sockets = []
    page.on("websocket", lambda socket: sockets.append(socket.url))
    page.get_by_label("Prompt", exact=True).press("Control+Enter")  # the keyboard starts it too

    page.wait_for_selector("#rt[data-state=ended]", timeout=60000)
    assert int(page.inner_text("#rt-frames")) == 9 + 12 * 9
    assert page.inner_text("#rt-size") == "104x64"
    assert "completed: 117 frames, 0 dropped" in page.inner_text("#rt-log")
    page.wait_for_selector("#rt-result:not([hidden])")
    page.wait_for_function("!document.getElementById('rt-download').disabled", timeout=10000)  # the WebM is closed
    assert page.is_enabled("#rt-start")
    assert len(fal.ws_sessions) == sessions_before + 1
    params = fal.ws_sessions[-1]["params"]
    assert (params["width"], params["height"], params["num_blocks"]) == (104, 64, 10)
    assert params["prompt"] == "waves on a black sand beach" and params["strength"] == 0.6
    assert params["start_frame"][:2] == b"\xff\xd8"  # the PNG went as a JPEG
    handshake = fal.ws_handshakes[-1]["path"]
    assert "fal_jwt_token=" in handshake  # the studio, not the page, got fal's token
    # The page's only socket is the studio's own; it never asked for a fal token.
    assert sockets == [f"{studio.base.replace('http', 'ws')}/ws/realtime/?backend=fal"]
    assert not any("/api/fal" in url for url in studio.seen)


def draw(page, colour: str) -> None:
    """A few strokes across the drawing pad with the mouse, in ``colour``."""
    page.fill("#rt-brush-colour", colour)
    page.get_by_label("Brush", exact=True).fill("96")
    box = page.locator("#rt-pad").bounding_box()
    for row in (0.3, 0.5, 0.7):
        page.mouse.move(box["x"] + box["width"] * 0.15, box["y"] + box["height"] * row)
        page.mouse.down()
        page.mouse.move(box["x"] + box["width"] * 0.85, box["y"] + box["height"] * row, steps=8)
        page.mouse.up()


def test_canvas_mode_streams_the_drawing_to_fal_as_start_frame_and_pictures(studio, page):
    fal = studio.fal
    fal.frame_interval = 0.05  # 117 frames in about 6 s: time for the pictures to flow
    try:
        page.goto(f"{studio.base}/realtime/?backend=fal")
        choose_mode(page, "Canvas")
        assert page.is_visible("#rt-pad") and page.is_visible("#rt-input") and page.is_hidden("#rt-images")
        assert page.is_hidden("#rt-input-note")  # fal takes pictures
        page.get_by_label("Width", exact=True).fill("128")
        page.get_by_label("Width", exact=True).blur()
        page.get_by_label("Height", exact=True).fill("96")
        page.get_by_label("Height", exact=True).blur()
        assert page.evaluate("[document.getElementById('rt-pad').width, document.getElementById('rt-pad').height]") == [128, 96]
        draw(page, "#ff0000")
        red = page.evaluate("""() => {
            const pad = document.getElementById('rt-pad');
            const data = pad.getContext('2d').getImageData(0, 0, pad.width, pad.height).data;
            let red = 0;
            for (let i = 0; i < data.length; i += 4) if (data[i] > 200 && data[i + 1] < 60 && data[i + 2] < 60) red++;
            return red / (data.length / 4);
        }""")
        assert red > 0.2, red  # the strokes are on the pad
        page.get_by_label("Blocks", exact=True).fill("10")
        page.get_by_label("Input FPS", exact=True).fill("10")
        page.get_by_label("Input strength", exact=True).fill("0.4")
        assert page.inner_text("#rt-input-strength-value") == "0.4"
        page.get_by_label("Prompt", exact=True).fill("a red brush stroke turning into fire")
        sessions_before = len(fal.ws_sessions)
        page.get_by_role("button", name="START", exact=True).click()

        page.wait_for_selector("#rt[data-state=streaming]", timeout=30000)
        more_pictures(page, 4)
        assert border_animation(page, "#rt-canvas-box") == "rt-rainbow"
        assert border_animation(page, ".rt-pad-box") == "rt-rainbow"  # the input being sent moves too
        assert re.fullmatch(r"\d+ @ 10 fps", page.inner_text("#rt-sent"))
        draw(page, "#0000ff")  # drawing while it streams: the next pictures carry it
        more_frames(page, 20)
        shot(page, "realtime-canvas")
        page.wait_for_selector("#rt[data-state=ended]", timeout=60000)
        sent = pictures_sent(page)
        assert len(fal.ws_sessions) == sessions_before + 1
        session = fal.ws_sessions[-1]
        params = session["params"]
        assert (params["width"], params["height"], params["strength"]) == (128, 96, 0.4)
        sent_settings = session["messages"][0]  # as fal received them
        assert sent_settings["webcam_mode"] is True and sent_settings["webcam_fps"] == 10  # Krea's video in
        start = params["start_frame"]
        assert Image.open(io.BytesIO(start)).size == (128, 96)  # the drawing, at the stream's size, as a JPEG
        assert share(start, lambda r, g, b: (r > 180) & (g < 90) & (b < 90)) > 0.2
        images = session["images"]
        # Every picture reached fal through the relay, but for one sent as fal finished the stream.
        assert sent >= 5 and sent - 1 <= len(images) <= sent, (len(images), sent)
        assert {image["strength"] for image in images} == {0.4}
        assert all(abs(image["timestamp"] / 1000 - time.time()) < 120 for image in images)
        assert page.get_attribute("#rt", "data-pictures-sent") == str(sent)  # none after the end
    finally:
        fal.frame_interval = 0.02


def test_webcam_mode_streams_the_camera_beside_the_output_and_esc_stops(studio, page):
    fal = studio.fal
    fal.frame_interval = 0.05
    try:
        page.goto(f"{studio.base}/realtime/?backend=fal")
        choose_mode(page, "Webcam")  # chromium's fake camera (--use-fake-device-for-media-stream)
        page.wait_for_selector("#rt[data-camera=on]", timeout=15000)
        assert page.evaluate("document.getElementById('rt-webcam').videoWidth") > 0
        assert "Camera on" in page.inner_text("#rt-webcam-status") and page.is_hidden("#rt-webcam-overlay")
        camera, output = page.locator("#rt-webcam").bounding_box(), page.locator("#rt-canvas-box").bounding_box()
        assert camera["x"] + camera["width"] < output["x"]  # the camera on the left, the output on the right,
        assert camera["y"] < output["y"] + output["height"]  # side by side
        page.get_by_label("Width", exact=True).fill("160")
        page.get_by_label("Height", exact=True).fill("96")
        page.get_by_label("Prompt", exact=True).fill("a person turned into a marble statue")
        page.locator("body").press("Control+Enter")  # the keyboard starts it from anywhere on the page

        page.wait_for_selector("#rt[data-state=streaming]", timeout=30000)
        more_pictures(page, 5)
        assert border_animation(page, ".rt-webcam-box") == "rt-rainbow"
        shot(page, "realtime-webcam")
        page.keyboard.press("Escape")  # ...and Esc stops it
        page.wait_for_selector("#rt[data-state=stopped]", timeout=5000)
        sent = pictures_sent(page)
        page.wait_for_timeout(800)
        assert pictures_sent(page) == sent  # the camera is no longer sent
        session = fal.ws_sessions[-1]
        wait_for(lambda: session["closed"] is not None, 10, "fal's socket closed after Esc")
        params = session["params"]
        start = params["start_frame"]
        assert Image.open(io.BytesIO(start)).size == (160, 96)
        assert share(start, lambda r, g, b: (g > 100) & (g > r + 40) & (g > b + 40)) > 0.3  # the fake camera's green
        assert params["strength"] == 0.5  # the input strength's default
        assert session["messages"][0]["webcam_mode"] is True and session["messages"][0]["webcam_fps"] == 10
        assert len(session["images"]) == sent >= 5
        assert {image["strength"] for image in session["images"]} == {0.5}
    finally:
        fal.frame_interval = 0.02


LOCAL_SIZE = (128, 96)  # multiples of the local pipeline's 16; small, so the CPU keeps up
LOCAL_SEED = 11
LOCAL_PROMPT = "a lantern in the fog"


def start_local(page, mode: str) -> list[bytes]:
    """Fill in the Realtime page for a local stream of 10 blocks at LOCAL_SIZE with LOCAL_SEED in
    ``mode`` and press START; the frames its socket receives."""
    page.get_by_label("Width", exact=True).fill(str(LOCAL_SIZE[0]))
    page.get_by_label("Width", exact=True).blur()
    page.get_by_label("Height", exact=True).fill(str(LOCAL_SIZE[1]))
    page.get_by_label("Height", exact=True).blur()
    page.get_by_label("Blocks", exact=True).fill("10")
    page.get_by_label("Seed", exact=True).fill(str(LOCAL_SEED))
    page.get_by_label("Prompt", exact=True).fill(LOCAL_PROMPT)
    if mode != "text":
        page.get_by_label("Input FPS", exact=True).fill("10")
        page.get_by_label("Input strength", exact=True).fill("0.3")  # the pictures carry most of the video
    received = first_frames(page)
    page.get_by_role("button", name="START", exact=True).click()
    return received


@pytest.fixture(scope="module")
def text_only_frame(browser, studio) -> bytes:
    """The first frame of a text-only local stream with the settings start_local uses."""
    page = log_in(browser, studio)
    try:
        page.goto(f"{studio.base}/realtime/?backend=local")
        received = start_local(page, "text")
        page.wait_for_selector("#rt[data-state=ended]", timeout=90000)
        assert "from a start frame" not in page.inner_text("#rt-log")
        assert received, "no frame came"
        return received[0]
    finally:
        page.context.close()


def local_session_used_the_pictures(page, studio, received: list[bytes], text_only: bytes) -> dict:
    """The stream ran from the page's pictures: the producer says so in ``started`` (the log),
    the session kept Krea's webcam parameters, it made every block (in webcam mode the first
    block waits for a picture, and a stream that gets none ends ``timeout``), and its first frame
    differs from a text-only stream with the same seed. The session, as
    ``GET /api/realtime/sessions/<id>/`` has it."""
    limits = local_limits()
    log = page.inner_text("#rt-log")
    assert f"{LOCAL_SIZE[0]}x{LOCAL_SIZE[1]}, seed {LOCAL_SEED}, 10 blocks, from a start frame and pictures " \
           "(webcam mode)" in log, log
    sent = pictures_sent(page)
    assert sent >= 1
    session_id = page.get_attribute("#rt", "data-session")
    detail = wait_for(lambda: (d := page.request.get(f"{studio.base}/api/realtime/sessions/{session_id}/").json())
                      ["end_reason"] and d, 30, "the session's end")
    params = detail["params"]
    assert params["webcam_mode"] is True and params["webcam_fps"] == 10 and params["strength"] == 0.3
    assert params["start_frame_bytes"] > 0 and (params["width"], params["height"]) == LOCAL_SIZE
    assert detail["end_reason"] == "completed" and detail["frames"] == limits.frames_for_blocks(10)
    assert len(received) == limits.frames_for_blocks(10) == int(page.inner_text("#rt-frames"))
    assert Image.open(io.BytesIO(received[0])).size == LOCAL_SIZE
    difference = frame_difference(received[0], text_only)
    assert difference > 5, difference  # the same seed from the pictures is another stream (measured: 21)
    return detail


def test_canvas_mode_on_the_local_pipeline_streams_from_the_drawing(studio, page, text_only_frame):
    page.goto(f"{studio.base}/realtime/?backend=local")
    choose_mode(page, "Canvas")
    assert page.is_visible("#rt-pad") and page.is_visible("#rt-input")
    assert page.is_hidden("#rt-input-note")  # the local pipeline takes pictures: nothing to warn about
    page.get_by_label("Width", exact=True).fill(str(LOCAL_SIZE[0]))  # the pad takes the stream's shape first
    page.get_by_label("Width", exact=True).blur()
    page.get_by_label("Height", exact=True).fill(str(LOCAL_SIZE[1]))
    page.get_by_label("Height", exact=True).blur()
    draw(page, "#ffffff")  # the drawing at START is the start frame, and then the pictures sent
    received = start_local(page, "canvas")
    page.wait_for_selector("#rt[data-state=ended]", timeout=90000)
    local_session_used_the_pictures(page, studio, received, text_only_frame)
    assert page.is_enabled("#rt-start") and page.is_enabled("#rt-mode-text")


def test_webcam_mode_on_the_local_pipeline_streams_from_the_camera(studio, page, text_only_frame):
    page.goto(f"{studio.base}/realtime/?backend=local")
    choose_mode(page, "Webcam")  # chromium's fake camera
    page.wait_for_selector("#rt[data-camera=on]", timeout=15000)
    assert page.is_hidden("#rt-input-note")
    received = start_local(page, "webcam")
    more_frames(page, 0, timeout=90000)
    page.wait_for_function("document.getElementById('rt-overlay').hidden")  # a frame was drawn
    shot(page, "realtime-webcam-local")
    page.wait_for_selector("#rt[data-state=ended]", timeout=90000)
    local_session_used_the_pictures(page, studio, received, text_only_frame)


# Krea's kv_cache_num_frames: 7 added to the first msgpack map a page's socket sends (a fixmap:
# one more entry in its first byte, the key and the value appended), as a client that sends
# Krea's parameters the page never sends would.
WITH_KREA_PARAMETER = """(() => {
    const Real = window.WebSocket;
    window.WebSocket = class extends Real {
        send(data) {
            if (!this.extended && data instanceof Uint8Array && (data[0] & 0xf0) === 0x80 && data[0] < 0x8f) {
                this.extended = true;
                const key = new TextEncoder().encode("kv_cache_num_frames");
                const out = new Uint8Array(data.length + key.length + 2);
                out.set(data);
                out[0] += 1;
                out[data.length] = 0xa0 | key.length;
                out.set(key, data.length + 1);
                out[out.length - 1] = 7;
                data = out;
            }
            super.send(data);
        }
    };
})();"""


def test_settings_the_socket_refuses_are_named_in_the_pages_words_and_ignored_ones_logged(studio, page):
    # A page rendered with other limits than the socket's (an older page, a setting changed
    # since): it lets 12 steps through, the socket takes at most its own.
    # (The page is changed once parsed, before its module runs: a page fulfilled by page.route
    # would count as a public one, whose sockets to the loopback chromium blocks.)
    page.add_init_script("""document.addEventListener("readystatechange", () => {
        if (document.readyState !== "interactive") return;
        const config = document.getElementById("rt-config");
        const limits = JSON.parse(config.textContent);
        limits.limits.steps.maximum = 12;
        config.textContent = JSON.stringify(limits);
        document.getElementById("rt-steps").max = "12";
    });""")
    page.add_init_script(WITH_KREA_PARAMETER)
    page.goto(f"{studio.base}/realtime/?backend=local")
    page.get_by_label("Width", exact=True).fill("64")
    page.get_by_label("Height", exact=True).fill("64")
    page.get_by_label("Prompt", exact=True).fill("a paper crane")
    steps = page.get_by_label("Inference steps", exact=True)
    steps.fill("12")
    page.get_by_role("button", name="START", exact=True).click()

    page.wait_for_selector("#rt[data-state=error]", timeout=15000)
    most = local_limits().max_steps
    said = f"Inference steps must be between 1 and {most}, got 12"  # the socket's num_denoising_steps, named
    assert page.inner_text("#rt-steps-error") == said
    assert steps.get_attribute("aria-invalid") == "true" and page.evaluate("document.activeElement.id") == "rt-steps"
    assert page.inner_text("#rt-status") == f"The studio refused the settings: {said}"
    assert f"error: {said}" in page.inner_text("#rt-log")
    assert page.is_enabled("#rt-start") and page.is_disabled("#rt-stop") and page.is_enabled("#rt-steps")
    assert page.get_attribute("#rt", "data-session") is None

    steps.fill("2")
    page.get_by_role("button", name="START", exact=True).click()
    page.wait_for_selector("#rt[data-state=streaming]", timeout=60000)
    assert page.query_selector("#rt-steps-error") is None and steps.get_attribute("aria-invalid") is None
    assert "Krea realtime (local GPU) ignores: kv_cache_num_frames" in page.inner_text("#rt-log")
    session_id = page.get_attribute("#rt", "data-session")
    page.get_by_role("button", name="STOP", exact=True).click()
    page.wait_for_selector("#rt[data-state=stopped]", timeout=5000)
    params = page.request.get(f"{studio.base}/api/realtime/sessions/{session_id}/").json()["params"]
    assert params["kv_cache_num_frames"] == 7 and params["num_denoising_steps"] == 2


def test_a_stream_without_frames_for_10_s_ends_and_says_so_in_the_status_bar(studio, page):
    fal = studio.fal
    fal.stall_after = 30
    try:
        page.goto(f"{studio.base}/realtime/?backend=fal")
        page.get_by_label("Width", exact=True).fill("64")
        page.get_by_label("Height", exact=True).fill("64")
        page.get_by_label("Prompt", exact=True).fill("a stream that stalls")
        page.get_by_role("button", name="START", exact=True).click()
        more_frames(page, 29, timeout=30000)
        page.wait_for_function("/\\b[5-9]\\.\\d s \\/ 10 s/.test(document.getElementById('rt-last').textContent)",
                               timeout=15000)  # the wait is shown as it grows
        page.wait_for_selector("#rt[data-state=timeout]", timeout=15000)
        assert page.inner_text("#rt-last") == "TIMEOUT: no frame for 10 s"
        assert "No frame for 10 s" in page.inner_text("#rt-status")
        assert frames(page) == 30
        assert page.is_enabled("#rt-start") and page.is_disabled("#rt-stop")
        page.wait_for_selector("#rt-result:not([hidden])", timeout=30000)  # what came is recorded
    finally:
        fal.stall_after = None


def test_no_page_or_script_the_realtime_page_loaded_holds_a_provider_key(studio, page):
    page.goto(f"{studio.base}/realtime/?backend=fal")
    page.wait_for_load_state("networkidle")
    loaded = sorted(url for url in studio.seen if not re.search(r"/(file|video|thumbnail)(\\?|$)", url))
    assert any(url.endswith("/static/studio/realtime.js") for url in loaded)
    assert any(url.endswith("/static/vendor/msgpack/dist.esm/encode.mjs") for url in loaded)
    for url in loaded:
        body = page.request.get(url).body()
        assert studio.fal.key.encode() not in body, url
