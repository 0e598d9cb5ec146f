"""fal's signed webhooks (POST /api/webhooks/fal/): the fake fal delivers them for real to a
relay in this process, which hands the exact bytes and headers to the studio through
Django's test client (and answers fal with the studio's status). Jobs run on the embedded
threads, and on a real Celery worker with Redis and PostgreSQL in the services pass.

With STUDIO_PUBLIC_URL set a job is only polled by the sweep, JOB_WEBHOOK_POLL_INTERVAL (10 s)
after its submit at the earliest, so a job that finishes within a few seconds of fal
completing it was finished by the webhook."""

from __future__ import annotations

import hashlib
import json
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from django.db import connections
from django.test import Client

from model_control import backends, fal_webhook
from model_control.backends import catalog
from model_control.fal_webhook import (
    BadSignature,
    JwksCache,
    KeysUnavailable,
    MalformedWebhook,
    StaleWebhook,
    WebhookVerifier,
)
from tests.conftest import EMBEDDED
from tests.fakes.fal import FakeFal
from tests.fakes.fal_platform import WEBHOOK_USER_ID
from tests.support.jobs import wait_until
from tests.support.processes import celery_worker, worker_env
from videogen.models import Job, Video

pytestmark = [pytest.mark.modes, pytest.mark.django_db(transaction=True)]

T2V = "fal-ai/fast-animatediff/text-to-video"
HOOK = "/api/webhooks/fal/"


class Relay:
    """Receives the fake fal's webhook POSTs and passes them to the studio unchanged."""

    def __init__(self) -> None:
        self.deliveries: list[dict] = []
        self.refuse_next = 0  # answer fal 500 (after forwarding) this many times: fal retries
        self.lock = threading.Lock()
        relay = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                headers = {k: v for k, v in self.headers.items() if k.lower().startswith("x-fal-")}
                try:
                    reply = Client().post(self.path, data=body, content_type=self.headers.get("Content-Type", ""),
                                          headers=headers)
                finally:
                    connections.close_all()
                code = reply.status_code
                with relay.lock:
                    relay.deliveries.append({"body": body, "headers": headers, "status": code,
                                             "reply": reply.json()})
                    if relay.refuse_next > 0:
                        relay.refuse_next -= 1
                        code = 500
                self.send_response(code)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def about(self, request_id: str) -> list[dict]:
        with self.lock:
            return [d for d in self.deliveries if d["headers"].get("X-Fal-Webhook-Request-Id") == request_id]


