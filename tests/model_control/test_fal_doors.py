"""POST /api/fal (temporary realtime tokens) and /api/fal/proxy, against the fake fal."""

from __future__ import annotations

import json

import pytest
import websockets.sync.client

pytestmark = pytest.mark.django_db


def mint(api, **body):
    return api.post("/api/fal", body, format="json")


def test_it_mints_a_token_the_realtime_socket_accepts(api, fake_fal):
    response = mint(api, allowed_apps=["krea-wan-14b"], token_expiration=300)
    assert response.status_code == 200
    token = response.json()["token"]
    assert fake_fal.minted_tokens[-1]["allowed_apps"] == ["krea-wan-14b"]
    with websockets.sync.client.connect(f"{fake_fal.ws_url}/fal-ai/krea-wan-14b/ws?fal_jwt_token={token}") as ws:
        assert json.loads(ws.recv(timeout=5)) == {"status": "ready"}


def test_it_defaults_to_the_catalogs_realtime_apps_and_caps_the_expiration(api, fake_fal, settings):
    settings.FAL_TOKEN_MAX_EXPIRATION = 600
    response = mint(api, token_expiration=100000)
    assert response.status_code == 200
    assert response.json()["token_expiration"] == 600
    sent = json.loads(fake_fal.calls[-1]["body"])
    assert sent == {"allowed_apps": ["krea-wan-14b"], "token_expiration": 600}


@pytest.mark.parametrize(("body", "field"), [
    ({"allowed_apps": ["fal-ai/veo3.1"]}, "allowed_apps"),
    ({"allowed_apps": []}, "allowed_apps"),
    ({"allowed_apps": "krea-wan-14b"}, "allowed_apps"),
    ({"token_expiration": 0}, "token_expiration"),
    ({"token_expiration": "soon"}, "token_expiration"),
])
def test_it_refuses_apps_outside_the_catalog_and_bad_expirations(api, fake_fal, body, field):
    response = mint(api, **body)
    assert response.status_code == 400
    assert field in response.json()["fields"]
    assert fake_fal.minted_tokens == []


def test_only_logged_in_users_get_tokens(client, fake_fal):
    response = client.post("/api/fal", {"allowed_apps": ["krea-wan-14b"]}, content_type="application/json")
    assert response.status_code == 401
    assert fake_fal.minted_tokens == []


def test_a_refused_key_is_a_clear_error_without_the_key(api, fake_fal):
    fake_fal.unauthorized = True
    response = mint(api)
    assert response.status_code == 502
    assert "FAL_KEY" in response.json()["error"]
    assert fake_fal.key.encode() not in response.content
