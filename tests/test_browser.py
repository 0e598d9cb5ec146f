"""A person's path through the studio in a real browser (Debian's chromium via playwright):
log in, make a video and an image-to-video one on the Video Generation page and watch them
play, leave a long job and come back to it, find everything in the Gallery (filters, reuse
settings, cancel), the API token page, logout (the Realtime page: tests/test_realtime_browser.py).
The studio runs as `manage.py runstudio`; fal is the loopback fake.

Screenshots of each page land in $STUDIO_SCREENSHOTS, by default a folder under the system's
temporary directory: a test run leaves the clone as it was. `scripts/screenshots` runs the
browser tests with it set to docs/ui/ (linked from docs/ui.md) to refresh them on purpose."""

from __future__ import annotations

import contextlib
import io
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from types import SimpleNamespace

import pytest

from tests.fakes.fal import FakeFal
from tests.support.processes import ROOT, free_port, wait_for, wait_http
from tests.test_runstudio import read_until, start_studio, stop_like_ctrl_c

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
pytestmark = [pytest.mark.browser, pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="chromium not installed")]
SCREENSHOTS = Path(os.environ.get("STUDIO_SCREENSHOTS") or Path(tempfile.gettempdir()) / "studio-screenshots")
# The fake camera (a moving test pattern) and no permission prompt: the Realtime page's webcam mode.
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--use-fake-device-for-media-stream",
                 "--use-fake-ui-for-media-stream"]
VIEWPORT = {"width": 1280, "height": 800}
PASSWORD = "browser-test-42"


@contextlib.contextmanager
def live_studio(data_dir: Path, **env: str):
    """``runstudio`` on a free port with a fake fal beside it; yields what the tests need."""
    fal = FakeFal().start()
    port = free_port()
    process = start_studio(data_dir, port, env={**fal.settings(), "STUDIO_ADMIN_PASSWORD": PASSWORD, **env})
    try:
        read_until(process, r"Created admin user")
        wait_http(f"http://127.0.0.1:{port}/health", status=200, timeout=120)
        yield SimpleNamespace(base=f"http://127.0.0.1:{port}", fal=fal, data_dir=data_dir, seen=set())
    finally:
        stop_like_ctrl_c(process)
        fal.stop()


@pytest.fixture(scope="module")
def studio(tmp_path_factory):
    # Three tries at fal, not ten: a provider that stays down is reported in a second or so.
    with live_studio(tmp_path_factory.mktemp("studio"), VIDEO_POLL_INTERVAL="0.05", FAL_MAX_ATTEMPTS="3") as studio:
        yield studio


def log_in(browser, studio, viewport=VIEWPORT):
    context = browser.new_context(viewport=viewport)
    page = context.new_page()
    watch(page, studio)
    page.goto(f"{studio.base}/")
    page.fill("input[name=username]", "admin")
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(f"{studio.base}/")
    return page


def watch(page, studio):
    """Every same-origin answer the browser gets is recorded (checked for keys at the end);
    a console error or a failed request fails the test that caused it."""
    page.errors = []

    def on_response(response):
        if response.url.startswith(studio.base):
            studio.seen.add(response.url.split("#")[0])
            if response.status >= 400 and "/api/" not in response.url:
                page.errors.append(f"{response.status} {response.url}")

    page.on("response", on_response)
    page.on("pageerror", lambda error: page.errors.append(f"script error: {error}"))
    page.on("console", lambda message: message.type == "error" and "the server responded with a status of 4"
            not in message.text and page.errors.append(f"console: {message.text}"))


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


def shot(page, name: str) -> None:
    page.evaluate("""async () => {
        window.scrollTo(0, 0);
        if (document.activeElement) document.activeElement.blur();
        for (const video of document.querySelectorAll("video")) {  // a frame, not a loading spinner
            video.pause();
            if (video.readyState >= 1 && video.currentTime < 0.3) {
                const seeked = new Promise((done) => video.addEventListener("seeked", done, {once: true}));
                video.currentTime = 0.5;
                await Promise.race([seeked, new Promise((done) => setTimeout(done, 2000))]);
            }
        }
    }""")
    from PIL import Image

    # Committed to docs/ui/ by scripts/screenshots: 256 colours keep each PNG small (the pages
    # are mostly flat colour).
    image = Image.open(io.BytesIO(page.screenshot())).convert("RGB").quantize(256, method=Image.Quantize.MEDIANCUT)
    image.save(SCREENSHOTS / f"{name}.png", optimize=True)


