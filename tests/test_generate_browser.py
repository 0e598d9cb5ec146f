"""The Video Generation page's history and retry in a real browser (Debian's chromium via
playwright), and the local backend's CPU demo called a demo wherever it is named. The studio
runs as `manage.py runstudio` without Krea's weights (so the local backend runs its tiny
random model); fal is the loopback fake, its failure switches make the failed jobs.

Screenshots go where tests/test_browser.py puts them ($STUDIO_SCREENSHOTS)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.test_browser import (
    CHROMIUM,
    SCREENSHOTS,
    live_studio,
    log_in,
    shot,
    start_job,
    submit,
    wait_for_video,
)

pytestmark = [pytest.mark.browser, pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="chromium not installed")]
DEMO = "demo: tiny random model on CPU; install weights with `manage.py download_models` and run a GPU worker for real video"


@pytest.fixture(scope="module")
def studio(tmp_path_factory):
    with live_studio(tmp_path_factory.mktemp("studio"), VIDEO_POLL_INTERVAL="0.05", FAL_MAX_ATTEMPTS="3") as studio:
        yield studio


@pytest.fixture(scope="module")
def page(browser, studio):
    page = log_in(browser, studio)
    yield page
    page.context.close()


@pytest.fixture(autouse=True)
def _no_page_errors(request):
    yield
    if "page" in request.fixturenames:
        page = request.getfixturevalue("page")
        errors, page.errors[:] = list(page.errors), []
        assert not errors, errors


def shot_of(locator, name: str) -> None:
    """A screenshot of one part of a page (as tests/test_browser.py's ``shot``: 256 colours)."""
    import io

    from PIL import Image

    locator.evaluate("e => { if (document.activeElement) document.activeElement.blur(); }")
    image = Image.open(io.BytesIO(locator.screenshot())).convert("RGB").quantize(256, method=Image.Quantize.MEDIANCUT)
    image.save(SCREENSHOTS / f"{name}.png", optimize=True)


def history_ids(page) -> list[str]:
    return page.locator("#history > li").evaluate_all("items => items.map(i => i.dataset.job)")


def item(page, job_id: str):
    return page.locator(f"#history-{job_id}")


def test_a_new_job_appears_in_the_history_and_goes_live_to_completed_with_its_video(studio, page):
    studio.fal.processing_time = 2
    try:
        page.goto(f"{studio.base}/video-generation/?model=fal-ai/veo3.1/fast")
        page.wait_for_selector("#history-empty", state="visible")  # nothing yet, and it says so
        page.get_by_label("Prompt", exact=True).fill("a lighthouse in a storm")
        job_id = submit(page, "running")
        entry = item(page, job_id)
        entry.wait_for()
        assert history_ids(page)[0] == job_id and page.is_hidden("#history-empty")
        assert entry.get_attribute("data-status") in ("pending", "submitted", "running")
        text = entry.inner_text()
        assert "a lighthouse in a storm" in text and "Veo 3.1 Fast" in text and "est. $0.80" in text
        # No reload: the socket's events carry it to the end, then its video is fetched.
        page.wait_for_selector(f"#history-{job_id}[data-status=completed]", timeout=30000)
        assert "Done" in entry.inner_text() and "$0.80 charged" in entry.inner_text()
        page.wait_for_function(f"document.querySelector('#history-{job_id} .player img').naturalWidth === 160")
        entry.get_by_role("link", name="Play: a lighthouse in a storm").click()  # its thumbnail, until played
        assert wait_for_video(page, f"#history-{job_id} video") == 160
        assert entry.locator("video").get_attribute("src") == f"/api/jobs/{job_id}/video"
        assert "$0.80 charged" in page.inner_text("#job-meta")

        # One started elsewhere (a script, another tab) is listed too, newest first.
        other = start_job(page, studio, "a job from a script", wait=0)
        item(page, other["id"]).wait_for(timeout=10000)
        assert history_ids(page)[:2] == [other["id"], job_id]
        page.wait_for_selector(f"#history-{other['id']}[data-status=completed]", timeout=30000)
    finally:
        studio.fal.processing_time = 0.2
    # The list is the API's: a reload shows the same, newest first.
    page.reload()
    page.wait_for_selector(f"#history-{job_id}")
    assert history_ids(page)[:2] == [other["id"], job_id]
    page.evaluate("document.querySelectorAll('video').forEach((v) => v.pause())")
    shot_of(page.locator("section.history"), "video-generation-history")


def test_a_failed_job_shows_no_charge_and_retries_from_the_page(studio, page):
    page.goto(f"{studio.base}/video-generation/?model=fal-ai/veo3.1/fast")
    page.get_by_label("Prompt", exact=True).fill("refused once, then made")
    studio.fal.reject_next = 1  # fal refuses the submit: the job fails
    failed = submit(page, "failed")
    meta = page.inner_text("#job-meta")
    assert "no charge recorded" in meta and not re.search(r"·\s*\$0\.80\b", meta)  # not "$0.80" as if charged
    entry = item(page, failed)
    page.wait_for_selector(f"#history-{failed}[data-status=failed]", timeout=10000)
    assert "no charge recorded (a retry: est. $0.80)" in entry.inner_text()
    assert "The provider rejected an input" in entry.inner_text()
    assert page.is_visible("#retry")
    shot(page, "video-generation-failed")

    page.click("#retry")  # from the Result panel: a new job, followed here
    page.wait_for_function("failed => { const id = new URLSearchParams(location.search).get('job');"
                           " return id && id !== failed; }", arg=failed, timeout=10000)
    page.wait_for_selector("#job[data-status=completed]", timeout=30000)
    retried = re.search(r"[?&]job=([0-9a-f-]+)", page.url).group(1)
    assert wait_for_video(page) == 160
    assert any(r["input"].get("prompt") == "refused once, then made" for r in studio.fal.requests.values())
    assert history_ids(page)[:2] == [retried, failed]  # the retry on top, the failed try kept
    assert page.is_hidden("#retry")

    # Retry from the list: another failed job, tried again from its entry.
    studio.fal.reject_next = 1
    second = start_job(page, studio, "refused, retried from the list")
    assert second["status"] == "failed"
    item(page, second["id"]).wait_for(timeout=10000)
    page.wait_for_selector(f"#history-{second['id']}[data-status=failed]")
    item(page, second["id"]).get_by_role("button", name="Retry").click()
    page.wait_for_selector("#history-status:has-text('again as a new job')")
    again = history_ids(page)[0]
    assert again != second["id"]
    page.wait_for_selector(f"#history-{again}[data-status=completed]", timeout=30000)

    # Reuse settings is the gallery's link; delete asks first, then the entry goes.
    assert item(page, second["id"]).get_by_role("link", name="Reuse settings").get_attribute("href") == \
        f"/video-generation/?from={second['id']}"
    page.once("dialog", lambda dialog: dialog.accept())
    item(page, second["id"]).get_by_role("button", name="Delete").click()
    page.wait_for_selector(f"#history-{second['id']}", state="detached")
    assert page.request.get(f"{studio.base}/api/jobs/{second['id']}/").status == 404


def test_the_cpu_demo_is_called_a_demo_wherever_the_local_backend_is_named(studio, page):
    page.goto(f"{studio.base}/")
    for model_id in ("local/krea-realtime", "local/krea-offline"):
        card = page.locator(f'li.model-card[data-model="{model_id}"]').inner_text()
        assert "Demo" in card and DEMO in card and "Ready" not in card, card
    row = page.locator("table.backends tr", has_text="Local Krea realtime pipeline").inner_text()
    assert "demo" in row and DEMO in row
    page.goto(f"{studio.base}/realtime/")
    local = page.locator(".rt-backend", has=page.locator("#rt-backend-local"))
    assert DEMO in local.inner_text()
    assert page.locator(".rt-backend", has=page.locator("#rt-backend-fal")).inner_text().count("demo:") == 0
    assert (page.input_value("#rt-width"), page.input_value("#rt-height")) == ("576", "320")
    assert "The CPU demo starts at 576 x 320" in page.inner_text("#rt-size-help")
    page.goto(f"{studio.base}/video-generation/?model=local/krea-offline")
    page.wait_for_selector("#model-info .demo-note")
    assert page.inner_text("#model-info .demo-note") == DEMO
    health = page.request.get(f"{studio.base}/health").json()  # the admin is staff: the details
    assert health["gpu"]["demo"] == {"local": DEMO}


def test_a_video_is_restyled_from_the_page(studio, page):
    """Video to video on the local pipeline: the video chosen in the form (previewed there) is
    uploaded with the job, and what comes back is as long as the video allows."""
    import numpy as np

    from tests.support.media import mp4_of

    base = (np.random.default_rng(5).random((48, 96, 3)) * 255).astype(np.uint8)
    clip = mp4_of(np.stack([base[:, i:i + 64] for i in range(24)]), fps=16)  # 1.5 s: two blocks
    page.goto(f"{studio.base}/video-generation/?model=local/krea-offline")
    page.get_by_label("Prompt", exact=True).fill("a street in watercolour")
    video_input = page.locator("#in-video")
    assert video_input.get_attribute("accept").split(",")[0] == "video/mp4"
    video_input.set_input_files({"name": "walk.mp4", "mimeType": "video/mp4", "buffer": clip})
    page.wait_for_selector(".field[data-name=video] figure.preview:not([hidden]) video")
    assert "walk.mp4" in page.inner_text(".field[data-name=video] figcaption")
    page.select_option("#in-resolution", "320x192")
    page.fill("#in-strength", "0.6")
    job_id = submit(page, "completed", timeout=120000)
    assert wait_for_video(page) == 320
    job = page.request.get(f"{studio.base}/api/jobs/{job_id}/").json()
    assert job["input"]["video"]["file_name"] == "walk.mp4" and job["input"]["strength"] == 0.6
    assert job["video"]["duration_s"] == pytest.approx(18 / 16, abs=0.1)  # 6 + 12 frames, as the clip allows
