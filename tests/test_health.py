"""GET /health: 200 when every configured part answers, 503 naming the part that does not."""

from __future__ import annotations

import pytest
from django.conf import settings

from tests.support.processes import celery_worker, redis_server, worker_env

pytestmark = [pytest.mark.modes, pytest.mark.django_db]


@pytest.fixture
def staff(client, django_user_model):
    """Staff see every part's details; everyone else sees only status and failing."""
    client.force_login(django_user_model.objects.create_user("ops", password="ops-password-1", is_staff=True))
    return client


def test_anonymous_callers_and_users_see_only_status_and_failing(client, user):
    anonymous = client.get("/health")
    assert anonymous.json() == {"status": "ok" if anonymous.status_code == 200 else "error",
                                "failing": anonymous.json()["failing"]}
    client.force_login(user)
    assert set(client.get("/health").json()) == {"status", "failing"}


def test_a_missing_gpu_is_not_a_failure_unless_required(staff, settings):
    settings.STUDIO_REQUIRE_GPU = False
    body = staff.get("/health").json()
    assert "gpu" not in body["failing"]


def test_it_answers_without_login_and_reports_every_part(staff):
    client = staff
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


def test_it_fails_when_a_gpu_is_required_and_there_is_none(staff, settings):
    client = staff
    settings.STUDIO_REQUIRE_GPU = True
    body = client.get("/health").json()
    if body["gpu"].get("cuda") or body["gpu"].get("gpu_workers"):
        pytest.skip("this machine has a GPU")
    assert "gpu" in body["failing"]


@pytest.mark.services
def test_it_names_the_workers_when_none_consumes_the_default_queue(staff, settings):
    client = staff
    with redis_server() as url:
        settings.REDIS_URL = url
        response = client.get("/health")
    assert response.status_code == 503
    assert response.json()["failing"] == ["workers"]
    assert "default" in response.json()["workers"]["error"]


@pytest.mark.services
@pytest.mark.django_db(transaction=True)
def test_it_is_healthy_with_a_worker_then_names_redis_when_redis_stops(staff, settings):
    client = staff
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


@pytest.mark.services
def test_without_redis_the_gpu_is_unknown_but_only_redis_and_workers_fail(staff, settings):
    with redis_server() as url:
        settings.REDIS_URL = url
    body = staff.get("/health").json()  # that redis-server has stopped
    assert body["gpu"]["status"] == "unknown"
    assert body["failing"] == ["redis", "workers"]


@pytest.mark.services
@pytest.mark.django_db(transaction=True)
def test_fifty_concurrent_health_checks_all_answer_quickly_and_it_answers_afterwards(tmp_path):
    """The burst that exhausted the broker pool: 50 anonymous /health at once on a real daphne."""
    import subprocess
    import sys
    import time
    from concurrent.futures import ThreadPoolExecutor

    import requests

    from tests.support.processes import ROOT, free_port, stop, wait_http

    env = {**worker_env(), "STUDIO_DATA_DIR": str(tmp_path), "HEALTH_TIMEOUT": "2"}
    port = free_port()
    with celery_worker(env):
        daphne = subprocess.Popen([sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(port),
                                   "studio.asgi:application"], cwd=ROOT, env={**__import__("os").environ, **env},
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            base = f"http://127.0.0.1:{port}"
            wait_http(f"{base}/health", timeout=60)

            def one(_):
                started = time.monotonic()
                response = requests.get(f"{base}/health", timeout=10)
                return response.status_code, time.monotonic() - started, response.json()

            started = time.monotonic()
            with ThreadPoolExecutor(50) as pool:
                results = list(pool.map(one, range(50)))
            elapsed = time.monotonic() - started
            after = requests.get(f"{base}/health", timeout=5)
        finally:
            stop(daphne)
    assert elapsed < 5, f"50 concurrent /health took {elapsed:.1f} s"
    assert all(status == 200 for status, _, _ in results), results[:3]
    assert all(set(body) == {"status", "failing"} for _, _, body in results)
    assert after.status_code == 200
