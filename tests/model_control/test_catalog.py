"""Every catalog model maps Studio's one request shape onto exactly its endpoint's fields,
and refuses invalid values naming the field and what is allowed (table-driven)."""

from __future__ import annotations

import json

import msgpack
import pytest
import websockets.sync.client

from model_control.backends import catalog
from model_control.catalog import CatalogError, ImageInput

IMG = "https://example.com/frame.png"

# model id -> (a full valid Studio request, exactly what the endpoint must receive)
CASES = {
    "fal-ai/fast-animatediff/text-to-video": (
        {"prompt": "p", "negative_prompt": "n", "num_frames": 24, "steps": 20, "guidance": 6.5, "fps": 12, "seed": 3,
         "resolution": "landscape_16_9"},
        {"prompt": "p", "negative_prompt": "n", "num_frames": 24, "num_inference_steps": 20, "guidance_scale": 6.5,
         "fps": 12, "seed": 3, "video_size": "landscape_16_9"}),
    "fal-ai/fast-animatediff/turbo/text-to-video": (
        {"prompt": "p", "steps": 4, "num_frames": 16},
        {"prompt": "p", "num_inference_steps": 4, "num_frames": 16}),
    "fal-ai/wan-25-preview/image-to-video": (
        {"prompt": "p", "image": IMG, "duration": 10, "resolution": "720p", "negative_prompt": "n", "seed": 1},
        {"prompt": "p", "image_url": IMG, "duration": "10", "resolution": "720p", "negative_prompt": "n", "seed": 1}),
    "fal-ai/wan/v2.2-a14b/image-to-video": (
        {"prompt": "p", "image": IMG, "num_frames": 81, "fps": 16, "resolution": "580p", "negative_prompt": "n",
         "seed": 2, "steps": 27},
        {"prompt": "p", "image_url": IMG, "num_frames": 81, "frames_per_second": 16, "resolution": "580p",
         "negative_prompt": "n", "seed": 2, "num_inference_steps": 27}),
    "fal-ai/kling-video/v2.5-turbo/pro/image-to-video": (
        {"prompt": "p", "image": IMG, "duration": "5", "negative_prompt": "n", "guidance": 0.5},
        {"prompt": "p", "image_url": IMG, "duration": "5", "negative_prompt": "n", "cfg_scale": 0.5}),
    "fal-ai/veo3.1": (
        {"prompt": "p", "aspect_ratio": "9:16", "duration": 6, "resolution": "1080p", "audio": "false", "seed": 4},
        {"prompt": "p", "aspect_ratio": "9:16", "duration": "6s", "resolution": "1080p", "generate_audio": False,
         "seed": 4}),
    "fal-ai/veo3.1/fast": (
        {"prompt": "p", "duration": "8s"},
        {"prompt": "p", "duration": "8s"}),
    "fal-ai/veo3.1/image-to-video": (
        {"prompt": "p", "image": IMG, "aspect_ratio": "auto"},
        {"prompt": "p", "image_url": IMG, "aspect_ratio": "auto"}),
    "fal-ai/veo3.1/first-last-frame-to-video": (
        {"prompt": "p", "image": IMG, "last_image": IMG + "?last", "duration": "4s"},
        {"prompt": "p", "first_frame_url": IMG, "last_frame_url": IMG + "?last", "duration": "4s"}),
    "fal-ai/krea-wan-14b/text-to-video": (
        {"prompt": "p", "num_frames": 90, "seed": 9},
        {"prompt": "p", "num_frames": 90, "seed": 9}),
    "tenstorrent/wan2.2-t2v": (
        {"prompt": "p"},
        {"prompt": "p", "negative_prompt": "low quality", "num_inference_steps": 12, "seed": 0}),
    "tenstorrent/wan2.2-i2v": (
        {"prompt": "p", "image": ImageInput(data=b"png"), "steps": 30, "seed": 5},
        {"prompt": "p", "image_prompts": ImageInput(data=b"png"), "negative_prompt": "low quality",
         "num_inference_steps": 30, "seed": 5}),
    "fal-ai/krea-wan-14b": (
        {"prompt": "p", "resolution": "576x320", "num_frames": 45, "steps": 4, "seed": 7, "strength": 0.8},
        {"prompt": "p", "width": 576, "height": 320, "num_blocks": 4, "num_denoising_steps": 4, "seed": 7,
         "strength": 0.8}),
    "local/krea-realtime": (
        {"prompt": "p", "resolution": "832x480"},
        {"prompt": "p", "width": 832, "height": 480}),
    "local/krea-offline": (
        {"prompt": "p", "resolution": "576x320", "num_frames": 45, "seed": 3, "steps": 2},
        {"prompt": "p", "resolution": "576x320", "num_frames": 45, "seed": 3, "steps": 2}),
}

