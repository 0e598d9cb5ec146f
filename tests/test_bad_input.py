"""Garbage in gets a 4xx with a message, never a 500, at every POST door."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.django_db

DOORS = ["/api/videos/generate", "/models/video-generation-cloud/", "/api/fal"]
NOT_AN_OBJECT = ["[1, 2]", '"a string"', "42", "null", "{not json"]
BAD_FIELDS = {
    "/api/videos/generate": [
        '{"model": {"nested": true}, "prompt": "p"}',
        '{"model": "fal-ai/veo3.1", "prompt": ["x"]}',
        '{"model": "fal-ai/veo3.1", "prompt": "' + "x" * 5000 + '"}',
        '{"model": "fal-ai/veo3.1", "prompt": "p", "seed": 1e400}',
        '{"model": "fal-ai/veo3.1", "prompt": "p", "seed": "NaN"}',
        '{"model": "fal-ai/veo3.1", "prompt": "p", "seed": -1}',
        '{"model": "fal-ai/veo3.1", "prompt": "p", "duration": {"s": 4}}',
        '{"model": "fal-ai/veo3.1", "prompt": "p", "audio": "loud"}',
        '{"model": "fal-ai/wan/v2.2-a14b/image-to-video", "prompt": "p", "image": "javascript:alert(1)"}',
    ],
    "/models/video-generation-cloud/": [
        '{"prompt": ["x"]}',
        '{"prompt": {"text": "x"}}',
        '{"prompt": "p", "seed": "NaN"}',
        '{"prompt": "p", "num_inference_steps": 1e400}',
    ],
    "/api/fal": [
        '{"allowed_apps": [{"app": 1}]}',
        '{"allowed_apps": ["krea-wan-14b"], "token_expiration": [5]}',
        '{"allowed_apps": ["krea-wan-14b"], "token_expiration": -5}',
    ],
}
# An empty body is a request for defaults at /api/fal, and lacks the required fields elsewhere.
CASES = [(door, body) for door in DOORS for body in NOT_AN_OBJECT] + [
    ("/api/videos/generate", ""), ("/models/video-generation-cloud/", "")] + [
    (door, body) for door, bodies in BAD_FIELDS.items() for body in bodies]


@pytest.mark.parametrize(("door", "body"), CASES)
def test_garbage_gets_a_clear_4xx(api, fake_fal, fake_tt, door, body):
    response = api.generic("POST", door, body, content_type="application/json")
    assert 400 <= response.status_code < 500, (door, body, response.status_code, response.content[:200])
    assert response.json()["error"]
    assert fake_fal.calls == [] and fake_tt.calls == []
