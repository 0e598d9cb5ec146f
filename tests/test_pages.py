"""The studio's pages, the API schema and its docs."""

from __future__ import annotations

import html as html_lib
import json
import re

import pytest

pytestmark = pytest.mark.django_db


def no_krea_weights(settings, tmp_path, monkeypatch):
    """A studio without Krea's weights, whose process has not loaded a pipeline yet."""
    from videogen.local.host import host

    settings.MODELS_DIR = tmp_path
    monkeypatch.setattr(host, "_loaded", None)


def krea_weights(settings, tmp_path, monkeypatch):
    from videogen.local.backend import WEIGHTS_DIR

    no_krea_weights(settings, tmp_path, monkeypatch)
    (tmp_path / WEIGHTS_DIR).mkdir()
    (tmp_path / WEIGHTS_DIR / "krea-realtime-video-14b.safetensors").write_bytes(b"")


def test_home_shows_the_catalog_as_cards_configured_first(logged_in, settings, tmp_path, monkeypatch):
    krea_weights(settings, tmp_path, monkeypatch)
    settings.FAL_KEY = None
    settings.CLOUD_VIDEO_GENERATION_URL = "http://127.0.0.1:9/v1/videos/generations"
    html = logged_in.get("/").content.decode()
    cards = re.findall(r'<li class="model-card( unconfigured)?" data-model="([^"]+)">(.*?)</li>', html, re.S)
    from model_control import backends
    from model_control.backends import catalog

    models = catalog().all()
    assert {model_id for _, model_id, _ in cards} == {m.id for m in models}
    ready = [model_id for unconfigured, model_id, _ in cards if not unconfigured]
    # Tenstorrent and the local pipeline (its tiny demo configuration) are ready; fal is not.
    assert ready == [m.id for m in models if backends.configured(m)]
    assert {"tenstorrent/wan2.2-t2v", "tenstorrent/wan2.2-i2v", "local/krea-realtime"} <= set(ready)
    assert not any(model_id.startswith("fal-ai/") for model_id in ready)
    assert [model_id for _, model_id, _ in cards][:len(ready)] == ready  # configured first, catalog order
    by_id = {model_id: body for _, model_id, body in cards}
    veo = by_id["fal-ai/veo3.1"]
    assert "Veo 3.1" in veo and "fal.ai queue" in veo and "Text to video" in veo
    assert "$1.60" in veo and "8 s" in veo  # its price with the defaults, and the basis
    assert "Not configured" in veo and "set FAL_KEY" in veo
    assert 'href="/video-generation/?model=fal-ai/veo3.1"' in veo
    assert "No published price" in by_id["tenstorrent/wan2.2-t2v"] and "Ready" in by_id["tenstorrent/wan2.2-t2v"]
    assert "usually 1-3 minutes" in by_id["tenstorrent/wan2.2-t2v"]
    assert 'href="/realtime/"' in by_id["local/krea-realtime"]
    rows = dict(re.findall(r'<tr><th scope="row">([^<]+)</th>.*?<span class="(ok|warn)"', html, re.S))
    assert rows == {"Tenstorrent cloud": "ok", "Local Krea realtime pipeline": "ok", "fal.ai queue": "warn",
                    "fal.ai realtime": "warn"}
    assert f"{len(ready)} of {len(models)} models are ready on this studio." in html
    assert 'aria-current="page">Home<' in html
    assert "demo" not in html.lower()


def test_home_calls_the_local_cpu_demo_a_demo_until_weights_are_there(logged_in, settings, tmp_path, monkeypatch):
    from videogen.local.backend import DEMO_NOTE

    no_krea_weights(settings, tmp_path, monkeypatch)
    settings.CLOUD_VIDEO_GENERATION_URL = "http://127.0.0.1:9/v1/videos/generations"
    html = logged_in.get("/").content.decode()
    cards = dict(re.findall(r'<li class="model-card[^"]*" data-model="([^"]+)">(.*?)</li>', html, re.S))
    for model_id in ("local/krea-realtime", "local/krea-offline"):
        card = html_lib.unescape(cards[model_id])
        assert '<span class="warn">Demo</span>' in card and DEMO_NOTE in card, model_id
        assert '<span class="ok">Ready</span>' not in card and "your own GPU" not in card
    assert '<span class="ok">Ready</span>' in cards["tenstorrent/wan2.2-t2v"]  # the others as they were
    row = re.search(r'<tr><th scope="row">Local Krea realtime pipeline</th>(.*?)</tr>', html, re.S).group(1)
    assert '<span class="warn">demo</span>' in row and DEMO_NOTE in html_lib.unescape(row)
    assert ", 2 of them as a demo." in html
    # The same studio with the weights in place: no demo, anywhere.
    (tmp_path / "with-weights").mkdir()
    krea_weights(settings, tmp_path / "with-weights", monkeypatch)
    html = logged_in.get("/").content.decode()
    assert DEMO_NOTE not in html_lib.unescape(html) and "as a demo" not in html