def png(width=96, height=64, colour=(200, 80, 40)) -> bytes:
    from PIL import Image

    out = io.BytesIO()
    Image.new("RGB", (width, height), colour).save(out, format="PNG")
    return out.getvalue()


def wait_for_video(page, selector="#result"):
    """The video's width once the browser has decoded it and played it to its end (muted)."""
    page.wait_for_function(f"document.querySelector('{selector}') && document.querySelector('{selector}').readyState >= 2",
                           timeout=30000)
    played = page.evaluate("""async (selector) => {
        const video = document.querySelector(selector);
        video.muted = true;
        const ended = new Promise((done) => video.addEventListener("ended", () => done(true), {once: true}));
        await video.play();
        return Promise.race([ended, new Promise((done) => setTimeout(() => done(false), 10000))]);
    }""", selector)
    assert played, "the video did not play to its end"
    return page.evaluate(f"document.querySelector('{selector}').videoWidth")


def job_in(url: str) -> str | None:
    match = re.search(r"[?&]job=([0-9a-f-]+)", url)
    return match.group(1) if match else None


def submit(page, status: str = "completed", timeout: float = 30000) -> str:
    """Press Generate; wait until the page follows the new job and it reaches ``status``."""
    before = job_in(page.url)
    page.click("#submit")
    page.wait_for_function("before => { const id = new URLSearchParams(location.search).get('job');"
                           " return id && id !== before; }", arg=before, timeout=10000)
    page.wait_for_selector(f"#job[data-status={status}]", timeout=timeout)
    return job_in(page.url)


def last_fal_input(fal, app: str) -> dict:
    matching = [r for r in fal.requests.values() if r["app_id"] == app]
    assert matching, [r["app_id"] for r in fal.requests.values()]
    return matching[-1]["input"]


def test_the_login_page_and_home(browser, studio, page):
    anonymous = browser.new_context(viewport=VIEWPORT).new_page()
    watch(anonymous, studio)
    anonymous.goto(f"{studio.base}/video-generation/")
    assert anonymous.url.startswith(f"{studio.base}/accounts/login/")
    assert anonymous.get_by_label("Username", exact=True).is_visible() and anonymous.get_by_label("Password", exact=True).is_visible()
    shot(anonymous, "login")
    assert not anonymous.errors, anonymous.errors  # the favicon included: no 404 on any page
    anonymous.context.close()

    page.goto(f"{studio.base}/")
    nav = page.locator("nav.nav a").all_inner_texts()
    assert nav == ["Home", "Video Generation", "Realtime", "Gallery"]
    veo = page.locator('li.model-card[data-model="fal-ai/veo3.1"]')
    assert "Ready" in veo.inner_text() and "$1.60" in veo.inner_text()
    tt = page.locator('li.model-card[data-model="tenstorrent/wan2.2-t2v"]')
    assert "Not configured" in tt.inner_text() and "CLOUD_VIDEO_GENERATION_URL" in tt.inner_text()
    # Configured models come first.
    first = page.locator("li.model-card").first.get_attribute("class")
    assert "unconfigured" not in first
    assert page.evaluate("document.querySelector('link[rel=icon]').href").endswith("/static/studio/favicon.svg")
    shot(page, "home")


def test_a_person_makes_a_video_and_sees_it_play(studio, page):
    fal = studio.fal
    page.click("nav >> text=Video Generation")
    page.wait_for_selector("#inputs .field")  # the page's script has built the form
    page.select_option("#model", "fal-ai/fast-animatediff/text-to-video")
    labels = page.locator("#inputs label").all_inner_texts()
    assert labels == ["Prompt", "Negative prompt", "Frames", "Inference steps",
                                                      "Guidance scale", "Frame rate", "Seed", "Frame size"]
    assert "(8–64 frames; default 16)" in page.inner_text('[data-name="num_frames"] .help')
    assert page.get_by_label("Frame size", exact=True).input_value() == "square"
    page.get_by_label("Prompt", exact=True).fill("a paper boat on a rainy street")
    page.get_by_label("Frames", exact=True).fill("24")
    page.wait_for_selector("#estimate:has-text('No published price')")
    job_id = submit(page)
    assert wait_for_video(page) == 160  # the browser decoded the fake's real H.264
    assert page.is_visible("#result") and page.get_attribute("#result", "controls") is not None
    assert page.get_attribute("#download", "href") == f"/api/jobs/{job_id}/video?download=1"
    assert "Done" in page.inner_text("#status")
    submitted = last_fal_input(fal, "fal-ai/fast-animatediff/text-to-video")
    assert submitted["prompt"] == "a paper boat on a rainy street" and submitted["num_frames"] == 24
    page.evaluate("document.querySelector('#result').pause()")
    shot(page, "video-generation")


