"""The studio's pages, the API schema and its docs."""

from __future__ import annotations

import json
import re

import pytest

pytestmark = pytest.mark.django_db


def test_home_shows_each_backend_and_whether_it_is_configured(logged_in, settings):
    settings.FAL_KEY = "k"
    settings.CLOUD_VIDEO_GENERATION_URL = None
    html = logged_in.get("/").content.decode()
    rows = dict(re.findall(r"<tr>\s*<td>([^<]+)</td>.*?<span class=\"(ok|warn)\"", html, re.S))
    # The pipeline package is here with its tiny random-weights configuration: it can run.
    assert rows == {"fal.ai queue": "ok", "fal.ai realtime": "ok", "Tenstorrent cloud": "warn",
                    "Local Krea realtime pipeline": "ok"}
    assert "set CLOUD_VIDEO_GENERATION_URL" in html
    assert 'aria-current="page">Home<' in html


def test_the_local_pipeline_is_ready_only_with_its_package_and_weights_or_demo_config(settings, tmp_path,
                                                                                      monkeypatch):
    import importlib.util
    import sys
    import types

    from model_control import backends
    from model_control.catalog import catalog

    local = catalog().get("local/krea-realtime")
    monkeypatch.setattr(backends, "LOCAL_PIPELINE_PACKAGE", "videogen.no_such_pipeline")
    assert backends.missing(local) == "the local pipeline is not built into this studio yet"
    monkeypatch.setattr(backends, "LOCAL_PIPELINE_PACKAGE", "videogen.pipeline_under_test")
    package = types.ModuleType(backends.LOCAL_PIPELINE_PACKAGE)
    package.__spec__ = importlib.util.spec_from_loader(package.__name__, loader=None)
    monkeypatch.setitem(sys.modules, package.__name__, package)
    settings.MODELS_DIR = tmp_path
    assert "no weights" in backends.missing(local)
    weights = tmp_path / backends.LOCAL_WEIGHTS_DIR
    weights.mkdir()
    (weights / "model.safetensors").write_bytes(b"")
    assert backends.configured(local)
    (weights / "model.safetensors").unlink()
    package.TINY_CONFIG = object()
    assert backends.configured(local)


def test_the_generation_page_offers_every_non_realtime_model(logged_in):
    response = logged_in.get("/video-generation/")
    html = response.content.decode()
    models = json.loads(re.search(r'<script id="models-data" type="application/json">(.*?)</script>', html, re.S).group(1))
    ids = {m["id"] for m in models}
    assert "fal-ai/veo3.1" in ids and "tenstorrent/wan2.2-t2v" in ids
    assert "fal-ai/krea-wan-14b" not in ids
    assert 'aria-current="page">Video Generation<' in html


def test_the_realtime_page_knows_where_to_stream_from_but_not_the_key(logged_in, settings):
    settings.FAL_KEY = "sk-very-secret"
    settings.FAL_REALTIME_URL = "ws://127.0.0.1:9001"
    html = logged_in.get("/realtime/").content.decode()
    assert '"ws://127.0.0.1:9001"' in html
    assert "sk-very-secret" not in html


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