# model id -> (an invalid request, the field named, a fragment of the message)
INVALID = {
    "fal-ai/fast-animatediff/text-to-video": ({"prompt": "p", "resolution": "8k"}, "resolution", "square_hd"),
    "fal-ai/fast-animatediff/turbo/text-to-video": ({"prompt": "p", "steps": 50}, "steps", "at most 8"),
    "fal-ai/wan-25-preview/image-to-video": ({"prompt": "p", "image": IMG, "duration": 7}, "duration", "5, 10"),
    "fal-ai/wan/v2.2-a14b/image-to-video": ({"prompt": "p", "image": "ftp://x"}, "image", "http(s) URL"),
    "fal-ai/kling-video/v2.5-turbo/pro/image-to-video": ({"prompt": "p", "image": IMG, "guidance": 2}, "guidance", "at most 1"),
    "fal-ai/veo3.1": ({"prompt": "p", "duration": "5s"}, "duration", "4s, 6s, 8s"),
    "fal-ai/veo3.1/fast": ({"prompt": ""}, "prompt", "is required"),
    "fal-ai/veo3.1/image-to-video": ({"prompt": "p", "image": IMG, "aspect_ratio": "4:3"}, "aspect_ratio", "auto, 16:9, 9:16"),
    "fal-ai/veo3.1/first-last-frame-to-video": ({"prompt": "p", "image": IMG}, "last_image", "is required"),
    "fal-ai/krea-wan-14b/text-to-video": ({"prompt": "p", "num_frames": 80}, "num_frames", "6 plus a multiple of 12"),
    "tenstorrent/wan2.2-t2v": ({"prompt": "p", "steps": 2}, "steps", "at least 4"),
    "tenstorrent/wan2.2-i2v": ({"prompt": "p"}, "image", "is required"),
    "fal-ai/krea-wan-14b": ({"prompt": "p", "resolution": "833x480"}, "resolution", "multiples of 8"),
    "local/krea-realtime": ({"prompt": "p", "seed": 2**25}, "seed", "at most"),
    "local/krea-offline": ({"prompt": "p", "resolution": "830x480"}, "resolution", "832x480, 480x832, 576x320"),
}


def test_the_table_covers_every_catalog_model():
    ids = {m.id for m in catalog().all()}
    assert ids == set(CASES) == set(INVALID)


@pytest.mark.parametrize("model_id", sorted(CASES))
def test_a_valid_request_maps_to_exactly_the_endpoints_fields(model_id):
    request, expected = CASES[model_id]
    assert catalog().get(model_id).map_request(request) == expected


@pytest.mark.parametrize("model_id", sorted(INVALID))
def test_an_invalid_request_is_refused_naming_the_field_and_what_is_allowed(model_id):
    request, field, fragment = INVALID[model_id]
    with pytest.raises(CatalogError) as caught:
        catalog().get(model_id).map_request(request)
    assert field in caught.value.errors
    assert fragment in caught.value.errors[field]


@pytest.mark.parametrize("model_id", sorted(CASES))
def test_a_field_the_model_does_not_take_is_refused(model_id):
    model = catalog().get(model_id)
    foreign = next(name for name in ("fps", "audio", "strength", "last_image", "guidance") if model.param(name) is None)
    with pytest.raises(CatalogError) as caught:
        model.map_request({**CASES[model_id][0], foreign: "1"})
    assert f"not accepted by {model_id}" in caught.value.errors[foreign]


def test_the_realtime_mapping_is_what_the_krea_socket_accepts(fake_fal):
    token = fake_fal.mint_token(["krea-wan-14b"])
    fields = catalog().get("fal-ai/krea-wan-14b").map_request(
        {"prompt": "a fox", "resolution": "576x320", "num_frames": 9, "steps": 4, "seed": 7, "strength": 1})
    with websockets.sync.client.connect(f"{fake_fal.ws_url}/fal-ai/krea-wan-14b/ws?fal_jwt_token={token}") as ws:
        assert json.loads(ws.recv(timeout=5))["status"] == "ready"
        ws.send(msgpack.packb(fields))
        first = ws.recv(timeout=5)
        assert isinstance(first, bytes) and first[:2] == b"\xff\xd8", first
    assert fake_fal.ws_sessions[-1]["params"]["num_blocks"] == 1


