"""Pages need a login; the API takes a session or a token and answers anonymous calls with
JSON; WebSockets refuse anonymous users."""

from __future__ import annotations

import pytest
from channels.testing import WebsocketCommunicator
from django.core.management import call_command
from rest_framework.authtoken.models import Token

from studio.asgi import application

PAGES = ["/", "/video-generation/", "/realtime/", "/gallery/"]
pytestmark = pytest.mark.modes


@pytest.mark.django_db
@pytest.mark.parametrize("path", PAGES)
def test_it_sends_anonymous_visitors_of_pages_to_the_login_page(client, path):
    response = client.get(path)
    assert response.status_code == 302
    assert response["Location"] == f"/accounts/login/?next={path}"


@pytest.mark.django_db
def test_it_logs_in_with_the_form_and_shows_the_navigation(client, user):
    page = client.get("/accounts/login/")
    assert page.status_code == 200 and b'name="password"' in page.content
    response = client.post("/accounts/login/", {"username": "alice", "password": "wonderland-42"}, follow=True)
    assert response.redirect_chain[-1][0] == "/"
    html = response.content.decode()
    for title, href in [("Home", "/"), ("Video Generation", "/video-generation/"), ("Realtime", "/realtime/"),
                        ("Gallery", "/gallery/")]:
        assert f'href="{href}"' in html and title in html
    assert "aria-disabled" not in html and ">Chat<" not in html  # only entries that work


@pytest.mark.django_db
def test_it_refuses_a_wrong_password(client, user):
    response = client.post("/accounts/login/", {"username": "alice", "password": "nope"})
    assert response.status_code == 200
    assert b"didn't match" in response.content
    assert client.get("/").status_code == 302


@pytest.mark.django_db
def test_it_logs_out(logged_in):
    assert logged_in.get("/").status_code == 200
    assert logged_in.post("/accounts/logout/").status_code == 302
    assert logged_in.get("/").status_code == 302


@pytest.mark.django_db
@pytest.mark.parametrize("path", ["/api/models/", "/api/videos/"])
def test_it_answers_anonymous_api_calls_with_401_json(client, path):
    response = client.get(path)
    assert response.status_code == 401
    assert response["Content-Type"] == "application/json"
    assert response["WWW-Authenticate"] == "Token"
    assert response.json()["error"] == "Authentication credentials were not provided."


@pytest.mark.django_db
def test_it_answers_a_bad_token_with_401_json(client):
    response = client.get("/api/models/", HTTP_AUTHORIZATION="Token not-a-real-token")
    assert response.status_code == 401
    assert response.json()["error"] == "Invalid token."


@pytest.mark.django_db
def test_it_takes_a_token_made_by_drf_create_token(client, user, capsys):
    call_command("drf_create_token", "alice")
    key = Token.objects.get(user=user).key
    assert key in capsys.readouterr().out
    response = client.get("/api/models/", HTTP_AUTHORIZATION=f"Token {key}")
    assert response.status_code == 200


@pytest.mark.django_db
def test_it_takes_the_session_for_the_api(logged_in):
    assert logged_in.get("/api/models/").status_code == 200


@pytest.mark.django_db(transaction=True)
async def test_it_refuses_anonymous_websockets():
    communicator = WebsocketCommunicator(application, "/ws/events/", headers=[(b"origin", b"http://127.0.0.1"),
                                                                              (b"host", b"127.0.0.1")])
    connected, code = await communicator.connect()
    assert not connected
    assert code == 4401
    await communicator.disconnect()  # as daphne does: the application ends inside the test


@pytest.mark.django_db(transaction=True)
async def test_it_refuses_websockets_from_a_foreign_origin(user):
    communicator = WebsocketCommunicator(application, "/ws/events/", headers=[(b"origin", b"http://evil.example"),
                                                                              (b"host", b"127.0.0.1")])
    connected, _ = await communicator.connect()
    assert not connected
    await communicator.disconnect()  # as daphne does: the application ends inside the test