def test_the_cost_estimate_follows_the_inputs(studio, page):
    page.goto(f"{studio.base}/video-generation/?model=fal-ai/veo3.1/fast")
    page.wait_for_selector("#estimate:has-text('$0.80')")  # 8 s at $0.10/s by default
    page.get_by_label("Duration", exact=True).select_option("4s")
    page.wait_for_selector("#estimate:has-text('$0.40')")
    assert [o.strip() for o in page.locator("#in-duration option").all_inner_texts()] == ["4 s", "6 s", "8 s"]
    page.get_by_label("Seed", exact=True).fill("-3")
    page.wait_for_selector("[data-name=seed].invalid")
    assert "Seed must be at least 0" in page.inner_text("[data-name=seed] .field-error")
    page.get_by_label("Seed", exact=True).fill("3")
    page.wait_for_selector("#estimate:has-text('$0.40')")
    assert page.locator(".field.invalid").count() == 0


def test_image_to_video_with_an_upload_and_its_preview(studio, page, tmp_path):
    fal = studio.fal
    image = tmp_path / "red.png"
    image.write_bytes(png())
    page.goto(f"{studio.base}/video-generation/")
    page.select_option("#model", "fal-ai/wan-25-preview/image-to-video")
    page.get_by_label("Prompt", exact=True).fill("the red square spins")
    page.get_by_label("Image", exact=True).set_input_files(str(image))
    page.wait_for_function("document.querySelector('[data-name=image] .preview img').naturalWidth === 96")
    assert "red.png" in page.inner_text("[data-name=image] figcaption")
    page.wait_for_selector("#estimate:has-text('$0.75')")  # 1080p x 5 s by default
    page.get_by_label("Resolution", exact=True).select_option("480p")
    page.wait_for_selector("#estimate:has-text('$0.25')")
    submit(page)
    assert wait_for_video(page) == 160
    shot(page, "video-generation-image")
    submitted = last_fal_input(fal, "fal-ai/wan-25-preview/image-to-video")
    assert submitted["resolution"] == "480p" and submitted["prompt"] == "the red square spins"
    assert submitted["image_url"].startswith(fal.base_url)  # uploaded to fal's CDN, then referenced
    assert fal.uploads and fal.uploads[-1]["data"] == png()


def test_errors_say_what_happened_and_name_the_field(studio, page):
    fal = studio.fal
    page.goto(f"{studio.base}/video-generation/?model=fal-ai/fast-animatediff/text-to-video")
    # Nothing sent without the required prompt: the field says so.
    page.click("#submit")
    assert "Prompt is required" in page.inner_text("[data-name=prompt] .field-error")
    assert page.evaluate("document.activeElement.name") == "prompt"
    # The studio refuses a bad value: the field is named, nothing is started.
    page.get_by_label("Prompt", exact=True).fill("a cat")
    page.get_by_label("Frames", exact=True).fill("7")
    page.click("#submit")
    page.wait_for_selector("[data-name=num_frames].invalid")
    assert "Frames must be at least 8" in page.inner_text("[data-name=num_frames] .field-error")
    page.get_by_label("Frames", exact=True).fill("16")
    # The provider rejects the prompt.
    fal.reject_next = 1
    submit(page, "failed")
    page.wait_for_selector("#job-error li")  # the provider's per-field details
    error = page.inner_text("#job-error")
    assert "The provider rejected an input" in error and "Prompt: Prompt is not allowed" in error
    assert "Prompt is not allowed" in page.inner_text("[data-name=prompt] .field-error")
    # A timeout at the provider says so.
    fal.user_timeout = 1
    submit(page, "failed")
    assert "The provider took too long" in page.inner_text("#job-error")
    # The provider down.
    fal.ingress_errors = 50
    try:
        submit(page, "failed")
        assert "down or cannot be reached" in page.inner_text("#job-error")
    finally:
        fal.ingress_errors = 0
    shot(page, "video-generation-error")


