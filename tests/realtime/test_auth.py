"""Who may open the realtime socket (``/ws/realtime/``, ``/fal-ai/krea-wan-14b/ws`` and
``/realtime``): a logged-in browser from the studio's own origin, or a program with a token
(its API token, or one the studio minted: scoped to a user and an app, short-lived,
revocable), from any origin; and any other socket path is refused cleanly."""

from __future__ import annotations

import time
from unittest import mock

import pytest
from asgiref.sync import sync_to_async
from django.core import signing
from rest_framework.authtoken.models import Token

from tests.support.realtime import RealtimeClient
from videogen.realtime import auth

pytestmark = [pytest.mark.django_db(transaction=True)]

FAL_WS = "/fal-ai/krea-wan-14b/ws"
HOST = [(b"host", b"127.0.0.1")]


async def handshake(path: str, headers=None) -> tuple[bool, object]:
    client = RealtimeClient(path, headers)
    result = await client.connect()
    if result[0]:
        await client.disconnect()
    return result


async def accepted(path: str, headers=None) -> bool:
    return (await handshake(path, headers))[0]


def from_origin(origin: bytes, headers) -> list[tuple[bytes, bytes]]:
    return [(name, origin if name == b"origin" else value) for name, value in headers]


async def mint(user, apps=None, ttl_s=None) -> str:
    return await sync_to_async(auth.mint_token)(user, apps, ttl_s)


# --- who: sessions, API tokens, minted tokens -----------------------------------------------

async def test_an_anonymous_socket_is_refused(user):
    connected, code = await handshake("/ws/realtime/", [(b"origin", b"http://127.0.0.1"), *HOST])
    assert not connected and code == 4401


async def test_a_logged_in_browser_from_the_studios_origin_is_welcome(ws_headers, user):
    assert await accepted("/ws/realtime/", await sync_to_async(ws_headers)(user))
    assert await accepted(FAL_WS, await sync_to_async(ws_headers)(user))


async def test_a_program_with_its_api_token_and_no_origin_is_welcome(user):
    token = await sync_to_async(Token.objects.create)(user=user)
    assert await accepted(f"/ws/realtime/?token={token.key}")
    assert await accepted(f"{FAL_WS}?token={token.key}")
    # fal's parameter carries only tokens the studio minted, never a long-lived API token.
    assert not await accepted(f"{FAL_WS}?fal_jwt_token={token.key}")


async def test_a_short_lived_token_from_the_api_opens_a_socket(api, user):
    response = await sync_to_async(api.post)("/api/realtime/token")
    assert response.status_code == 200
    body = response.json()
    assert body["expires_in"] == 300 and body["url"] == f"/ws/realtime/?token={body['token']}"
    assert await accepted(body["url"])
    assert await accepted(f"{FAL_WS}?fal_jwt_token={body['token']}")


async def test_a_minted_token_acts_as_its_user_and_no_other(user, other_user):
    from channels.db import database_sync_to_async

    alice = await mint(user)
    scope = {"query_string": f"fal_jwt_token={alice}".encode(), "url_route": {"kwargs": {"app": "krea-wan-14b"}}}
    assert (await auth.user_for(scope)).pk == user.pk
    # Changing the user inside the token breaks its signature.
    payload = signing.loads(alice[len(auth.PREFIX):], salt=auth.SALT)
    forged = auth.PREFIX + signing.dumps({**payload, "u": other_user.pk}, salt="not.the.studio's", compress=True)
    assert not await accepted(f"{FAL_WS}?fal_jwt_token={forged}")
    # Bob revoking his tokens leaves Alice's alone; Alice revoking hers ends them.
    await database_sync_to_async(auth.revoke_tokens)(other_user)
    assert await accepted(f"{FAL_WS}?fal_jwt_token={alice}")
    await database_sync_to_async(auth.revoke_tokens)(user)
    assert not await accepted(f"{FAL_WS}?fal_jwt_token={alice}")
    assert await accepted(f"{FAL_WS}?fal_jwt_token={await mint(user)}")  # a new one works


async def test_a_token_for_another_app_is_refused(user):
    other_app = await mint(user, ["some-other-app"])
    assert not await accepted(f"{FAL_WS}?fal_jwt_token={other_app}")
    assert not await accepted(f"/ws/realtime/?token={other_app}")
    assert await accepted(f"{FAL_WS}?fal_jwt_token={await mint(user, ['krea-wan-14b'])}")


async def test_an_expired_forged_or_unknown_token_is_refused_even_with_a_session(ws_headers, user):
    token = await mint(user, ttl_s=10)
    headers = await sync_to_async(ws_headers)(user)
    assert await accepted(f"/ws/realtime/?token={token}")  # fresh: it works
    with mock.patch("time.time", return_value=time.time() + 11):
        assert not await accepted(f"/ws/realtime/?token={token}", headers)
        assert not await accepted(f"{FAL_WS}?fal_jwt_token={token}", headers)
    forged = auth.PREFIX + signing.dumps({"u": user.pk, "a": ["krea-wan-14b"], "e": int(time.time()) + 99, "r": 0},
                                         salt="another.salt", compress=True)
    old_format = "rt1." + signing.dumps({"u": user.pk}, salt="studio.realtime.token", compress=True)
    for bad in (forged, old_format, "0" * 40, "nonsense"):
        connected, code = await handshake(f"/ws/realtime/?token={bad}", headers)
        assert not connected and code == 4401
        assert not (await handshake(f"{FAL_WS}?fal_jwt_token={bad}", headers))[0]