@pytest.fixture(scope="module")
def relay():
    server = Relay()
    thread = threading.Thread(target=server.server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.server.shutdown()
    server.server.server_close()


@pytest.fixture(scope="module")
def fal_server():
    with FakeFal() as fake:
        yield fake


@pytest.fixture(scope="module")
def worker_media(fal_server, relay, django_db_setup, django_db_blocker, tmp_path_factory):
    """The services pass: one real worker for the module, sharing the test's media folder."""
    if EMBEDDED:
        yield None
        return
    folder = tmp_path_factory.mktemp("media")
    with django_db_blocker.unblock():
        env = {**worker_env(), **fal_server.settings(), "STUDIO_MEDIA_ROOT": str(folder),
               "VIDEO_POLL_INTERVAL": "30", "STUDIO_PUBLIC_URL": relay.url}
    with celery_worker(env, queues="default"):
        yield folder


@pytest.fixture
def fal(fal_server, worker_media, relay, settings):
    for name, value in fal_server.settings().items():
        setattr(settings, name, value)
    settings.VIDEO_POLL_INTERVAL = 30
    settings.STUDIO_PUBLIC_URL = relay.url
    settings.FAL_JWKS_URL = None
    if worker_media is not None:
        settings.MEDIA_ROOT = worker_media
    fal_server.queue_time, fal_server.processing_time = 0.05, 1.5
    fal_server.complete_with_error, fal_server.reject_next = False, 0
    fal_server.webhook_retries, fal_server.webhook_retry_delay = 3, 0.2
    relay.refuse_next = 0
    fal_webhook.shared_cache(jwks_url(fal_server)).clear()
    return fal_server


def jwks_url(fake: FakeFal) -> str:
    return f"{fake.base_url}/rest/.well-known/jwks.json"


def wait_for(predicate, timeout: float = 10) -> bool:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def start(api, prompt: str) -> str:
    response = api.post("/api/jobs/", {"model": T2V, "prompt": prompt}, format="json")
    assert response.status_code == 202, response.content[:300]
    return response.json()["id"]


def signed(key: Ed25519PrivateKey, body: bytes, request_id: str, *, timestamp: int | None = None,
           user_id: str = WEBHOOK_USER_ID) -> dict[str, str]:
    """Headers as fal signs them (docs/protocols.md, "fal queue")."""
    stamp = str(int(time.time()) if timestamp is None else timestamp)
    message = f"{request_id}\n{user_id}\n{stamp}\n{hashlib.sha256(body).hexdigest()}".encode()
    return {"X-Fal-Webhook-Request-Id": request_id, "X-Fal-Webhook-User-Id": user_id,
            "X-Fal-Webhook-Timestamp": stamp, "X-Fal-Webhook-Signature": key.sign(message).hex()}


def webhook_body(request_id: str, status: str = "OK", payload=None, error=None) -> bytes:
    return json.dumps({"request_id": request_id, "gateway_request_id": request_id, "status": status,
                       "payload": payload, "error": error}).encode()


def post(body: bytes, headers: dict[str, str]):
    return Client().post(HOOK, data=body, content_type="application/json", headers=headers)


def snapshot(job_id: str) -> tuple:
    job = Job.objects.get(pk=job_id)
    return job.status, job.status_sequence, job.error_message, job.polls, Video.objects.filter(job=job).count()


# --- end to end: fal's real deliveries ------------------------------------------------------

def test_submissions_carry_the_webhook_url_and_the_webhook_finishes_the_job_before_polling_would(api, fal, relay):
    job_id = start(api, "webhook first")
    submitted = wait_until(api, job_id, statuses=("submitted", "running", "completed", "failed"))
    rid = submitted["provider_request_id"]
    # The job's own URL: it names the job (signed), so a submit answer lost with its worker is found.
    assert fal.requests[rid]["webhook"].startswith(f"{relay.url}{HOOK}?job={job_id}%3A")
    assert wait_for(lambda: fal.requests[rid]["completed_at"] is not None)
    job = wait_until(api, job_id, timeout=10)
    assert job["status"] == "completed", job
    # The next poll was due 5 s after the first one: only the webhook finishes it this soon.
    assert time.time() - fal.requests[rid]["completed_at"] < 3.5
    assert wait_for(lambda: relay.about(rid))
    assert relay.about(rid)[0]["status"] == 200 and relay.about(rid)[0]["reply"] == {"status": "accepted"}
    assert Video.objects.filter(job_id=job_id).count() == 1


def test_a_duplicate_delivery_completes_the_job_once(api, fal, relay):
    relay.refuse_next = 1  # the studio takes the first delivery, fal sees a 500 and retries
    job_id = start(api, "delivered twice")
    rid = wait_until(api, job_id, statuses=("submitted", "running"))["provider_request_id"]
    assert wait_for(lambda: len(relay.about(rid)) >= 2)
    job = wait_until(api, job_id, timeout=10)
    assert job["status"] == "completed", job
    first, second = relay.about(rid)[:2]
    assert first["body"] == second["body"] and first["status"] == second["status"] == 200
    before = snapshot(job_id)
    # A third copy, replayed byte for byte (signed moments ago), after the job finished.
    replayed = post(second["body"], second["headers"])
    assert replayed.status_code == 200 and replayed.json() == {"status": "ignored"}
    time.sleep(0.3)
    assert snapshot(job_id) == before and before[-1] == 1
    assert Video.objects.filter(owner__username="alice").count() == 1


def test_an_error_webhook_fails_the_job_with_fals_message(api, fal, relay):
    fal.complete_with_error = True
    job_id = start(api, "fails at fal")
    rid = wait_until(api, job_id, statuses=("submitted", "running"))["provider_request_id"]
    job = wait_until(api, job_id, timeout=10)
    assert job["status"] == "failed", job
    assert job["error_type"] == "failed"  # from the webhook (a poll would say "rejected")
    assert "Prompt is not allowed" in job["error_message"]
    assert wait_for(lambda: relay.about(rid)) and relay.about(rid)[0]["reply"] == {"status": "accepted"}
    assert not Video.objects.filter(job_id=job_id).exists()


def test_an_error_webhook_naming_fields_keeps_them(api, fal):
    fal.processing_time = 30
    job_id = start(api, "rejected by fields")
    rid = wait_until(api, job_id, statuses=("submitted", "running"))["provider_request_id"]
    detail = [{"loc": ["body", "prompt"], "msg": "field required", "type": "value_error.missing"}]
    body = webhook_body(rid, "ERROR", payload={"detail": detail}, error="Invalid status code: 422")
    assert post(body, signed(fal.signing_key, body, rid)).json() == {"status": "accepted"}
    job = Job.objects.get(pk=job_id)
    assert job.status == "failed" and job.error_type == "rejected"
    assert job.error_details == [{"field": "prompt", "message": "field required"}]
    assert "prompt: field required" in job.error_message


def test_refused_deliveries_change_nothing(api, fal):
    fal.processing_time = 30  # fal holds the job: its own webhook comes only when cancelled
    job_id = start(api, "held at fal")
    rid = wait_until(api, job_id, statuses=("submitted", "running"))["provider_request_id"]
    # With a webhook coming, the first safety poll is JOB_WEBHOOK_POLL_INTERVAL away: the job holds still.
    before = snapshot(job_id)
    body = webhook_body(rid)
    key = fal.signing_key
    now = int(time.time())
    forged = Ed25519PrivateKey.generate()
    good = signed(key, body, rid)
    cases = [
        ("another key", body, signed(forged, body, rid), 401, "bad_signature"),
        ("another body", webhook_body(rid, "ERROR", error="forged"), good, 401, "bad_signature"),
        ("another user", body, {**good, "X-Fal-Webhook-User-Id": "someone"}, 401, "bad_signature"),
        ("stale", body, signed(key, body, rid, timestamp=now - 360), 401, "stale"),
        # A minute past the 300 s allowed: the cases take seconds on a slow machine.
        ("from the future", body, signed(key, body, rid, timestamp=now + 360), 401, "stale"),
        ("not a number", body, {**good, "X-Fal-Webhook-Timestamp": "soon"}, 400, "malformed"),
        ("not hex", body, {**good, "X-Fal-Webhook-Signature": "zz" * 64}, 400, "malformed"),
        ("short", body, {**good, "X-Fal-Webhook-Signature": "ab" * 10}, 400, "malformed"),
        ("other request", webhook_body(str(uuid.uuid4())),
         signed(key, webhook_body(str(uuid.uuid4())), rid), 401, "bad_signature"),
        ("not JSON", b"{nope", signed(key, b"{nope", rid), 400, "malformed"),
        ("no status", b"{}", signed(key, b"{}", rid), 400, "malformed"),
    ]
    other = str(uuid.uuid4())
    mismatched = webhook_body(other)
    cases.append(("body about another request", mismatched, signed(key, mismatched, rid), 400, "malformed"))
    for header in good:
        cases.append((f"no {header}", body, {k: v for k, v in good.items() if k != header}, 400, "malformed"))
    for name, sent, headers, code, kind in cases:
        response = post(sent, headers)
        assert response.status_code == code, (name, response.content)
        assert response.json()["error_type"] == kind and response.json()["error"], name
    assert Client().get(HOOK).status_code == 405
    assert snapshot(job_id) == before
    # The genuine one still works, once.
    assert post(body, good).json() == {"status": "accepted"}
    api.post(f"/api/jobs/{job_id}/cancel")


def test_an_unknown_request_id_is_answered_200_ignored(fal):
    rid = str(uuid.uuid4())
    body = webhook_body(rid)
    response = post(body, signed(fal.signing_key, body, rid))
    assert response.status_code == 200 and response.json() == {"status": "ignored"}
    assert not Job.objects.exists()


def test_a_rotated_key_is_fetched_again(fal, monkeypatch):
    rid = str(uuid.uuid4())
    body = webhook_body(rid)
    cache = fal_webhook.shared_cache(jwks_url(fal))
    assert post(body, signed(fal.signing_key, body, rid)).status_code == 200
    fetches = cache.fetches
    monkeypatch.setattr(fal, "signing_key", Ed25519PrivateKey.generate())  # fal rotates its key
    # Fetched less than 10 s ago: no refetch yet (forgeries cannot make the studio hammer fal).
    assert post(body, signed(fal.signing_key, body, rid)).status_code == 401
    assert cache.fetches == fetches
    monkeypatch.setattr(cache, "min_refetch_interval", 0)
    response = post(body, signed(fal.signing_key, body, rid))
    assert response.status_code == 200 and response.json() == {"status": "ignored"}
    assert cache.fetches == fetches + 1
    assert post(body, signed(fal.signing_key, body, rid)).status_code == 200
    assert cache.fetches == fetches + 1  # cached again
    cache.clear()


def test_unreachable_keys_answer_503_so_fal_retries(fal, settings):
    settings.FAL_JWKS_URL = "http://127.0.0.1:9/.well-known/jwks.json"
    rid = str(uuid.uuid4())
    body = webhook_body(rid)
    response = post(body, signed(fal.signing_key, body, rid))
    assert response.status_code == 503 and response.json()["error_type"] == "keys_unavailable"


def test_submit_sends_the_webhook_url_only_when_given(fal, relay):
    model = catalog().require(T2V)
    values = model.clean({"prompt": "direct"})
    fal_backend = backends.backend_of(model)
    plain = fal_backend.submit(model, values, timeout=10)
    hooked = fal_backend.submit(model, values, timeout=10, webhook_url=f"{relay.url}{HOOK}?studio=1")
    assert fal.requests[plain.request_id]["webhook"] is None
    assert fal.requests[hooked.request_id]["webhook"] == f"{relay.url}{HOOK}?studio=1"  # exactly, once encoded
    for submitted in (plain, hooked):
        fal_backend.cancel(model, submitted.request_id)


def test_a_submit_answer_lost_with_its_worker_is_found_by_the_webhook_naming_the_job(api, fal, relay, user):
    """The worker died inside fal's submit call: fal has the paid request, the job has no id.
    The webhook URL carried the job (signed), so fal's webhook gives the job its request and
    it completes; a job named with a bad signature is left alone."""
    from django.utils import timezone

    from videogen.jobs import services

    def lost(prompt: str) -> Job:
        return Job.objects.create(owner=user, backend="fal", model_id=T2V, kind="text-to-video",
                                  input={"prompt": prompt}, submit_started_at=timezone.now(), attempts=1)

    model = catalog().require(T2V)
    orphan, forged = lost("answer lost"), lost("named by a forger")
    hook = f"{relay.url}{HOOK}"
    backends.backend_of(model).submit(model, model.clean({"prompt": "answer lost"}), timeout=10,
                                      webhook_url=services.job_webhook_url(hook, orphan.pk))
    other = backends.backend_of(model).submit(model, model.clean({"prompt": "forged"}), timeout=10,
                                              webhook_url=f"{hook}?job={forged.pk}%3Anot-our-signature")
    job = wait_until(api, str(orphan.pk), timeout=20)
    assert job["status"] == "completed" and job["provider_request_id"] in fal.requests, job
    assert any("its submit answer was lost" in line for line in job["logs_tail"])
    assert wait_for(lambda: relay.about(other.request_id))
    assert relay.about(other.request_id)[0]["reply"] == {"status": "ignored"}
    forged.refresh_from_db()
    assert forged.status == "pending" and not forged.provider_request_id


# --- the verifier on its own: injected clock and keys ---------------------------------------

class Keys:
    """A JWKS endpoint in memory: ``session.get`` answers the current keys."""

    def __init__(self, *keys: Ed25519PrivateKey):
        self.keys = list(keys)
        self.status = 200
        self.gets = 0

    def jwks(self) -> dict:
        def x(key):
            import base64

            raw = key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
            return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()

        return {"keys": [{"kty": "RSA", "n": "x", "e": "AQAB"},
                         *({"kty": "OKP", "crv": "Ed25519", "x": x(k)} for k in self.keys)]}

    def get(self, url, timeout=None):
        self.gets += 1
        keys = self

        class Answer:
            status_code = keys.status
            ok = keys.status == 200

            @staticmethod
            def json():
                return keys.jwks()

        return Answer()


class Clock:
    def __init__(self, now: float = 1_700_000_000.0):
        self.now = now

    def __call__(self) -> float:
        return self.now


def verifier(keys: Keys, clock: Clock, **cache_args) -> WebhookVerifier:
    return WebhookVerifier(JwksCache("https://fal.test/jwks", session=keys, clock=clock, **cache_args),
                           max_skew=300, clock=clock)


def test_the_verifier_checks_skew_both_ways_at_the_edge():
    key, clock = Ed25519PrivateKey.generate(), Clock()
    check = verifier(Keys(key), clock)
    body = webhook_body("r1")
    assert check.verify(signed(key, body, "r1", timestamp=int(clock.now) - 300), body).ok
    assert check.verify(signed(key, body, "r1", timestamp=int(clock.now) + 300), body).request_id == "r1"
    with pytest.raises(StaleWebhook):
        check.verify(signed(key, body, "r1", timestamp=int(clock.now) - 301), body)
    with pytest.raises(StaleWebhook):
        check.verify(signed(key, body, "r1", timestamp=int(clock.now) + 301), body)
    lowercase = {k.lower(): v for k, v in signed(key, body, "r1", timestamp=int(clock.now)).items()}
    assert check.verify(lowercase, body).user_id == WEBHOOK_USER_ID


def test_the_key_cache_expires_refetches_on_rotation_at_most_every_interval_and_accepts_any_key():
    old, new, clock = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate(), Clock()
    keys = Keys(old)
    check = verifier(keys, clock, ttl=3600, min_refetch_interval=10)
    body = webhook_body("r2")
    stamp = int(clock.now)
    assert check.verify(signed(old, body, "r2", timestamp=stamp), body).ok and keys.gets == 1
    keys.keys = [new]
    with pytest.raises(BadSignature):  # fetched just now: no refetch yet
        check.verify(signed(new, body, "r2", timestamp=stamp), body)
    assert keys.gets == 1
    clock.now += 11
    assert check.verify(signed(new, body, "r2", timestamp=int(clock.now)), body).ok and keys.gets == 2
    with pytest.raises(BadSignature):  # a forged one right after: refused without a fetch
        check.verify(signed(old, body, "r2", timestamp=int(clock.now)), body)
    assert keys.gets == 2
    keys.keys = [old, new]  # both published during a rotation
    clock.now += 3600
    assert check.verify(signed(old, body, "r2", timestamp=int(clock.now)), body).ok and keys.gets == 3
    assert check.verify(signed(new, body, "r2", timestamp=int(clock.now)), body).ok and keys.gets == 3


def test_an_unreachable_or_empty_jwks_is_keys_unavailable():
    key, clock = Ed25519PrivateKey.generate(), Clock()
    keys = Keys(key)
    keys.status = 502
    body = webhook_body("r3")
    with pytest.raises(KeysUnavailable):
        verifier(keys, clock).verify(signed(key, body, "r3", timestamp=int(clock.now)), body)
    keys.status, keys.keys = 200, []
    with pytest.raises(KeysUnavailable):
        verifier(keys, clock).verify(signed(key, body, "r3", timestamp=int(clock.now)), body)


def test_malformed_headers_are_refused_before_any_key_is_fetched():
    key, clock = Ed25519PrivateKey.generate(), Clock()
    keys = Keys(key)
    check = verifier(keys, clock)
    body = webhook_body("r4")
    good = signed(key, body, "r4", timestamp=int(clock.now))
    for broken in ({}, {**good, "X-Fal-Webhook-Timestamp": "-5"}, {**good, "X-Fal-Webhook-Timestamp": "1e9"},
                   {**good, "X-Fal-Webhook-Signature": ""}, {**good, "X-Fal-Webhook-Request-Id": "x" * 600}):
        with pytest.raises(MalformedWebhook):
            check.verify(broken, body)
    assert keys.gets == 0


def test_from_settings_defaults_the_jwks_url_to_the_rest_host(settings):
    settings.FAL_REST_URL, settings.FAL_JWKS_URL = "https://rest.example.test/", None
    settings.FAL_WEBHOOK_MAX_SKEW = 120
    check = fal_webhook.from_settings(settings)
    assert check.jwks.url == "https://rest.example.test/.well-known/jwks.json" and check.max_skew == 120
    settings.FAL_JWKS_URL = "https://keys.example.test/jwks.json"
    assert fal_webhook.from_settings(settings).jwks.url == "https://keys.example.test/jwks.json"