def test_leaving_and_coming_back_shows_the_job_then_the_gallery_cancels_it(studio, page):
    fal = studio.fal
    fal.processing_time = 120
    try:
        page.goto(f"{studio.base}/video-generation/?model=fal-ai/veo3.1/fast")
        page.get_by_label("Prompt", exact=True).fill("a very slow sunrise")
        job_id = submit(page, "running")
        assert "usually 30-90 seconds" in page.inner_text("#timing")

        page.click("nav >> text=Gallery")
        card = page.locator(f"#item-{job_id}")
        card.wait_for()
        assert card.get_attribute("data-status") == "running"
        page.click("nav >> text=Video Generation")  # no ?job=: the page remembers it
        page.wait_for_selector("#job[data-status=running]")
        assert "a very slow sunrise" in page.inner_text("#job-meta")

        page.goto(f"{studio.base}/gallery/")
        card.locator("[data-action=cancel]").focus()
        page.keyboard.press("Enter")  # keyboard only
        page.wait_for_selector(f"#item-{job_id}[data-status=cancelled]")
        assert "Cancelled" in card.inner_text()
        wait_for(lambda: any(c["method"] == "PUT" and c["path"].endswith("/cancel") for c in list(fal.calls)),
                 10, "fal told of the cancel")
    finally:
        fal.processing_time = 0.2


def add_recording(studio) -> str:
    """A realtime recording as the relay saves it: a Video with no job (made in the studio's DB)."""
    code = (
        "from django.core.files.base import ContentFile\n"
        "from django.core.files.storage import default_storage\n"
        "from django.contrib.auth import get_user_model\n"
        "from tests.fakes.media import jpeg_frame, tiny_mp4\n"
        "from videogen.models import Video\n"
        "clip = tiny_mp4(7)\n"
        "f = default_storage.save('videos/1/realtime-rec.mp4', ContentFile(clip))\n"
        "t = default_storage.save('thumbnails/1/realtime-rec.jpg', ContentFile(jpeg_frame('fox', 0, 160, 96)))\n"
        "v = Video.objects.create(owner=get_user_model().objects.get(username='admin'), file=f, thumbnail=t,\n"
        "    duration_s=1.0, size=len(clip), parameters={'kind': 'realtime', 'backend': 'local', 'model': 'local/krea-realtime',\n"
        "    'session': '6f1c0d9e-0000-4000-8000-000000000001', 'prompt': 'a fox in fresh snow', 'width': 832,\n"
        "    'height': 480, 'seed': 42, 'timeline': {'prompts': []}})\n"
        "print(v.pk)\n"
    )
    env = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "DATABASE_URL")}
    out = subprocess.run([sys.executable, "manage.py", "shell", "-c", code], cwd=ROOT, check=True, capture_output=True,
                         text=True, env={**env, "STUDIO_ENV_FILE": "", "STUDIO_DATA_DIR": str(studio.data_dir)})
    return out.stdout.strip().splitlines()[-1]


def start_job(page, studio, prompt: str, wait: float = 20, **fields) -> dict:
    """A job made the way a script makes one (multipart, session + CSRF), once it has
    finished (or after ``wait`` seconds)."""
    csrf = next(c["value"] for c in page.context.cookies() if c["name"] == "csrftoken")
    multipart = {"model": "fal-ai/wan-25-preview/image-to-video", "prompt": prompt, "resolution": "480p",
                 "image": {"name": "red.png", "mimeType": "image/png", "buffer": png()}, **fields}
    response = page.request.post(f"{studio.base}/api/jobs/?wait={wait}", multipart=multipart,
                                 headers={"X-CSRFToken": csrf, "Referer": f"{studio.base}/"})
    assert response.status in (201, 202), response.text()
    return response.json()


