"""Every API error is JSON with an ``error`` message: the bodies Django refuses before DRF reads
them (too large, too many fields), and outages (the database or Redis down: a 503 naming
it). Pages keep their HTML error pages.
"""

from __future__ import annotations

import hashlib
import json
import time
from urllib.parse import urlencode

import pytest
from django.core.handlers.exception import convert_exception_to_response
from django.db import OperationalError, connection
from django.test import Client, RequestFactory
from redis.exceptions import ConnectionError as RedisConnectionError

from studio.middleware import JsonApiErrorsMiddleware
from tests.fakes.fal_platform import WEBHOOK_USER_ID
from tests.support.processes import free_port
from videogen.models import Job

pytestmark = pytest.mark.modes

FAST = "fal-ai/fast-animatediff/text-to-video"


def assert_json_error(response, status: int, *words: str) -> dict:
    assert response.status_code == status, (response.status_code, response.content[:300])
    assert response["Content-Type"].startswith("application/json"), response["Content-Type"]
    body = json.loads(response.content)
    for word in words:
        assert word in body["error"], body
    return body


# --- bodies Django refuses ----------------------------------------------------------------------

@pytest.mark.django_db
@pytest.mark.parametrize("megabytes", [3, 60])
def test_a_json_body_past_the_upload_limit_is_a_json_413(api, fake_fal, megabytes):
    body = json.dumps({"model": FAST, "prompt": "x" * (megabytes * 2**20)})
    response = api.generic("POST", "/api/jobs/", body, content_type="application/json")
    assert_json_error(response, 413, "DATA_UPLOAD_MAX_MEMORY_SIZE")
    assert Job.objects.count() == 0 and fake_fal.calls == []


@pytest.mark.django_db
def test_a_form_field_past_the_upload_limit_is_a_json_413(api, fake_fal):
    response = api.post("/api/jobs/", {"model": FAST, "prompt": "x" * (3 * 2**20)}, format="multipart")
    assert_json_error(response, 413, "DATA_UPLOAD_MAX_MEMORY_SIZE")


@pytest.mark.django_db
@pytest.mark.parametrize("fmt", ["multipart", "urlencoded"])
def test_a_form_of_too_many_fields_is_a_json_400(api, fake_fal, fmt):
    fields = {"model": FAST, "prompt": "p", **{f"extra{n}": "1" for n in range(1500)}}
    if fmt == "multipart":
        response = api.post("/api/jobs/", fields, format="multipart")
    else:
        response = api.generic("POST", "/api/jobs/", urlencode(fields),
                               content_type="application/x-www-form-urlencoded")
    assert_json_error(response, 400, "DATA_UPLOAD_MAX_NUMBER_FIELDS")
    assert Job.objects.count() == 0


@pytest.mark.django_db
def test_the_tt_studio_door_answers_json_too(api, fake_tt):
    body = json.dumps({"prompt": "x" * (3 * 2**20)})
    response = api.generic("POST", "/models/video-generation-cloud/", body, content_type="application/json")
    assert_json_error(response, 413)
    assert fake_tt.calls == []


@pytest.mark.django_db
def test_pages_keep_their_html_error_pages(client):
    response = client.post("/accounts/login/", urlencode({f"f{n}": "1" for n in range(1500)}),
                           content_type="application/x-www-form-urlencoded")
    assert response.status_code == 400
    assert response["Content-Type"].startswith("text/html")


def test_djangos_own_error_pages_under_the_api_become_json():
    request = RequestFactory().get("/api/jobs/")

    def html_page(request):
        from django.http import HttpResponse

        return HttpResponse("<h1>Bad Request (400)</h1>", status=400, content_type="text/html")

    body = assert_json_error(JsonApiErrorsMiddleware(html_page)(request), 400)
    assert body["error_type"] == "bad_request"
    page = JsonApiErrorsMiddleware(html_page)(RequestFactory().get("/gallery/"))
    assert page["Content-Type"].startswith("text/html")


# --- outages --------------------------------------------------------------------------------------

