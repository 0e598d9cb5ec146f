"""The account pages: the API token page (show, make, remake with POST + CSRF) and logout."""

from __future__ import annotations

import re

import pytest
from django.test import Client
from rest_framework.authtoken.models import Token

pytestmark = pytest.mark.django_db


def test_the_token_page_makes_shows_and_remakes_the_users_token(logged_in, user, other_user):
    Token.objects.create(user=other_user)
    page = logged_in.get("/account/token/").content.decode()
    assert "You have no token yet" in page and 'aria-current="page">API token<' in page
    response = logged_in.post("/account/token/")
    assert response.status_code == 302 and response["Location"] == "/account/token/"
    first = Token.objects.get(user=user).key
    page = logged_in.get("/account/token/").content.decode()
    assert f'value="{first}"' in page and "Your API token was made." in page
    assert f'Authorization: Token {first}' in page and Token.objects.get(user=other_user).key not in page
    # The token works for the API, and a new one replaces it.
    assert Client(HTTP_AUTHORIZATION=f"Token {first}").get("/api/jobs/").status_code == 200
    logged_in.post("/account/token/")
    second = Token.objects.get(user=user).key
    assert second != first and "the old one no longer works" in logged_in.get("/account/token/").content.decode()
    assert Client(HTTP_AUTHORIZATION=f"Token {first}").get("/api/jobs/").status_code == 401
    assert Token.objects.filter(user=other_user).exists()


def test_the_token_page_needs_a_login_csrf_and_get_or_post(client, user):
    response = client.get("/account/token/")
    assert response.status_code == 302 and response["Location"].startswith("/accounts/login/")
    strict = Client(enforce_csrf_checks=True)
    strict.force_login(user)
    assert strict.post("/account/token/").status_code == 403
    assert not Token.objects.filter(user=user).exists()
    page = strict.get("/account/token/").content.decode()
    csrf = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page).group(1)
    assert strict.post("/account/token/", {"csrfmiddlewaretoken": csrf}).status_code == 302
    assert Token.objects.filter(user=user).exists()
    assert strict.put("/account/token/", HTTP_X_CSRFTOKEN=strict.cookies["csrftoken"].value).status_code == 405
    assert strict.delete("/account/token/", HTTP_X_CSRFTOKEN=strict.cookies["csrftoken"].value).status_code == 405


def test_logout_is_a_post_that_ends_the_session_and_says_so(logged_in):
    assert logged_in.get("/accounts/logout/").status_code == 405  # Django 5: a link cannot log you out
    response = logged_in.post("/accounts/logout/", follow=True)
    assert response.redirect_chain[-1][0] == "/accounts/login/"
    assert "You are logged out." in response.content.decode()
    assert logged_in.get("/").status_code == 302  # the session is gone


def test_the_login_page_labels_its_fields_and_says_what_went_wrong(client, user):
    page = client.get("/accounts/login/").content.decode()
    assert '<label for="id_username">Username</label>' in page and '<label for="id_password">Password</label>' in page
    wrong = client.post("/accounts/login/", {"username": "alice", "password": "nope"}).content.decode()
    assert 'role="alert"' in wrong and "didn't match" in wrong and 'value="alice"' in wrong
    assert 'aria-invalid="true"' in wrong
    response = client.post("/accounts/login/", {"username": "alice", "password": "wonderland-42"})
    assert response.status_code == 302 and response["Location"] == "/"