def test_the_gallery_filters_and_reuses_settings(studio, page):
    done = start_job(page, studio, "the red square spins")
    studio.fal.reject_next = 1
    failed = start_job(page, studio, "a rejected square")
    assert (done["status"], failed["status"]) == ("completed", "failed")
    recording = add_recording(studio)
    page.goto(f"{studio.base}/gallery/")
    items = page.locator("li.item")
    assert items.count() >= 3
    assert items.first.get_attribute("data-item") == recording  # newest first
    rec = page.locator(f"#item-{recording}")
    assert "a fox in fresh snow" in rec.inner_text() and "recording" in rec.inner_text()
    page.wait_for_function(f"document.querySelector('#item-{recording} .player img').naturalWidth === 160")
    assert rec.locator(".player img").get_attribute("src").endswith("/thumbnail")
    assert "ago" in rec.locator("time").inner_text() or "now" in rec.locator("time").inner_text()
    assert not re.search(r"\d{4}-\d\d-\d\dT", page.inner_text("main"))  # no raw ISO dates
    shot(page, "gallery")
    rec.get_by_role("link", name="Play: a fox in fresh snow").click()
    assert wait_for_video(page, f"#item-{recording} video") == 160
    assert page.evaluate("document.activeElement.tagName") == "VIDEO"

    page.get_by_label("Kind", exact=True).select_option("realtime")
    page.click("form.filters button[type=submit]")
    page.wait_for_url("**/gallery/?**kind=realtime**")
    assert page.locator("li.item").count() == 1 and page.locator(f"#item-{recording}").is_visible()
    page.get_by_label("Kind", exact=True).select_option("")
    page.get_by_label("Status", exact=True).select_option("failed")
    page.click("form.filters button[type=submit]")
    statuses = set(page.locator("li.item").evaluate_all("items => items.map(i => i.dataset.status)"))
    assert statuses == {"failed"}
    assert page.locator(f"#item-{failed['id']}").is_visible()
    page.get_by_label("Status", exact=True).select_option("completed")
    page.get_by_label("Model", exact=True).select_option("fal-ai/wan-25-preview/image-to-video")
    page.click("form.filters button[type=submit]")
    statuses = set(page.locator("li.item").evaluate_all("items => items.map(i => i.dataset.status)"))
    assert statuses == {"completed"} and page.locator(f"#item-{failed['id']}").count() == 0
    card = page.locator(f"#item-{done['id']}")
    assert "the red square spins" in card.inner_text()
    assert "Resolution" in card.inner_text() and "480p" in card.inner_text()

    card.get_by_role("link", name="Reuse settings").click()
    page.wait_for_url("**/video-generation/?from=*")
    assert page.input_value("#model") == "fal-ai/wan-25-preview/image-to-video"
    assert page.get_by_label("Prompt", exact=True).input_value() == "the red square spins"
    # The picture is fetched back first; the values after it land when it has come.
    page.wait_for_function("document.querySelector('[data-name=image] .preview img').naturalWidth === 96")
    page.wait_for_function("document.getElementById('in-resolution').value === '480p'", timeout=5000)
    assert page.evaluate("document.querySelector('#in-image').files[0].name") == "red.png"
    page.get_by_label("Prompt", exact=True).fill("the red square spins again")
    submit(page)
    assert wait_for_video(page) == 160


def test_the_gallery_follows_a_job_live(studio, page):
    studio.fal.processing_time = 2
    try:
        page.goto(f"{studio.base}/gallery/")
        page.wait_for_load_state("networkidle")  # its socket is open
        job = start_job(page, studio, "a job started elsewhere", wait=0)
        card = page.locator(f"#item-{job['id']}")
        card.wait_for(timeout=10000)  # it appears without a reload...
        assert card.get_attribute("data-status") in ("pending", "submitted", "running")
        page.wait_for_selector(f"#item-{job['id']}[data-status=completed]", timeout=30000)  # ...and finishes
        assert card.locator(".player img").count() == 1 and "Download" in card.inner_text()
    finally:
        studio.fal.processing_time = 0.2


