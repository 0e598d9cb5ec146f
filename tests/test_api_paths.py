"""The API's paths as clients write them (i2v's, with ``/api`` as the base URL): every route
with and without its trailing slash, for every method, and never a redirect (a 301 that a
client follows as a GET drops a POST silently); ``/api/health`` as ``/health``; a 404 under
the API is JSON, pages keep the studio's 404 page."""

from __future__ import annotations

import re
import uuid

import pytest
from django.urls import URLResolver, get_resolver

from tests.support.jobs import wait_until

pytestmark = pytest.mark.django_db(transaction=True)

T2V = "fal-ai/fast-animatediff/text-to-video"
METHODS = ("get", "post", "put", "patch", "delete")
REDIRECTS = {301, 302, 307, 308}


def api_routes() -> list[str]:
    """Every route under /api/ and /fal/ as a path, each converter filled with a sample value."""
    samples = {"uuid": str(uuid.uuid4()), "path": "fal-ai/veo3.1", "str": "thing", "int": "1"}
    routes = []
    for prefix in ("api/", "fal/"):
        resolver = next(r for r in get_resolver().url_patterns
                        if isinstance(r, URLResolver) and str(r.pattern) == prefix)
        for pattern in resolver.url_patterns:
            route = re.sub(r"<(\w+):\w+>", lambda m: samples[m[1]], str(pattern.pattern))
            routes.append(f"/{prefix}{route}")
    return routes


def test_every_api_route_answers_with_and_without_its_slash_and_never_redirects(api):
    routes = api_routes()
    assert "/api/jobs/" in routes and "/api/jobs" in routes and "/fal/tokens" in routes
    for route in routes:
        for method in METHODS:
            response = getattr(api, method)(route, {}, format="json")
            assert response.status_code not in REDIRECTS, (method, route, response.status_code)
            assert response.status_code != 404 or response["Content-Type"].startswith("application/json"), route


def test_a_job_is_created_read_and_deleted_without_the_slash(api, fake_fal, settings):
    settings.VIDEO_POLL_INTERVAL = 0.05
    created = api.post("/api/jobs", {"model": T2V, "prompt": "posted without a slash"}, format="json")
    assert created.status_code == 202, created.content
    job_id = created.json()["id"]
    assert wait_until(api, job_id)["status"] == "completed"
    slashed = api.post("/api/jobs/", {"model": T2V, "prompt": "posted with a slash"}, format="json")
    assert slashed.status_code == 202
    assert wait_until(api, slashed.json()["id"])["status"] == "completed"
    assert sum(1 for r in fake_fal.requests.values() if r["input"]["prompt"].startswith("posted")) == 2
    for path in ("/api/jobs", "/api/jobs/", "/api/jobs?status=completed&limit=1&offset=0"):
        listed = api.get(path)
        assert listed.status_code == 200 and listed.json()["results"], path
    assert api.get(f"/api/jobs/{job_id}").json()["id"] == job_id
    assert api.get(f"/api/jobs/{job_id}/").json()["id"] == job_id
    assert api.delete(f"/api/jobs/{job_id}").status_code == 204
    assert api.delete(f"/api/jobs/{slashed.json()['id']}/").status_code == 204
    assert api.get(f"/api/jobs/{job_id}").status_code == 404


def test_api_health_answers_as_health(client):
    plain = client.get("/health")
    for path in ("/api/health", "/api/health/"):
        response = client.get(path)
        assert response.status_code == plain.status_code
        assert response.json().keys() == plain.json().keys()


@pytest.mark.parametrize(("method", "path"), [
    *((method, path) for method in ("get", "post", "delete")
      for path in ("/api/nope", "/api/nope/", "/api", "/api/jobs/not-a-uuid", "/api/jobs/x/y/z", "/fal/nope",
                   "/fal/tokens/extra")),
    ("get", f"/api/jobs/{uuid.uuid4()}"), ("delete", f"/api/jobs/{uuid.uuid4()}/"),
])
def test_a_404_under_the_api_is_json(api, path, method):
    response = getattr(api, method)(path)
    assert response.status_code == 404
    assert response["Content-Type"] == "application/json"
    assert response.json()["error"]


def test_pages_keep_the_studios_404_page(logged_in):
    response = logged_in.get("/no-such-page/")
    assert response.status_code == 404 and response["Content-Type"].startswith("text/html")
    assert [t.name for t in response.templates][0] == "404.html"
    assert logged_in.get("/gallery").status_code == 301  # pages still gain their slash