def test_health_tells_staff_which_backend_runs_a_demo(client, django_user_model, settings, tmp_path, monkeypatch):
    from videogen.local.backend import DEMO_NOTE

    no_krea_weights(settings, tmp_path, monkeypatch)
    assert "demo" not in client.get("/health").json()  # anonymous: status and failing only
    client.force_login(django_user_model.objects.create_user("ops", password="ops-password-1", is_staff=True))
    assert client.get("/health").json()["gpu"]["demo"] == {"local": DEMO_NOTE}
    settings.STUDIO_PIPELINE = "full"  # told to run Krea, and its weights are there
    (tmp_path / "krea-realtime-video").mkdir()
    (tmp_path / "krea-realtime-video" / "krea-realtime-video-14b.safetensors").write_bytes(b"")
    assert client.get("/health").json()["gpu"]["demo"] == {}
    settings.STUDIO_PIPELINE = "tiny"  # the weights are there, but the tiny model is what runs
    assert client.get("/health").json()["gpu"]["demo"] == {"local": DEMO_NOTE}


def test_the_demo_is_what_the_loaded_pipeline_says_once_there_is_one(settings, tmp_path, monkeypatch):
    from model_control import backends
    from videogen.local.backend import DEMO_NOTE
    from videogen.local.host import LoadedPipeline, host

    krea_weights(settings, tmp_path, monkeypatch)
    local = backends.backend("local")
    assert local.demo() is None
    loaded = LoadedPipeline(session=None, kind="tiny", name="tiny-random", device="cpu", dtype="float32",
                            attention="sdpa", random_weights=True, load_s=0.1, loaded_at=0.0)
    monkeypatch.setattr(host, "_loaded", loaded)  # e.g. weights there but no CUDA: the tiny model loaded
    assert local.demo() == DEMO_NOTE


def test_the_navigation_holds_only_pages_that_work(logged_in):
    html = logged_in.get("/").content.decode()
    nav = re.search(r'<nav class="nav" aria-label="Studio">(.*?)</nav>', html, re.S).group(1)
    links = re.findall(r'<a href="([^"]+)"[^>]*>([^<]+)</a>', nav)
    assert links == [("/", "Home"), ("/video-generation/", "Video Generation"), ("/realtime/", "Realtime"),
                     ("/gallery/", "Gallery")]
    assert "disabled" not in html and "Chat" not in html and "Speech" not in html
    for href, _ in links:
        assert logged_in.get(href).status_code == 200
    assert 'href="/account/token/"' in html and 'action="/accounts/logout/"' in html


def test_every_page_links_the_favicon_and_favicon_ico_leads_to_it(client, logged_in):
    from django.contrib.staticfiles import finders

    for path in ("/", "/video-generation/", "/gallery/", "/realtime/", "/account/token/"):
        assert '<link rel="icon" href="/static/studio/favicon.svg" type="image/svg+xml">' in \
            logged_in.get(path).content.decode(), path
    logged_in.logout()
    assert 'rel="icon"' in client.get("/accounts/login/").content.decode()
    response = client.get("/favicon.ico")  # anonymous: browsers ask before anyone logs in
    assert response.status_code == 301 and response["Location"] == "/static/studio/favicon.svg"
    assert finders.find("studio/favicon.svg").endswith("static/studio/favicon.svg")


def test_the_local_pipeline_is_ready_only_with_weights_or_its_demo_config(settings, tmp_path, monkeypatch):
    from model_control import backends
    from model_control.backends import catalog
    from videogen.local.backend import WEIGHTS_DIR
    from videogen.pipeline import config

    local = catalog().get("local/krea-realtime")
    assert backends.configured(local)  # the tiny demo configuration is built in
    monkeypatch.setattr(config, "TINY_CONFIG", None)
    settings.MODELS_DIR = tmp_path
    assert "no weights" in backends.missing(local)
    weights = tmp_path / WEIGHTS_DIR
    weights.mkdir()
    (weights / "model.safetensors").write_bytes(b"")
    assert backends.configured(local)


