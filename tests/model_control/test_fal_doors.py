"""The fal-shaped token doors: ``POST /fal/tokens/`` (fal's ``POST {rest}/tokens/``: a bare
JSON string, ``Authorization: Key <Studio API token>``) and ``POST /api/fal`` (the seed app's
route: ``{"token"}``). They mint the studio's own tokens for the studio's socket; fal is never
asked for one. CORS for configured origins only."""

from __future__ import annotations

import json

import pytest
from channels.testing import WebsocketCommunicator
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from studio.asgi import application
from tests.test_settings import start_django

pytestmark = pytest.mark.django_db

SEED_BODY = {"allowed_apps": ["krea-wan-14b"], "token_expiration": 5000}


@pytest.fixture
def key_client(user) -> APIClient:
    """A program holding a Studio API token, using it the way a fal client uses its key."""
    client = APIClient()
    token, _ = Token.objects.get_or_create(user=user)
    client.credentials(HTTP_AUTHORIZATION=f"Key {token.key}")
    return client


async def socket_opens(path: str) -> bool:
    communicator = WebsocketCommunicator(application, path, headers=[(b"origin", b"https://seed.example")])
    connected, _ = await communicator.connect(timeout=10)
    if connected:
        assert json.loads((await communicator.receive_output(10))["text"]) == {"status": "ready"}
        await communicator.disconnect()
    return connected


@pytest.mark.django_db(transaction=True)
async def test_fal_tokens_answers_a_bare_string_for_a_key_and_the_socket_takes_it(key_client, fake_fal, settings):
    from asgiref.sync import sync_to_async

    settings.STUDIO_REALTIME_BACKEND = "fal"
    response = await sync_to_async(key_client.post)("/fal/tokens/", SEED_BODY, format="json")
    assert response.status_code == 200 and response["Content-Type"] == "application/json"
    token = json.loads(response.content)
    assert isinstance(token, str) and token.startswith("rt2.")
    assert await socket_opens(f"/fal-ai/krea-wan-14b/ws?fal_jwt_token={token}")
    assert fake_fal.minted_tokens == []  # the studio's token, not fal's: fal was never asked
    assert fake_fal.key not in response.content.decode()


def test_both_doors_with_and_without_the_slash_take_every_studio_scheme(key_client, api, logged_in):
    for client, path in ((key_client, "/fal/tokens"), (api, "/fal/tokens/"), (logged_in, "/fal/tokens/")):
        response = client.post(path, SEED_BODY, format="json") if client is not logged_in else \
            client.post(path, SEED_BODY, content_type="application/json")
        assert response.status_code == 200, (path, response.content)
        assert isinstance(response.json(), str)
    for client, path in ((api, "/api/fal"), (key_client, "/api/fal/")):
        response = client.post(path, SEED_BODY, format="json")
        assert response.status_code == 200
        assert set(response.json()) == {"token", "token_expiration"}


def test_it_defaults_to_the_apps_served_and_caps_the_expiration(api, settings):
    settings.FAL_TOKEN_MAX_EXPIRATION = 600
    assert api.post("/api/fal", {"token_expiration": 100000}, format="json").json()["token_expiration"] == 600
    assert api.post("/api/fal", {}, format="json").json()["token_expiration"] == settings.STUDIO_REALTIME_TOKEN_TTL


@pytest.mark.parametrize("path", ["/api/fal", "/fal/tokens/"])
@pytest.mark.parametrize(("body", "field"), [
    ({"allowed_apps": ["fal-ai/veo3.1"]}, "allowed_apps"),
    ({"allowed_apps": []}, "allowed_apps"),
    ({"allowed_apps": "krea-wan-14b"}, "allowed_apps"),
    ({"token_expiration": 0}, "token_expiration"),
    ({"token_expiration": "soon"}, "token_expiration"),
])
def test_it_refuses_apps_it_does_not_serve_and_bad_expirations(api, path, body, field):
    response = api.post(path, body, format="json")
    assert response.status_code == 400
    assert field in response.json()["fields"]


@pytest.mark.parametrize("path", ["/api/fal", "/fal/tokens/"])
def test_only_the_studios_users_get_tokens(client, fake_fal, path):
    assert client.post(path, SEED_BODY, content_type="application/json").status_code == 401
    for header in (f"Key {fake_fal.key}", "Key " + "0" * 40, "Key"):
        response = client.post(path, SEED_BODY, content_type="application/json", HTTP_AUTHORIZATION=header)
        assert response.status_code == 401, header
    assert fake_fal.minted_tokens == []


def test_minting_counts_against_the_token_rate_on_every_door(api, settings):
    settings.STUDIO_THROTTLE_RATES = {**settings.STUDIO_THROTTLE_RATES, "fal_token": "3/hour"}
    codes = [api.post(path, {}, format="json").status_code
             for path in ("/fal/tokens/", "/api/fal", "/api/realtime/token", "/fal/tokens/")]
    assert codes == [200, 200, 200, 429]


def test_cors_lets_a_configured_origin_call_the_token_doors_and_no_other(client, settings):
    settings.CORS_ALLOWED_ORIGINS = ["https://seed.example"]
    preflight = {"HTTP_ORIGIN": "https://seed.example", "HTTP_ACCESS_CONTROL_REQUEST_METHOD": "POST",
                 "HTTP_ACCESS_CONTROL_REQUEST_HEADERS": "authorization,content-type"}
    for path in ("/fal/tokens/", "/fal/tokens", "/api/fal", "/api/realtime/token"):
        response = client.options(path, **preflight)
        assert response.status_code == 200, path
        assert response["Access-Control-Allow-Origin"] == "https://seed.example"
        assert "authorization" in response["Access-Control-Allow-Headers"]
        assert "Access-Control-Allow-Credentials" not in response  # tokens, never cookies
    other = client.options("/fal/tokens/", **{**preflight, "HTTP_ORIGIN": "https://evil.example"})
    assert "Access-Control-Allow-Origin" not in other
    elsewhere = client.options("/api/jobs/", **preflight)
    assert "Access-Control-Allow-Origin" not in elsewhere
    refused = client.post("/fal/tokens/", SEED_BODY, content_type="application/json", HTTP_ORIGIN="https://seed.example")
    assert refused.status_code == 401 and refused["Access-Control-Allow-Origin"] == "https://seed.example"


@pytest.mark.parametrize("value", ["seed.example", "https://seed.example/app", "ftp://seed.example"])
def test_a_cors_origin_that_is_not_an_origin_stops_start_up(tmp_path, value):
    result = start_django({"STUDIO_CORS_ORIGINS": value}, tmp_path)
    assert result.returncode != 0
    assert "STUDIO_CORS_ORIGINS" in result.stderr.strip().splitlines()[-1]