@pytest.fixture
def database_down(monkeypatch):
    """Every new database connection is refused, as when PostgreSQL is stopped: Django raises
    the driver's OperationalError (wrapped in django.db.OperationalError)."""
    def refuse(*args, **kwargs):
        raise connection.Database.OperationalError("connection refused: the test stopped the database")

    connection.close()
    monkeypatch.setattr(connection, "get_new_connection", refuse)


@pytest.fixture
def redis_down(settings):
    """The cache (throttles, slots, lockouts) on a Redis port where nothing listens."""
    settings.CACHES = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache",
                                   "LOCATION": f"redis://127.0.0.1:{free_port()}/0",
                                   "OPTIONS": {"socket_connect_timeout": 1, "socket_timeout": 1}}}


@pytest.mark.django_db(transaction=True)
def test_the_api_answers_a_json_503_naming_the_database_when_it_is_down(api, fake_fal, database_down):
    for response in (api.post("/api/jobs/", {"model": FAST, "prompt": "p"}, format="json"), api.get("/api/jobs/"),
                     api.post("/models/video-generation-cloud/", {"prompt": "p"}, format="json")):
        body = assert_json_error(response, 503, "database")
        assert body["unavailable"] == "database" and int(response["Retry-After"]) > 0
    assert fake_fal.calls == []


@pytest.mark.django_db(transaction=True)
def test_the_fal_webhook_answers_a_json_503_when_the_database_is_down(fake_fal, settings, database_down):
    settings.FAL_JWKS_URL = None  # the fake's own keys, at FAL_REST_URL
    request_id = "0f3c2a55-8a7e-4c1e-9a39-0b1f1d8b2c11"
    body = json.dumps({"request_id": request_id, "status": "OK", "payload": {}}).encode()
    stamp = str(int(time.time()))
    message = f"{request_id}\n{WEBHOOK_USER_ID}\n{stamp}\n{hashlib.sha256(body).hexdigest()}".encode()
    headers = {"X-Fal-Webhook-Request-Id": request_id, "X-Fal-Webhook-User-Id": WEBHOOK_USER_ID,
               "X-Fal-Webhook-Timestamp": stamp, "X-Fal-Webhook-Signature": fake_fal.signing_key.sign(message).hex()}
    response = Client().post("/api/webhooks/fal/", data=body, content_type="application/json", headers=headers)
    assert_json_error(response, 503, "database")  # fal retries a 5xx


@pytest.mark.django_db
def test_a_create_is_kept_while_the_cache_is_down(api, fake_fal, redis_down, caplog):
    """Redis down takes the cache (the hourly rate, throttles) with it: the job is created and
    runs all the same (202), the rate is not enforced for the while, and the log says so."""
    response = api.post("/api/jobs/", {"model": FAST, "prompt": "p"}, format="json")
    assert response.status_code == 202, response.content[:300]
    assert Job.objects.filter(pk=response.json()["id"]).exists()
    assert "the generation rate is not enforced" in caplog.text


def test_a_redis_failure_under_the_api_is_a_json_503_naming_redis():
    def cache_read_while_redis_is_down(request):
        raise RedisConnectionError("Error 111 connecting to 127.0.0.1:6379. Connection refused.")

    inner = convert_exception_to_response(cache_read_while_redis_is_down)
    response = JsonApiErrorsMiddleware(inner)(RequestFactory().post("/api/jobs/"))
    body = assert_json_error(response, 503, "Redis")
    assert body["unavailable"] == "redis" and int(response["Retry-After"]) > 0


def test_an_outage_outside_drf_is_a_json_503_too():
    """Django answers an exception raised in middleware with its HTML 500 page; under the API
    the page becomes the same JSON 503."""
    def session_saved_while_the_database_is_down(request):
        raise OperationalError("server closed the connection unexpectedly")

    inner = convert_exception_to_response(session_saved_while_the_database_is_down)
    response = JsonApiErrorsMiddleware(inner)(RequestFactory().post("/api/jobs/"))
    assert assert_json_error(response, 503, "database")["unavailable"] == "database"
    other = convert_exception_to_response(lambda request: 1 / 0)
    assert_json_error(JsonApiErrorsMiddleware(other)(RequestFactory().get("/api/jobs/")), 500)