def page_data(html: str) -> dict:
    return json.loads(re.search(r'<script id="page-data" type="application/json">(.*?)</script>', html, re.S).group(1))


def test_the_generation_page_offers_every_non_realtime_model_grouped_configured_first(logged_in, settings):
    settings.FAL_KEY = None
    settings.CLOUD_VIDEO_GENERATION_URL = "http://127.0.0.1:9/v1/videos/generations"
    html = logged_in.get("/video-generation/").content.decode()
    data = page_data(html)
    ids = {m["id"] for m in data["models"]}
    assert "fal-ai/veo3.1" in ids and "tenstorrent/wan2.2-t2v" in ids
    assert "fal-ai/krea-wan-14b" not in ids and "local/krea-realtime" not in ids
    groups = re.findall(r'<optgroup label="([^"]+)">', html)
    assert groups[0] == "Tenstorrent cloud" and groups[-1] == "fal.ai queue (not configured)"
    assert len(groups) == len({m["backend"] for m in data["models"]})
    # The first configured model is chosen, not the catalog's first (unconfigured) one.
    assert data["selected"] == "tenstorrent/wan2.2-t2v"
    assert '<option value="tenstorrent/wan2.2-t2v" selected>' in html
    # Inputs come with the catalog's words; only the model's own.
    veo = next(m for m in data["models"] if m["id"] == "fal-ai/veo3.1")
    assert [i["label"] for i in veo["inputs"]] == ["Prompt", "Aspect ratio", "Duration", "Resolution",
                                                  "Generate audio", "Seed"]
    assert veo["typical_wait"] == "usually 1-3 minutes" and veo["configured"] is False
    assert data["errors"]["timeout"]["headline"] == "The provider took too long"
    assert 'aria-current="page">Video Generation<' in html


def test_the_generation_page_preselects_a_model_and_refuses_an_unknown_one(logged_in, settings):
    settings.FAL_KEY = "k"
    html = logged_in.get("/video-generation/?model=fal-ai/veo3.1/fast").content.decode()
    assert page_data(html)["selected"] == "fal-ai/veo3.1/fast"
    assert logged_in.get("/video-generation/?model=no/such").status_code == 404
    assert logged_in.get("/video-generation/?model=fal-ai/krea-wan-14b").status_code == 404  # realtime: its own page
    assert logged_in.post("/video-generation/").status_code == 405


def test_reuse_settings_fills_the_form_in_with_an_earlier_job(logged_in, user, other_user, settings):
    from django.core.files.base import ContentFile
    from django.core.files.storage import default_storage

    from videogen.models import Job

    settings.FAL_KEY = "k"
    path = default_storage.save("uploads/abc.png", ContentFile(b"\x89PNG fake"))
    job = Job.objects.create(owner=user, backend="fal", model_id="fal-ai/wan-25-preview/image-to-video",
                             kind="image-to-video", status="failed",
                             input={"prompt": "the cat waves", "duration": "10", "resolution": "480p", "seed": 7,
                                    "image": {"upload": path, "sha256": "abc", "content_type": "image/png",
                                              "file_name": "cat.png"}})
    html = logged_in.get(f"/video-generation/?from={job.pk}").content.decode()
    data = page_data(html)
    assert data["selected"] == "fal-ai/wan-25-preview/image-to-video"
    assert data["prefill"]["values"] == {
        "prompt": "the cat waves", "duration": "10", "resolution": "480p", "seed": 7,
        "image": {"src": f"/api/jobs/{job.pk}/inputs/image", "file_name": "cat.png", "content_type": "image/png"}}
    assert "Filled in with the settings of an earlier job" in html
    # The upload comes back to its owner only.
    image = logged_in.get(f"/api/jobs/{job.pk}/inputs/image")
    assert image.status_code == 200 and image["Content-Type"] == "image/png"
    assert b"".join(image.streaming_content) == b"\x89PNG fake"
    assert logged_in.get(f"/api/jobs/{job.pk}/inputs/seed").status_code == 404
    assert logged_in.get(f"/api/jobs/{job.pk}/inputs/nothing").status_code == 404
    theirs = Job.objects.create(owner=other_user, backend="fal", model_id="fal-ai/veo3.1", kind="text-to-video",
                                input={"prompt": "private"})
    assert logged_in.get(f"/video-generation/?from={theirs.pk}").status_code == 404
    assert logged_in.get(f"/api/jobs/{theirs.pk}/inputs/image").status_code == 404
    assert logged_in.get("/video-generation/?from=not-a-uuid").status_code == 404
    assert logged_in.get("/video-generation/?from=00000000-0000-0000-0000-000000000000").status_code == 404


