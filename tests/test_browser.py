"""A person's path through the studio in a real browser (Debian's chromium via playwright):
log in, make a video on the Video Generation page, find it in the Gallery, stream frames on
the Realtime page. The studio runs as `manage.py runstudio`; fal is the loopback fake."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from tests.fakes.fal import FakeFal
from tests.support.processes import free_port, wait_http
from tests.test_runstudio import read_until, start_studio, stop_like_ctrl_c

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
pytestmark = [pytest.mark.browser, pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="chromium not installed")]
SCREENSHOTS = Path(os.environ.get("STUDIO_SCREENSHOTS", "/tmp/studio-screenshots"))


@pytest.fixture(scope="module")
def studio(tmp_path_factory):
    fal = FakeFal().start()
    port = free_port()
    env = {**fal.settings(), "STUDIO_ADMIN_PASSWORD": "browser-test-42", "VIDEO_POLL_INTERVAL": "0.05"}
    process = start_studio(tmp_path_factory.mktemp("studio"), port, env=env)
    try:
        read_until(process, r"Created admin user")
        wait_http(f"http://127.0.0.1:{port}/health", status=200)
        yield f"http://127.0.0.1:{port}", fal
    finally:
        stop_like_ctrl_c(process)
        fal.stop()


@pytest.fixture(scope="module")
def page(studio):
    from playwright.sync_api import sync_playwright

    base, _ = studio
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=[
            "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
            "--disable-component-update", "--disable-sync"])
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.goto(f"{base}/")
        page.fill("input[name=username]", "admin")
        page.fill("input[name=password]", "browser-test-42")
        page.click("button[type=submit]")
        page.wait_for_url(f"{base}/")
        yield page
        browser.close()


def test_a_person_makes_a_video_and_finds_it_in_the_gallery(studio, page):
    base, fal = studio
    page.click("text=Video Generation")
    page.select_option("#model", "fal-ai/fast-animatediff/text-to-video")
    page.fill("textarea[name=prompt]", "a paper boat on a rainy street")
    page.fill("input[name=num_frames]", "24")
    page.click("#submit")
    page.wait_for_selector("text=Saved to your gallery", timeout=30000)
    assert page.is_visible("#result")
    # The browser decoded the MP4 (the fake's is real H.264): the page shows a playable video.
    page.wait_for_function("document.querySelector('#result').readyState >= 2", timeout=10000)
    assert page.evaluate("document.querySelector('#result').videoWidth") == 160
    page.screenshot(path=str(SCREENSHOTS / "video-generation.png"))
    submitted = list(fal.requests.values())[-1]
    assert submitted["input"] == {"prompt": "a paper boat on a rainy street", "num_frames": 24}

    page.click("text=Gallery")
    page.wait_for_selector("figure video")
    assert "a paper boat on a rainy street" in page.inner_text("figcaption")
    page.screenshot(path=str(SCREENSHOTS / "gallery.png"))


def test_a_bad_value_shows_which_field_is_wrong(studio, page):
    base, fal = studio
    page.goto(f"{base}/video-generation/")
    page.select_option("#model", "fal-ai/wan/v2.2-a14b/image-to-video")
    page.fill("textarea[name=prompt]", "no image given")
    page.eval_on_selector("input[name=image]", "el => el.required = false")
    page.click("#submit")
    page.wait_for_selector(".status .error")
    assert "image: is required" in page.inner_text("#status")


def test_a_person_streams_realtime_frames(studio, page):
    base, fal = studio
    page.goto(f"{base}/realtime/")
    page.select_option("#resolution", "576x320")
    page.fill("#blocks", "2")
    page.click("#start")
    page.wait_for_selector("text=Completed: 21 frames.", timeout=30000)
    assert page.is_visible("#frame")
    page.screenshot(path=str(SCREENSHOTS / "realtime.png"))
    session = fal.ws_sessions[-1]
    assert session["params"]["width"] == 576 and session["params"]["num_blocks"] == 2
    assert session["frames_sent"] == 21
