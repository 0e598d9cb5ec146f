"""/api/fal/proxy: the key goes only to fal's queue, and only for what the user may do there.

Every trick below aims the proxy at a loopback listener standing in for an attacker's
server: the listener must never see a connection (it would receive ``Authorization: Key``).
"""

from __future__ import annotations

import json
import socket
import threading

import pytest
from django.test import Client
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

pytestmark = pytest.mark.django_db

APP = "fal-ai/fast-animatediff/text-to-video"


class Listener:
    """A TCP server on loopback that counts the connections it gets (and answers none)."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(50)
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.connections = 0
        self.running = True
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while self.running:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            self.connections += 1
            conn.close()

    def close(self) -> None:
        self.running = False
        self.thread.join(2)
        self.sock.close()


@pytest.fixture
def listener():
    server = Listener()
    yield server
    server.close()


def tricks(evil: int, fal_host: str) -> list[str]:
    """Target URLs that try to reach 127.0.0.1:``evil`` while looking like ``fal_host``."""
    path = f"/{APP}"
    return [
        f"http://127.0.0.1:{evil}\\@{fal_host}{path}",
        f"https://127.0.0.1:{evil}\\@{fal_host}{path}",
        f"http://127.0.0.1:{evil}%5c@{fal_host}{path}",
        f"http://127.0.0.1:{evil}%5C@{fal_host}{path}",
        f"http://{fal_host}@127.0.0.1:{evil}{path}",
        f"http://user:pass@127.0.0.1:{evil}{path}",
        f"http://{fal_host}:x@127.0.0.1:{evil}{path}",
        f"http://127.0.0.1:{evil}#@{fal_host}{path}",
        f"http://127.0.0.1:{evil}?@{fal_host}{path}",
        f"http://127.0.0.1:{evil}/{fal_host}{path}",
        f"http://[::1]:{evil}{path}",
        f"http://[::ffff:127.0.0.1]:{evil}{path}",
        f"http://[::ffff:7f00:1]:{evil}{path}",
        f"http://2130706433:{evil}{path}",
        f"http://0x7f000001:{evil}{path}",
        f"http://0x7f.0.0.1:{evil}{path}",
        f"http://0177.0.0.1:{evil}{path}",
        f"http://127.1:{evil}{path}",
        f"HTTP://127.0.0.1:{evil}{path}",
        f"http://LocalHost:{evil}{path}",
        f"http://localhost.:{evil}{path}",
        f"http://127.0.0.1.:{evil}{path}",
        f"//127.0.0.1:{evil}{path}",
        f"http:/127.0.0.1:{evil}{path}",
        f"http:\\\\127.0.0.1:{evil}{path}",
        f" http://127.0.0.1:{evil}{path}",
        f"http://127.0.0.1:{evil}\t{path}",
        f"http://127.0.0.1%3a{evil}{path}",
        f"http://127.0.0.1:{evil}%2f@{fal_host}{path}",
        f"http://{fal_host}%40127.0.0.1:{evil}{path}",
        f"http://{fal_host}.127.0.0.1.nip.io:{evil}{path}",
        f"ftp://127.0.0.1:{evil}{path}",
    ]


def post_through_proxy(api, target: str, body: dict | None = None):
    return api.post("/api/fal/proxy", data=json.dumps(body or {"prompt": "x"}), content_type="application/json",
                    HTTP_X_FAL_TARGET_URL=target)


@pytest.mark.parametrize("method", ["GET", "POST"])
def test_no_trick_reaches_another_host_with_the_fake_as_fal(api, fake_fal, listener, method):
    fal_host = fake_fal.base_url.removeprefix("http://")
    for target in tricks(listener.port, fal_host):
        if method == "POST":
            response = post_through_proxy(api, target)
        else:
            response = api.get("/api/fal/proxy", HTTP_X_FAL_TARGET_URL=target)
        assert 400 <= response.status_code < 500, (target, response.status_code)
        assert response.json()["error"]
    assert listener.connections == 0
    assert fake_fal.calls == []


@pytest.mark.parametrize("method", ["GET", "POST"])
def test_no_trick_reaches_another_host_with_the_real_fal_configured(api, listener, settings, method):
    settings.FAL_KEY = "fal-secret-key"
    settings.FAL_QUEUE_URL = "https://queue.fal.run"
    for target in tricks(listener.port, "queue.fal.run"):
        if method == "POST":
            response = post_through_proxy(api, target)
        else:
            response = api.get("/api/fal/proxy", HTTP_X_FAL_TARGET_URL=target)
        assert 400 <= response.status_code < 500, (target, response.status_code)
    assert listener.connections == 0


@pytest.mark.parametrize("target", [
    "https://evil.example/steal",
    "https://queue.fal.run.evil.example/fal-ai/veo3.1",
    "https://queue.fal.run:443/fal-ai/veo3.1",
    "http://queue.fal.run/fal-ai/veo3.1",
    "https://fal.run/fal-ai/veo3.1",
    "http://169.254.169.254/latest/meta-data",
    "file:///etc/passwd",
    "not a url",
    "https://queue.fal.run/fal-ai/../tokens/",
])
def test_it_refuses_anything_but_the_configured_queue(api, settings, target):
    settings.FAL_KEY = "fal-secret-key"
    settings.FAL_QUEUE_URL = "https://queue.fal.run"
    response = post_through_proxy(api, target)
    assert 400 <= response.status_code < 500
    assert "fal-secret-key" not in response.content.decode()


def test_it_checks_the_real_queue_url_shapes(settings):
    from model_control.fal_proxy import CANCEL, RESULT, STATUS, SUBMIT, TargetRefused, check_target

    queue = "https://queue.fal.run"
    submit = check_target("https://QUEUE.fal.run/fal-ai/veo3.1", "POST", queue)
    assert (submit.operation, submit.url, submit.app_id) == (SUBMIT, "https://queue.fal.run/fal-ai/veo3.1",
                                                             "fal-ai/veo3.1")
    status = check_target("https://queue.fal.run/fal-ai/wan/requests/abc-1/status?logs=1&x=2#f", "GET", queue)
    assert (status.operation, status.url, status.alias, status.request_id) == (
        STATUS, "https://queue.fal.run/fal-ai/wan/requests/abc-1/status?logs=1", "fal-ai/wan", "abc-1")
    assert check_target("https://queue.fal.run/fal-ai/wan/requests/abc-1", "GET", queue).operation == RESULT
    assert check_target("https://queue.fal.run/fal-ai/wan/requests/abc-1/cancel", "PUT", queue).operation == CANCEL
    for method, target in [("DELETE", "https://queue.fal.run/fal-ai/wan/requests/abc-1"),
                           ("POST", "https://queue.fal.run/fal-ai/wan/requests/abc-1/status"),
                           ("POST", "https://queue.fal.run/someone/else-app"),
                           ("POST", "https://queue.fal.run/fal-ai/veo3.1?fal_webhook=https://evil.example/"),
                           ("GET", "https://queue.fal.run/fal-ai/veo3.1")]:
        with pytest.raises(TargetRefused):
            check_target(target, method, queue)


def test_it_forwards_a_submit_and_the_users_own_status_result_and_cancel(api, fake_fal):
    response = post_through_proxy(api, f"{fake_fal.base_url}/{APP}", {"prompt": "via proxy"})
    assert response.status_code == 200, response.content
    submitted = response.json()
    forwarded = fake_fal.calls[-1]
    assert forwarded["headers"]["authorization"] == f"Key {fake_fal.key}"
    assert json.loads(forwarded["body"]) == {"prompt": "via proxy"}
    assert "cookie" not in forwarded["headers"]
    assert fake_fal.key.encode() not in response.content

    status = api.get("/api/fal/proxy", HTTP_X_FAL_TARGET_URL=submitted["status_url"])
    assert status.status_code in (200, 202)
    assert status.json()["request_id"] == submitted["request_id"]
    cancel = api.put("/api/fal/proxy", HTTP_X_FAL_TARGET_URL=submitted["cancel_url"])
    assert cancel.status_code < 500
    result = api.get("/api/fal/proxy", HTTP_X_FAL_TARGET_URL=submitted["response_url"])
    assert result.status_code < 500


def test_another_user_cannot_read_or_cancel_my_request(api, fake_fal, other_user):
    submitted = post_through_proxy(api, f"{fake_fal.base_url}/{APP}").json()
    calls_before = len(fake_fal.calls)
    bob = APIClient()
    bob.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=other_user).key}")
    for method, target in [("get", submitted["status_url"]), ("get", submitted["response_url"]),
                           ("put", submitted["cancel_url"])]:
        response = getattr(bob, method)("/api/fal/proxy", HTTP_X_FAL_TARGET_URL=target)
        assert response.status_code == 404
        assert submitted["request_id"] in response.json()["error"]
    assert len(fake_fal.calls) == calls_before


def test_it_refuses_apps_outside_the_catalog_and_token_minting(api, fake_fal):
    outside = post_through_proxy(api, f"{fake_fal.base_url}/someone/expensive-app")
    assert outside.status_code == 403
    assert "GET /api/models/" in outside.json()["error"]
    realtime = post_through_proxy(api, f"{fake_fal.base_url}/fal-ai/krea-wan-14b/ws")
    assert realtime.status_code == 403
    token = api.post("/api/fal/proxy", data=json.dumps({"allowed_apps": ["*"], "token_expiration": 10**9}),
                     content_type="application/json", HTTP_X_FAL_TARGET_URL=f"{fake_fal.base_url}/rest/tokens/")
    assert token.status_code == 403
    assert "/api/fal" in token.json()["error"]
    unknown = api.get("/api/fal/proxy", HTTP_X_FAL_TARGET_URL=f"{fake_fal.base_url}/fal-ai/x/requests/nope/status")
    assert unknown.status_code == 404
    assert fake_fal.calls == [] and fake_fal.minted_tokens == []


def test_a_submit_body_must_be_a_json_object(api, fake_fal):
    for body in ("[1]", "nope", '"x"'):
        response = api.post("/api/fal/proxy", data=body, content_type="application/json",
                            HTTP_X_FAL_TARGET_URL=f"{fake_fal.base_url}/{APP}")
        assert response.status_code == 400
    form = api.post("/api/fal/proxy", data="prompt=x", content_type="application/x-www-form-urlencoded",
                    HTTP_X_FAL_TARGET_URL=f"{fake_fal.base_url}/{APP}")
    assert form.status_code == 415
    assert fake_fal.calls == []


def test_a_logged_in_browser_posts_json_with_its_csrf_token(user, fake_fal):
    browser = Client(enforce_csrf_checks=True)
    browser.force_login(user)
    browser.get("/")  # the page sets the csrftoken cookie
    csrf = browser.cookies["csrftoken"].value
    target = f"{fake_fal.base_url}/{APP}"
    without = browser.post("/api/fal/proxy", data='{"prompt": "x"}', content_type="application/json",
                           HTTP_X_FAL_TARGET_URL=target)
    assert without.status_code == 403
    assert "CSRF" in without.json()["error"]
    response = browser.post("/api/fal/proxy", data='{"prompt": "from the page"}', content_type="application/json",
                            HTTP_X_FAL_TARGET_URL=target, HTTP_X_CSRFTOKEN=csrf)
    assert response.status_code == 200, response.content
    assert json.loads(fake_fal.calls[-1]["body"]) == {"prompt": "from the page"}


def test_the_proxy_needs_a_target_and_a_key(api, settings, fake_fal):
    assert api.post("/api/fal/proxy", data="{}", content_type="application/json").status_code == 400
    settings.FAL_KEY = None
    response = post_through_proxy(api, f"{fake_fal.base_url}/{APP}")
    assert response.status_code == 401
    assert "FAL_KEY" in response.json()["error"]
    assert fake_fal.calls == []


# The public-URL rule of every other door holds for image URLs in a submit's body.
I2V = "fal-ai/wan/v2.2-a14b/image-to-video"
FIRST_LAST = "fal-ai/veo3.1/first-last-frame-to-video"


@pytest.mark.parametrize(("app", "field", "url"), [
    (I2V, "image_url", "http://127.0.0.1/cat.png"),
    (I2V, "image_url", "http://10.0.0.7/cat.png"),
    (I2V, "image_url", "http://169.254.169.254/latest/meta-data/"),
    (I2V, "image_url", "file:///etc/passwd"),
    (I2V, "image_url", "https://example.com:8443/cat.png"),
    (FIRST_LAST, "first_frame_url", "http://localhost/a.png"),
    (FIRST_LAST, "last_frame_url", "http://[::1]/b.png"),
    (APP, "end_image_url", "http://192.168.1.2/c.png"),  # any other *_url field too
    (I2V, "image_url", "data:image/png;base64,bm90IGFuIGltYWdl"),
])
def test_a_submit_with_an_image_url_no_other_door_takes_is_a_400_naming_the_field(api, fake_fal, app, field, url):
    response = post_through_proxy(api, f"{fake_fal.base_url}/{app}", {"prompt": "x", field: url})
    assert response.status_code == 400, response.content
    assert response.json()["error"].startswith(f"{field}: ")
    assert field in response.json()["fields"]
    assert fake_fal.calls == []


def test_a_list_of_image_urls_is_checked_item_by_item(api, fake_fal):
    response = post_through_proxy(api, f"{fake_fal.base_url}/{I2V}",
                                  {"prompt": "x", "image_url": "https://93.184.215.14/cat.png",
                                   "reference_image_urls": ["https://93.184.215.14/a.png", "http://127.0.0.1/b.png"]})
    assert response.status_code == 400
    assert "reference_image_urls" in response.json()["fields"]


def test_public_and_data_image_urls_go_through(api, fake_fal):
    import base64

    from tests.fakes.media import jpeg_frame

    data_url = "data:image/jpeg;base64," + base64.b64encode(jpeg_frame("first", 0, 64, 64)).decode()
    body = {"prompt": "x", "first_frame_url": "https://93.184.215.14/first.png", "last_frame_url": data_url}
    response = post_through_proxy(api, f"{fake_fal.base_url}/{FIRST_LAST}", body)
    assert response.status_code == 200, response.content
    assert json.loads(fake_fal.calls[-1]["body"]) == body
