"""Who may open ``/ws/realtime/``: a logged-in browser from the studio's own origin, or a
program with ``?token=`` (its API token, or a short-lived token from the studio)."""

from __future__ import annotations

import pytest
from asgiref.sync import sync_to_async
from django.core import signing
from rest_framework.authtoken.models import Token

from tests.support.realtime import RealtimeClient
from videogen.realtime import auth

pytestmark = [pytest.mark.django_db(transaction=True)]


async def handshake(path: str, headers=None) -> tuple[bool, object]:
    client = RealtimeClient(path, headers)
    result = await client.connect()
    if result[0]:
        await client.disconnect()
    return result


async def test_an_anonymous_socket_is_refused(user):
    connected, code = await handshake("/ws/realtime/", [(b"origin", b"http://127.0.0.1")])
    assert not connected and code == 4401


async def test_a_logged_in_browser_from_the_studios_origin_is_welcome(ws_headers, user):
    assert (await handshake("/ws/realtime/", await sync_to_async(ws_headers)(user)))[0]


async def test_a_logged_in_browser_on_another_site_is_refused(ws_headers, user):
    headers = [(name, b"http://evil.example" if name == b"origin" else value)
               for name, value in await sync_to_async(ws_headers)(user)]
    connected, _ = await handshake("/ws/realtime/", headers)
    assert not connected


async def test_a_program_with_its_api_token_and_no_origin_is_welcome(user):
    token = await sync_to_async(Token.objects.create)(user=user)
    assert (await handshake(f"/ws/realtime/?token={token.key}"))[0]


async def test_a_short_lived_token_from_the_api_opens_a_socket(api, user):
    response = await sync_to_async(api.post)("/api/realtime/token")
    assert response.status_code == 200
    body = response.json()
    assert body["expires_in"] == 300 and body["url"] == f"/ws/realtime/?token={body['token']}"
    assert (await handshake(body["url"]))[0]


async def test_an_expired_forged_or_unknown_token_is_refused_even_with_a_session(ws_headers, user, settings):
    settings.STUDIO_REALTIME_TOKEN_TTL = 10
    expired = auth.PREFIX + signing.dumps({"u": user.pk}, salt=auth.SALT, compress=True)
    headers = await sync_to_async(ws_headers)(user)
    from unittest import mock

    assert (await handshake(f"/ws/realtime/?token={expired}"))[0]  # fresh: it works
    with mock.patch("time.time", return_value=__import__("time").time() + 60):
        assert not (await handshake(f"/ws/realtime/?token={expired}", headers))[0]
    forged = auth.PREFIX + signing.dumps({"u": user.pk}, salt="another.salt", compress=True)
    for token in (forged, "0" * 40, "nonsense"):
        connected, code = await handshake(f"/ws/realtime/?token={token}", headers)
        assert not connected and code == 4401


async def test_an_inactive_users_token_is_refused(user):
    token = await sync_to_async(Token.objects.create)(user=user)
    user.is_active = False
    await sync_to_async(user.save)()
    assert not (await handshake(f"/ws/realtime/?token={token.key}"))[0]


def test_minting_a_token_needs_a_login(client):
    assert client.post("/api/realtime/token").status_code == 401


def test_tokens_never_reach_the_log(user, caplog, settings):
    import logging

    from studio.logging import RedactSecretsFilter

    token = auth.mint_token(user)
    record = logging.LogRecord("daphne", logging.INFO, "", 0, "GET /ws/realtime/?token=%s", (token,), None)
    RedactSecretsFilter().filter(record)
    assert token not in record.getMessage()
