"""The Realtime page in a real browser (Debian's chromium via playwright) against a live studio
(`manage.py runstudio`): frames from the local tiny pipeline drawn on the canvas, the prompt
steered mid-stream, RND, RST, STOP, the WebM download and the studio's MP4; the fal backend
through the studio's relay (the loopback fake fal) with a start frame; the page's 10 s frame
timeout. Writes docs/ui/realtime.png (or into $STUDIO_SCREENSHOTS)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

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


def accessible_names(page) -> set[tuple[str, str]]:
    tree = page.context.new_cdp_session(page).send("Accessibility.getFullAXTree")
    return {(node["role"]["value"], node["name"]["value"]) for node in tree["nodes"]
            if node.get("role") and node.get("name") and node["name"].get("value")}


def test_the_local_pipeline_streams_is_steered_stopped_and_downloaded(studio, page):
    page.goto(f"{studio.base}/realtime/")
    assert page.get_by_label("Krea realtime (local GPU)").is_checked()
    assert page.get_by_label("Krea WAN 14B realtime (fal)").is_enabled()
    assert page.is_hidden("#rt-images")  # the local pipeline takes no start frame
    names = accessible_names(page)  # as chromium tells a screen reader
    for role, name in (("spinbutton", "Width"), ("textbox", "Prompt"), ("spinbutton", "Playback FPS"),
                       ("button", "START"), ("button", "RST: reset the stream"), ("button", "RND: a random seed")):
        assert (role, name) in names, (role, name)
    assert not [name for _, name in names if "[" in name or "]" in name]  # the brackets are only drawn
    page.get_by_label("Width", exact=True).fill("184")  # the local pipeline rounds to 16: 192
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
    page.get_by_label("Blocks", exact=True).fill("5")  # the page's range is 10-50
    page.get_by_role("button", name="START", exact=True).click()
    assert page.inner_text("#rt-blocks-error") == "Blocks must be a whole number from 10 to 50."
    assert page.locator("#rt-prompt-error").count() == 0 and page.inner_text("#rt-state") == "idle"
    page.get_by_label("Blocks", exact=True).fill("50")
    assert page.inner_text("#rt-state") == "idle" and page.is_disabled("#rt-stop") and not sockets
    assert page.evaluate("document.getElementById('rt-fps-input').value") == "8"
    page.get_by_role("button", name="START", exact=True).click()

    more_frames(page, 0, timeout=120000)
    assert sockets == [f"{studio.base.replace('http', 'ws')}/ws/realtime/?backend=local"]
    session_id = page.get_attribute("#rt", "data-session")
    assert re.fullmatch(r"[0-9a-f-]{36}", session_id)
    assert page.inner_text("#rt-state") == "streaming"
    assert page.inner_text("#rt-size") == "192x192" and page.inner_text("#rt-seed") == "7"
    assert "asked for 184x184" in page.inner_text("#rt-log")
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
    shot(page, "realtime")

    page.get_by_role("button", name="STOP", exact=True).click()
    page.wait_for_selector("#rt[data-state=stopped]")
    assert page.is_enabled("#rt-start") and page.is_disabled("#rt-stop") and page.is_disabled("#rt-reset")
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
    assert detail["frames"] < 9 + 9 + 12 * 48, "the stream ran to its end (with its reset): STOP did not stop it"
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
    assert page.is_enabled("#rt-download") and page.is_enabled("#rt-start")
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
