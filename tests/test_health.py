"""GET /health: 200 when every configured part answers, 503 naming the part that does not."""

from __future__ import annotations

import pytest
from django.conf import settings

from tests.support.processes import celery_worker, redis_server, worker_env

pytestmark = [pytest.mark.modes, pytest.mark.django_db]


def test_it_answers_without_login_and_reports_every_part(client):
    response = client.get("/health")
    body = response.json()
    assert set(body) >= {"status", "database", "redis", "workers", "gpu", "version", "failing"}
    assert body["version"] == settings.STUDIO_VERSION
    assert body["database"]["status"] == "ok"
    assert body["database"]["vendor"] == ("sqlite" if settings.STUDIO_EMBEDDED else "postgresql")
    if settings.STUDIO_EMBEDDED:
        assert response.status_code == 200
        assert body["status"] == "ok" and body["failing"] == []
        assert body["redis"]["status"] == "not configured"
        assert body["workers"] == {"status": "ok", "embedded": True, "threads": {"default": 2, "gpu": 1}}
        assert body["gpu"]["status"] in ("ok", "not configured")
    else:
        assert body["redis"]["status"] == "ok"


def test_it_fails_when_a_gpu_is_required_and_there_is_none(client, settings):
    settings.STUDIO_REQUIRE_GPU = True
    body = client.get("/health").json()
    if body["gpu"].get("cuda") or body["gpu"].get("gpu_workers"):
        pytest.skip("this machine has a GPU")
    assert "gpu" in body["failing"]


@pytest.mark.services
def test_it_names_the_workers_when_none_consumes_the_default_queue(client, settings):
    with redis_server() as url:
        settings.REDIS_URL = url
        response = client.get("/health")
    assert response.status_code == 503
    assert response.json()["failing"] == ["workers"]
    assert "default" in response.json()["workers"]["error"]


@pytest.mark.services
@pytest.mark.django_db(transaction=True)
def test_it_is_healthy_with_a_worker_then_names_redis_when_redis_stops(client, settings):
    with redis_server() as url:
        settings.REDIS_URL = url
        with celery_worker({**worker_env(), "REDIS_URL": url}):
            healthy = client.get("/health")
    stopped = client.get("/health")  # redis-server has stopped now
    assert healthy.status_code == 200, str(healthy.json())
    body = healthy.json()
    assert body["redis"]["status"] == "ok"
    assert any("default" in queues for queues in body["workers"]["workers"].values())
    assert body["gpu"]["gpu_workers"], "the test worker consumes the gpu queue too"
    assert stopped.status_code == 503
    body = stopped.json()
    assert body["status"] == "error"
    assert "redis" in body["failing"]
    assert body["redis"]["status"] == "error" and "Redis does not answer" in body["redis"]["error"]
    assert body["database"]["status"] == "ok"