async def test_a_token_asks_for_at_most_the_longest_lifetime(user, settings):
    settings.FAL_TOKEN_MAX_EXPIRATION = 60
    token = await mint(user, ttl_s=5000)
    with mock.patch("time.time", return_value=time.time() + 61):
        assert not await accepted(f"{FAL_WS}?fal_jwt_token={token}")


async def test_an_inactive_users_tokens_are_refused(user):
    token = await sync_to_async(Token.objects.create)(user=user)
    minted = await mint(user)
    user.is_active = False
    await sync_to_async(user.save)()
    assert not await accepted(f"/ws/realtime/?token={token.key}")
    assert not await accepted(f"{FAL_WS}?fal_jwt_token={minted}")


def test_minting_and_revoking_need_a_login(client):
    assert client.post("/api/realtime/token").status_code == 401
    assert client.delete("/api/realtime/token").status_code == 401


async def test_delete_on_the_token_door_revokes_what_was_minted(api, user):
    token = (await sync_to_async(api.post)("/api/realtime/token")).json()["token"]
    response = await sync_to_async(api.delete)("/api/realtime/token")
    assert response.status_code == 200 and response.json() == {"revoked": True}
    assert not await accepted(f"/ws/realtime/?token={token}")


def test_tokens_never_reach_the_log(user):
    import logging

    from studio.logging import RedactSecretsFilter

    token = auth.mint_token(user)
    for line in ("GET /ws/realtime/?token=%s", "GET /fal-ai/krea-wan-14b/ws?fal_jwt_token=%s"):
        record = logging.LogRecord("daphne", logging.INFO, "", 0, line, (token,), None)
        RedactSecretsFilter().filter(record)
        assert token not in record.getMessage()


# --- from where: origins ------------------------------------------------------------------------

async def test_a_cookie_counts_only_from_the_studios_own_scheme_host_and_port(ws_headers, user):
    headers = await sync_to_async(ws_headers)(user)  # a browser on http://127.0.0.1 (port 80)
    assert await accepted(FAL_WS, headers)
    for origin in (b"http://evil.example", b"https://127.0.0.1", b"http://127.0.0.1:8000", b"null",
                   b"http://127.0.0.1.evil.example"):
        connected, _ = await handshake(FAL_WS, from_origin(origin, headers))
        assert not connected, origin
    on_port = [(b"origin", b"http://127.0.0.1:8000"), (b"host", b"127.0.0.1:8000"),
               *[h for h in headers if h[0] == b"cookie"]]
    assert await accepted(FAL_WS, on_port)


async def test_a_host_the_studio_does_not_serve_is_no_origin_of_its_own(ws_headers, user):
    headers = [(b"origin", b"http://evil.example"), (b"host", b"evil.example"),
               *[h for h in await sync_to_async(ws_headers)(user) if h[0] == b"cookie"]]
    assert not await accepted(FAL_WS, headers)


async def test_the_public_url_is_the_studios_own_origin(ws_headers, user, settings):
    settings.CSRF_TRUSTED_ORIGINS = ["https://studio.example.com"]
    headers = from_origin(b"https://studio.example.com", await sync_to_async(ws_headers)(user))
    assert await accepted(FAL_WS, headers)


async def test_a_token_is_taken_from_any_origin_and_the_cookie_is_left_behind(ws_headers, user, other_user):
    token = await mint(user)
    evil = from_origin(b"https://seed.example", await sync_to_async(ws_headers)(other_user))  # Bob's cookie
    assert await accepted(f"{FAL_WS}?fal_jwt_token={token}", evil)
    # A bad token from another site does not fall back on the cookie that came with it...
    assert not await accepted(f"{FAL_WS}?fal_jwt_token=nonsense", evil)
    # ...nor does a socket that only reads the cookie (the events socket) get it that way.
    from channels.testing import WebsocketCommunicator

    from studio.asgi import application

    events = WebsocketCommunicator(application, "/ws/events/?token=anything", headers=evil)
    connected, _ = await events.connect(timeout=10)
    assert not connected
    own = WebsocketCommunicator(application, "/ws/events/", headers=await sync_to_async(ws_headers)(other_user))
    assert (await own.connect(timeout=10))[0]
    await own.disconnect()


# --- where: paths ---------------------------------------------------------------------------------

@pytest.mark.parametrize("path", ["/nope/", "/fal-ai/other-app/ws", "/fal-ai/krea-wan-14b/ws/x",
                                  "/", "/api/jobs/"])
async def test_a_path_that_is_no_socket_is_refused_cleanly(ws_headers, user, path):
    connected, code = await handshake(path, await sync_to_async(ws_headers)(user))
    assert not connected and code == 4404
