"""fal's official Python client (``fal-client``, a dev dependency) against the fake fal: the
fake serves every URL the client calls (issue 18; docs/testing.md, "Fake providers").

The client takes its base URLs from module constants (``https://`` hosts, only
``FAL_RUN_HOST``/``FAL_QUEUE_RUN_HOST`` from the environment, the REST and CDN URLs fixed), so
the fixture points those constants at the loopback fake; everything else is the client as
shipped: its requests, headers, retries and upload fallback.
"""

from __future__ import annotations

import httpx
import pytest

from tests.fakes.fal import FakeFal

fal_client = pytest.importorskip("fal_client")
from fal_client import client as fal_module  # noqa: E402

pytestmark = pytest.mark.timeout(60)
I2V = "fal-ai/wan/v2.2-a14b/image-to-video"
T2V = "fal-ai/fast-animatediff/text-to-video"


@pytest.fixture
def fal():
    with FakeFal() as fake:
        yield fake


@pytest.fixture
def official(fal, monkeypatch):
    """``fal_client.SyncClient`` with the fake's key and every base URL on the fake."""
    monkeypatch.setattr(fal_module, "QUEUE_URL_FORMAT", fal.base_url + "/")
    monkeypatch.setattr(fal_module, "RUN_URL_FORMAT", fal.base_url + "/run/")
    monkeypatch.setattr(fal_module, "REST_URL", fal.base_url + "/rest")
    monkeypatch.setattr(fal_module, "CDN_URL", fal.base_url + "/cdn")
    monkeypatch.setattr(fal_module, "REALTIME_URL_FORMAT", fal.ws_url + "/")
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")  # httpx honours proxy variables
    return fal_client.SyncClient(key=fal.key)


def calls(fal: FakeFal, method: str, prefix: str) -> list[dict]:
    return [c for c in fal.calls if c["method"] == method and c["path"].startswith(prefix)]


def test_submit_status_and_result_follow_the_queue(fal, official):
    handle = official.submit(I2V, {"prompt": "a fox", "image_url": "https://example.invalid/fox.png", "seed": 7})
    first = handle.status(with_logs=True)
    assert isinstance(first, fal_client.Queued | fal_client.InProgress)
    seen = [type(s).__name__ for s in handle.iter_events(with_logs=True, interval=0.05)]
    assert seen[-1] == "Completed" and "InProgress" in seen
    done = official.status(I2V, handle.request_id, with_logs=True)  # rebuilt from owner/alias
    assert isinstance(done, fal_client.Completed) and done.metrics["inference_time"] > 0
    assert [entry["message"] for entry in done.logs][-1] == "Done"
    result = official.result(I2V, handle.request_id)
    assert result["seed"] == 7 and result["video"]["content_type"] == "video/mp4"
    assert httpx.get(result["video"]["url"]).content[4:8] == b"ftyp"  # a real MP4 on the fake CDN

    submit = calls(fal, "POST", "/fal-ai/")[0]
    assert submit["path"] == f"/{I2V}" and submit["headers"]["Authorization"] == f"Key {fal.key}"
    assert submit["headers"]["User-Agent"].startswith("fal-client/")
    rid = handle.request_id
    polls = calls(fal, "GET", f"/fal-ai/wan/requests/{rid}/status")
    assert polls and {c["query"]["logs"] for c in polls} == {"true", "false"}  # result() polls without logs
    assert calls(fal, "GET", f"/fal-ai/wan/requests/{rid}")[-1]["path"] == f"/fal-ai/wan/requests/{rid}"


def test_subscribe_and_run(fal, official):
    updates = []
    result = official.subscribe(T2V, {"prompt": "waves"}, with_logs=True, on_queue_update=updates.append,
                                interval=0.05)
    assert result["video"]["url"].endswith(".mp4") and isinstance(updates[-1], fal_client.Completed)
    ran = official.run(T2V, {"prompt": "waves"})
    assert ran["video"]["file_name"].endswith(".mp4")
    assert calls(fal, "POST", f"/run/{T2V}")


def test_cancel_and_the_errors_the_client_raises(fal, official):
    fal.processing_time = 30
    handle = official.submit(T2V, {"prompt": "slow"})
    handle.cancel()
    assert calls(fal, "PUT", f"/fal-ai/fast-animatediff/requests/{handle.request_id}/cancel")
    with pytest.raises(fal_client.FalClientHTTPError) as cancelled:
        handle.get(interval=0.05)
    assert cancelled.value.status_code == 499 and cancelled.value.error_type == "client_cancelled"

    fal.reject_next = 1
    with pytest.raises(fal_client.FalClientHTTPError) as rejected:
        official.submit(T2V, {"prompt": "x"})
    assert rejected.value.status_code == 422 and rejected.value.message[0]["loc"] == ["body", "prompt"]

    fal.rate_limited = 2  # 429 is retried by the client itself
    before = len(calls(fal, "POST", f"/{T2V}"))
    assert official.submit(T2V, {"prompt": "x"}).request_id
    assert len(calls(fal, "POST", f"/{T2V}")) - before == 3

    fal.unauthorized = True
    with pytest.raises(fal_client.FalClientHTTPError) as denied:
        official.status(T2V, handle.request_id)
    assert denied.value.status_code == 401


