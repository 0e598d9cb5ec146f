"""Videos in an S3-compatible bucket (django-storages) instead of MEDIA_ROOT: a job's files
land in the bucket and are served and deleted from there. The bucket is moto's S3 server on
loopback, as the fakes stand in for fal."""

from __future__ import annotations

import time

import pytest

from tests.support.processes import free_port

pytestmark = pytest.mark.django_db(transaction=True)
BUCKET = "studio-videos"


@pytest.fixture
def bucket(settings):
    boto3 = pytest.importorskip("boto3")
    server_module = pytest.importorskip("moto.server")
    port = free_port()
    server = server_module.ThreadedMotoServer(ip_address="127.0.0.1", port=port)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    credentials = {"aws_access_key_id": "studio", "aws_secret_access_key": "studio-secret-key",
                   "region_name": "us-east-1"}
    client = boto3.client("s3", endpoint_url=endpoint, **credentials)
    client.create_bucket(Bucket=BUCKET)
    settings.STORAGES = {
        "default": {"BACKEND": "storages.backends.s3.S3Storage", "OPTIONS": {
            "bucket_name": BUCKET, "endpoint_url": endpoint, "region_name": "us-east-1",
            "access_key": "studio", "secret_key": "studio-secret-key", "location": "media",
            "file_overwrite": False, "default_acl": None, "querystring_auth": True}},
        "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
    }
    yield client
    server.stop()


def keys(client) -> list[str]:
    return sorted(item["Key"] for item in client.list_objects_v2(Bucket=BUCKET).get("Contents", []))


def test_a_jobs_files_live_in_the_bucket(api, fake_fal, bucket):
    fake_fal.processing_time = 0.1
    job = api.post("/api/jobs/?wait=20", {"model": "fal-ai/fast-animatediff/text-to-video", "prompt": "to s3"},
                   format="json").json()
    assert job["status"] == "completed", job
    stored = keys(bucket)
    assert any(k.startswith("media/videos/") and k.endswith(".mp4") for k in stored)
    assert any(k.startswith("media/videos/") and k.endswith(".json") for k in stored)
    assert any(k.startswith("media/thumbnails/") and k.endswith(".jpg") for k in stored)
    mp4 = next(k for k in stored if k.endswith(".mp4"))
    served = api.get(f"/api/jobs/{job['id']}/video")
    assert b"".join(served.streaming_content) == bucket.get_object(Bucket=BUCKET, Key=mp4)["Body"].read()
    assert api.delete(f"/api/jobs/{job['id']}/").status_code == 204
    deadline = time.monotonic() + 5
    while keys(bucket) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert keys(bucket) == []
