"""Text no database keeps: NUL (PostgreSQL refuses it in text and jsonb; SQLite kept it, so only
the services mode answered 500) and lone surrogates. Every door answers a 400 naming the field,
parameter or header, and nothing is stored or sent, in both modes (the services pass runs
these against PostgreSQL).
"""

from __future__ import annotations

import json

import pytest

from model_control.inputs import Param
from runtime.parsers import NUL_TEXT, loads
from videogen.models import Job

pytestmark = [pytest.mark.modes, pytest.mark.django_db]

FAST = "fal-ai/fast-animatediff/text-to-video"
GENERATION_DOORS = ["/api/jobs/", "/api/videos/generate", "/models/video-generation-cloud/"]


def assert_refused(response, field: str) -> None:
    assert response.status_code == 400, (response.status_code, response.content[:300])
    body = response.json()
    assert field in body["error"] and "NUL" in body["error"], body
    assert field in body.get("fields", {}), body


@pytest.mark.parametrize("door", GENERATION_DOORS)
@pytest.mark.parametrize("field", ["prompt", "negative_prompt"])
def test_a_nul_in_a_json_text_field_is_a_400_naming_it(api, fake_fal, fake_tt, door, field):
    body = {"model": FAST, "prompt": "a lighthouse", field: "a\u0000b"}
    assert_refused(api.post(door, body, format="json"), field)
    assert Job.objects.count() == 0
    assert fake_fal.calls == [] and fake_tt.calls == []


def test_a_nul_anywhere_in_a_json_body_names_where_it_is(api, fake_fal):
    nested = api.post("/api/jobs/", {"model": FAST, "prompt": "p", "loras": [{"path": "x\u0000"}]}, format="json")
    assert_refused(nested, "loras.0.path")
    body = '{"model": "' + FAST + '", "prompt": "p", "a\\u0000b": 1}'
    key = api.generic("POST", "/api/jobs/", body, content_type="application/json")
    assert key.status_code == 400 and "a\\x00b" in key.json()["fields"]
    assert Job.objects.count() == 0 and fake_fal.calls == []


@pytest.mark.parametrize("fmt", ["multipart", "urlencoded"])
@pytest.mark.parametrize("field", ["prompt", "negative_prompt"])
def test_a_nul_in_a_form_field_is_a_400_naming_it(api, fake_fal, fmt, field):
    data = {"model": FAST, "prompt": "a lighthouse", field: "a\u0000b"}
    if fmt == "multipart":
        response = api.post("/api/jobs/", data, format="multipart")
    else:
        from urllib.parse import urlencode

        response = api.generic("POST", "/api/jobs/", urlencode(data), content_type="application/x-www-form-urlencoded")
    assert_refused(response, field)
    assert Job.objects.count() == 0 and fake_fal.calls == []


def test_invalid_utf8_in_a_form_becomes_replacement_characters_not_a_500(api, fake_fal):
    boundary = "studio-boundary"
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"model\"\r\n\r\n{FAST}\r\n"
            f"--{boundary}\r\nContent-Disposition: form-data; name=\"prompt\"\r\n\r\n").encode()
    body += b"a \xed\xa0\x80 surrogate's bytes\r\n" + f"--{boundary}--\r\n".encode()
    response = api.generic("POST", "/api/jobs/", body, content_type=f"multipart/form-data; boundary={boundary}")
    assert response.status_code == 202, response.content[:300]
    assert "\ufffd" in Job.objects.get().input["prompt"]


@pytest.mark.parametrize("query", ["model=%00", "status=%00", "model=a%00b", "x%00=1"])
def test_a_nul_in_a_query_parameter_is_a_400_naming_it(api, query):
    response = api.get(f"/api/jobs/?{query}")
    assert response.status_code == 400, response.content[:300]
    name = query.split("=")[0].replace("%00", "\\x00")
    assert name in response.json()["fields"]
    assert f"query parameter {name}" in response.json()["error"]


def test_a_nul_in_a_page_query_is_a_400_page(logged_in):
    response = logged_in.get("/gallery/?q=%00")
    assert response.status_code == 400
    assert response["Content-Type"].startswith("text/html")


def test_a_nul_in_a_token_or_cookie_is_a_400_not_a_database_error(client, user):
    token = client.get("/api/jobs/", HTTP_AUTHORIZATION="Token abc\u0000def")
    assert token.status_code == 400 and "Authorization" in token.json()["error"]
    cookie = client.get("/api/jobs/", HTTP_COOKIE="sessionid=abcdefgh\u0000ijk")
    assert cookie.status_code == 400 and "Cookie" in cookie.json()["error"]


def test_param_clean_refuses_a_nul_whatever_door_the_text_came_through():
    with pytest.raises(ValueError, match="NUL"):
        Param("prompt", "prompt", "text").clean("a\u0000b")
    assert Param("prompt", "prompt", "text").clean(" a b ") == "a b"


def test_the_parser_refuses_a_nul_and_names_the_field():
    with pytest.raises(Exception) as caught:
        loads(json.dumps({"prompt": "a\u0000"}))
    assert caught.value.field == "prompt" and caught.value.reason == NUL_TEXT