def test_upload_to_the_cdn_with_a_cached_storage_token(fal, official):
    url = official.upload(b"\x89PNG first", "image/png", file_name="first.png")
    again = official.upload(b"\x89PNG second", "image/png", file_name="second.png")
    assert httpx.get(url).content == b"\x89PNG first" and httpx.get(again).content == b"\x89PNG second"
    tokens = calls(fal, "POST", "/rest/storage/auth/token")
    assert len(tokens) == 1 and tokens[0]["query"] == {"storage_type": "fal-cdn-v3"}
    upload = calls(fal, "POST", "/cdn/files/upload")[0]
    assert upload["headers"]["Authorization"] == f"Bearer {fal.storage_tokens[0]['token']}"
    assert upload["headers"]["X-Fal-File-Name"] == "first.png" and upload["headers"]["Content-Type"] == "image/png"
    assert [u["via"] for u in fal.uploads] == ["cdn", "cdn"]


def test_upload_falls_back_to_storage_upload_initiate(fal, official):
    fal.upload_errors = 1  # the CDN refuses once: the client tries its fallback repository
    url = official.upload(b"GIF89a", "image/gif", file_name="cat.gif",
                          lifecycle=fal_client.StorageSettings(expires_in="1h"))
    assert httpx.get(url).content == b"GIF89a"
    initiate = calls(fal, "POST", "/rest/storage/upload/initiate")[0]
    assert initiate["query"] == {"storage_type": "gcs"} and initiate["headers"]["Authorization"] == f"Key {fal.key}"
    assert initiate["headers"]["X-Fal-Object-Lifecycle-Preference"] == '{"expiration_duration_seconds": 3600}'
    put = calls(fal, "PUT", "/cdn/signed/")[0]
    assert put["query"]["signature"] and put["body"] == b"GIF89a"
    assert fal.uploads[-1]["via"] == "storage" and fal.uploads[-1]["content_type"] == "image/gif"
    assert fal.uploads[-1]["lifecycle"] == '{"expiration_duration_seconds": 3600}'

    direct = official.upload(b"text", "text/plain", repository="fal")  # no file name: upload.bin
    assert httpx.get(direct).content == b"text" and fal.uploads[-1]["file_name"] == "upload.bin"
    started = httpx.post(f"{fal.base_url}/rest/storage/upload/initiate?storage_type=gcs",
                         json={"file_name": "x.txt", "content_type": "text/plain"},
                         headers={"Authorization": f"Key {fal.key}"}).json()
    forged = started["upload_url"].split("?")[0] + "?signature=forged"
    assert httpx.put(forged, content=b"x").status_code == 403  # the signature is the credential


def test_a_big_upload_goes_in_parts(fal, official, monkeypatch, tmp_path):
    monkeypatch.setattr(fal_module, "MULTIPART_THRESHOLD", 1000)  # not 100 MB in a unit test
    monkeypatch.setattr(fal_module, "MULTIPART_CHUNK_SIZE", 400)
    data = bytes(range(256)) * 6  # 1536 bytes: 4 parts
    url = official.upload(data, "application/octet-stream", file_name="big.bin")
    assert httpx.get(url).content == data and fal.uploads[-1]["via"] == "multipart"
    assert len(calls(fal, "PUT", "/cdn/files/")) == 4 and len(calls(fal, "POST", "/cdn/files/upload/multipart")) == 1
    path = tmp_path / "clip.mp4"
    path.write_bytes(data[::-1])
    assert httpx.get(official.upload_file(path)).content == data[::-1]
    assert fal.uploads[-1]["file_name"] == "clip.mp4" and fal.uploads[-1]["content_type"] == "video/mp4"


def test_a_realtime_token_minted_by_the_client_opens_the_krea_socket(fal, official):
    with official.realtime("fal-ai/krea-wan-14b", path="/ws", decode_message=lambda data: {"jpeg": data}) as conn:
        assert conn.recv() == {"status": "ready"}
        conn.send({"prompt": "a fox", "num_blocks": 1, "width": 64, "height": 64, "seed": 1})
        frames = []
        while (message := conn.recv()) is not None and "jpeg" in message:
            frames.append(message["jpeg"])
        assert message is not None and message["status"] == "completed"
    assert len(frames) == 9 and all(frame[:2] == b"\xff\xd8" for frame in frames)
    minted = fal.minted_tokens[-1]
    assert minted["allowed_apps"] == ["krea-wan-14b"] and minted["token_expiration"] == 120
    assert calls(fal, "POST", "/rest/tokens/")[0]["headers"]["Authorization"] == f"Key {fal.key}"
    assert fal.ws_handshakes[-1]["status"] == 101