def test_delete_and_retry_from_the_gallery(studio, page):
    studio.fal.reject_next = 1
    failed_id = start_job(page, studio, "rejected, then tried again")["id"]
    page.goto(f"{studio.base}/gallery/?status=failed")
    card = page.locator(f"#item-{failed_id}")
    card.locator("[data-action=retry]").click()
    page.wait_for_selector("#gallery-status:has-text('again as a new job')")
    # The first try was refused at the door (no request at fal); the retry is a new job that gets there.
    wait_for(lambda: any(r["input"].get("prompt") == "rejected, then tried again" for r in studio.fal.requests.values()),
             10, "the retry reached fal")
    page.goto(f"{studio.base}/gallery/")
    count = page.locator("li.item").count()
    page.once("dialog", lambda dialog: dialog.accept())
    page.locator(f"#item-{failed_id} [data-action=delete]").click()
    page.wait_for_selector(f"#item-{failed_id}", state="detached")
    assert page.locator("li.item").count() == count - 1
    page.reload()
    assert page.locator(f"#item-{failed_id}").count() == 0


def test_the_vendored_msgpack_module_loads(studio, page):
    page.goto(f"{studio.base}/")
    roundtrip = page.evaluate("""async () => {
        const m = await import('/static/vendor/msgpack/dist.esm/index.mjs');
        const bytes = m.encode({prompt: 'a fox', width: 832, seed: 42, ok: true});
        return [bytes.length, m.decode(bytes)];
    }""")
    assert roundtrip[1] == {"prompt": "a fox", "width": 832, "seed": 42, "ok": True} and roundtrip[0] > 20


def test_the_token_page_and_logout(browser, studio):
    page = log_in(browser, studio)
    try:
        page.click("text=API token")
        page.click("button:has-text('Make a token')")
        key = page.input_value("#token-key")
        assert re.fullmatch(r"[0-9a-f]{40}", key)
        response = page.request.get(f"{studio.base}/api/jobs/", headers={"Authorization": f"Token {key}"})
        assert response.ok
        shot(page, "account-token")
        page.click("button:has-text('Log out')")
        page.wait_for_url("**/accounts/login/")
        assert "You are logged out." in page.inner_text("main")
        page.goto(f"{studio.base}/gallery/")
        assert "/accounts/login/" in page.url
        assert not page.errors, page.errors
    finally:
        page.context.close()


def test_a_phone_sized_screen_gets_one_column(browser, studio):
    page = log_in(browser, studio, viewport={"width": 390, "height": 800})
    try:
        page.goto(f"{studio.base}/video-generation/?model=fal-ai/veo3.1")
        form, stage = page.locator("#generate-form").bounding_box(), page.locator("#stage").bounding_box()
        assert stage["y"] >= form["y"] + form["height"] - 1  # stacked, not side by side
        assert page.evaluate("document.documentElement.scrollWidth") <= 390  # nothing sticks out sideways
        shot(page, "video-generation-phone")
        assert not page.errors, page.errors
    finally:
        page.context.close()


def test_an_address_that_is_not_here_gets_the_styled_404_with_the_navigation(studio, page):
    for path, says in (("/no-such-page/", "There is no page at /no-such-page/"),
                       ("/video-generation/?model=nope/nope", "No model 'nope/nope' on this page.")):
        response = page.goto(f"{studio.base}{path}")
        assert response.status == 404
        assert page.title() == "Not found · Studio"
        assert page.inner_text("main h1") == "Not found"
        assert says in page.inner_text("main"), page.inner_text("main")
        assert page.locator("nav.nav a").all_inner_texts() == ["Home", "Video Generation", "Realtime", "Gallery"]
        assert page.evaluate("getComputedStyle(document.body).backgroundColor") == "rgb(15, 17, 21)"  # studio.css
    shot(page, "not-found")
    page.get_by_role("link", name="Gallery", exact=True).first.click()  # the way back
    page.wait_for_url(f"{studio.base}/gallery/")
    page.errors[:] = [e for e in page.errors if not e.startswith("404 ")]  # the two asked for


def test_no_page_or_script_the_browser_loaded_holds_the_key(studio, page):
    for path in ("/", "/video-generation/", "/gallery/", "/realtime/", "/account/token/"):
        page.goto(f"{studio.base}{path}")
        page.wait_for_load_state("networkidle")
    assert len(studio.seen) > 10
    for url in sorted(studio.seen):
        if re.search(r"/(file|video|thumbnail)(\?|$)|\.png$|\.jpg$|/inputs/", url):
            continue
        body = page.request.get(url).body()
        assert studio.fal.key.encode() not in body, url
    assert any(url.endswith(".js") for url in studio.seen) and any("/api/" in url for url in studio.seen)