@pytest.mark.django_db
def test_the_api_lists_the_catalog_with_inputs_and_configuration(api, settings):
    settings.FAL_KEY = None
    settings.CLOUD_VIDEO_GENERATION_URL = "http://127.0.0.1:9/v1/videos/generations"
    body = api.get("/api/models/").json()
    assert body["count"] == len(CASES)
    by_id = {m["id"]: m for m in body["models"]}
    assert by_id["fal-ai/veo3.1"]["configured"] is False
    assert by_id["tenstorrent/wan2.2-t2v"]["configured"] is True
    assert by_id["local/krea-realtime"]["kind"] == "realtime"
    duration = next(i for i in by_id["fal-ai/veo3.1"]["inputs"] if i["name"] == "duration")
    assert duration == {"name": "duration", "field": "duration", "type": "choice", "required": False,
                        "default": "8s", "choices": ["4s", "6s", "8s"], "choice_labels": ["4 s", "6 s", "8 s"],
                        "label": "Duration", "unit": "s", "help": "How long the video is."}
    assert by_id["fal-ai/veo3.1"]["typical_wait"] == "usually 1-3 minutes"
    assert by_id["fal-ai/veo3.1"]["kind_title"] == "Text to video"
    only_i2v = api.get("/api/models/?kind=image-to-video").json()["models"]
    assert {m["kind"] for m in only_i2v} == {"image-to-video"}
    assert api.get("/api/models/fal-ai/veo3.1/").json()["title"] == "Veo 3.1"
    assert api.get("/api/models/no/such/").status_code == 404


@pytest.mark.django_db
@pytest.mark.parametrize(("model_id", "query", "cost"), [
    ("fal-ai/wan-25-preview/image-to-video", "resolution=720p&duration=10", "1.00"),
    ("fal-ai/wan-25-preview/image-to-video", "", "0.75"),
    ("fal-ai/wan/v2.2-a14b/image-to-video", "resolution=480p&num_frames=80&fps=16", "0.20"),
    ("fal-ai/kling-video/v2.5-turbo/pro/image-to-video", "duration=10", "0.70"),
    ("fal-ai/veo3.1/fast", "duration=4s", "0.40"),
    ("fal-ai/veo3.1", "", "1.60"),
    ("local/krea-realtime", "", "0.00"),
    ("local/krea-offline", "num_frames=597", "0.00"),
    ("tenstorrent/wan2.2-t2v", "", None),
])
def test_the_estimate_follows_the_price_table(api, model_id, query, cost):
    response = api.get(f"/api/models/{model_id}/estimate?{query}")
    assert response.status_code == 200
    assert response.json()["estimated_cost"] == cost
    assert response.json()["currency"] == "USD"


@pytest.mark.django_db
def test_an_estimate_with_a_bad_value_names_it(api):
    response = api.get("/api/models/fal-ai/veo3.1/estimate?duration=30s")
    assert response.status_code == 400
    assert "duration" in response.json()["fields"]


def test_every_input_a_page_shows_has_a_label_and_help():
    """Pages render inputs from the catalog: each needs words a person understands."""
    from model_control.backends import catalog

    for model in catalog().all():
        for described in model.describe()["inputs"]:
            assert described["label"] and described["label"][0].isupper(), (model.id, described)
            assert "_" not in described["label"], (model.id, described)
            assert described["help"].endswith("."), (model.id, described)
            if "choices" in described:
                assert len(described["choice_labels"]) == len(described["choices"])
        assert model.typical_wait_text is None if model.realtime else model.typical_wait_text.startswith("usually ")
    animatediff = catalog().require("fal-ai/fast-animatediff/text-to-video")
    assert animatediff.param("resolution").choice_label("landscape_16_9") == "Landscape 16:9"
    assert catalog().require("fal-ai/wan-25-preview/image-to-video").param("duration").choice_label("10") == "10 s"
    flf = catalog().require("fal-ai/veo3.1/first-last-frame-to-video").describe()["inputs"]
    assert [i["label"] for i in flf if i["type"] == "image"] == ["First frame", "Last frame"]