def test_the_gallery_says_how_to_fill_it_when_empty(logged_in):
    html = logged_in.get("/gallery/").content.decode()
    assert "No videos yet" in html


def test_the_openapi_schema_describes_the_api(client):
    response = client.get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json")
    assert response.status_code == 200
    schema = json.loads(response.content)
    for path in ("/api/models/", "/api/videos/generate", "/api/fal", "/api/fal/proxy",
                 "/models/video-generation-cloud/"):
        assert path in schema["paths"], path
    docs = client.get("/api/docs/")
    assert docs.status_code == 200 and b"swagger-ui" in docs.content
    assert b"cdn.jsdelivr" not in docs.content  # served by the studio itself (sidecar)


def test_the_schema_documents_error_replies_and_the_proxys_header(client):
    schema = json.loads(client.get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json").content)
    paths = schema["paths"]
    for path, method, codes in [("/api/videos/generate", "post", {"400", "404", "429"}),
                                ("/api/fal", "post", {"400", "429"}),
                                ("/api/fal/proxy", "post", {"400", "403", "404", "429"}),
                                ("/api/models/{model_id}/", "get", {"404"}),
                                ("/models/video-generation-cloud/", "post", {"400", "429", "503"})]:
        documented = set(paths[path][method]["responses"])
        assert codes <= documented, (path, documented)
        reply = paths[path][method]["responses"]["429" if "429" in codes else "404"]
        assert reply["content"]["application/json"]["schema"]["$ref"] == "#/components/schemas/Error"
    assert "error" in schema["components"]["schemas"]["Error"]["properties"]
    header = [p for p in paths["/api/fal/proxy"]["get"]["parameters"] if p["in"] == "header"]
    assert header and header[0]["name"] == "x-fal-target-url" and header[0]["required"] is True


def test_each_price_basis_reads_as_a_sentence(api):
    def basis(model_id: str, **query) -> str:
        response = api.get(f"/api/models/{model_id}/estimate", query)
        assert response.status_code == 200, response.content
        return response.json()["basis"]

    kling = "fal-ai/kling-video/v2.5-turbo/pro/image-to-video"
    assert basis(kling, duration="5") == "$0.35 for up to 5 s"  # not "+ $0.07 x 0 extra s"
    assert basis(kling, duration="10") == "$0.35 for the first 5 s + 5 s more at $0.07/s"
    # seconds that come from frames say so, instead of a bare "x 5.06 s"
    assert basis("fal-ai/wan/v2.2-a14b/image-to-video") == "720p: 81 frames at 16 fps (5.06 s) x $0.08/s"
    assert basis("fal-ai/veo3.1") == "$0.20/s x 8 s"
    assert basis("fal-ai/wan-25-preview/image-to-video", resolution="480p") == "480p at $0.05/s x 5 s"
    assert basis("local/krea-offline") == "no charge: it runs on the studio's own machines"


def test_the_generation_page_has_a_history_and_names_the_cpu_demo(logged_in, settings, tmp_path, monkeypatch):
    from videogen.local.backend import DEMO_NOTE
    from videogen.pages.views import HISTORY_LIMIT

    no_krea_weights(settings, tmp_path, monkeypatch)
    settings.FAL_KEY = "k"
    html = logged_in.get("/video-generation/").content.decode()
    data = page_data(html)
    assert data["history_limit"] == HISTORY_LIMIT
    assert data["statuses"] == {"pending": "Queued", "submitted": "Waiting at the provider", "running": "Generating",
                                "completed": "Done", "failed": "Failed", "cancelled": "Cancelled"}
    demos = {m["id"]: m["demo"] for m in data["models"]}
    assert demos["local/krea-offline"] == DEMO_NOTE and demos["fal-ai/veo3.1"] is None
    assert '<ol class="history-list" id="history" aria-labelledby="history-title"></ol>' in html
    assert '<button type="button" id="retry" hidden>Retry</button>' in html
    assert logged_in.get(f"/api/jobs/?limit={HISTORY_LIMIT}").status_code == 200  # what the list asks for
