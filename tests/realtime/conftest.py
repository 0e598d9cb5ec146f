"""Fixtures of the realtime tests: a GPU worker in the services pass, the tiny pipeline."""

from __future__ import annotations

import pytest
from django.conf import settings as django_settings

from tests.support.processes import celery_worker, worker_env


@pytest.fixture(scope="module")
def worker_media(tmp_path_factory):
    return tmp_path_factory.mktemp("gpu-media")


@pytest.fixture(scope="module")
def gpu_worker(django_db_setup, django_db_blocker, worker_media):
    """In the services pass a real ``celery worker -Q gpu`` process hosting the tiny pipeline
    (it loads it once, on its first session); in the embedded pass the web process's gpu thread."""
    if django_settings.STUDIO_EMBEDDED:
        yield None
        return
    env = {**worker_env(), "STUDIO_PIPELINE": "tiny", "STUDIO_PIPELINE_DEVICE": "cpu",
           "STUDIO_MEDIA_ROOT": str(worker_media)}
    with celery_worker(env, queues="gpu", app="studio", name="gpu") as process:
        yield process


@pytest.fixture
def local(settings, gpu_worker, worker_media):
    """The local backend, ready: the tiny pipeline on the CPU, recordings where the test reads them."""
    settings.STUDIO_PIPELINE = "tiny"
    settings.STUDIO_PIPELINE_DEVICE = "cpu"
    if gpu_worker is not None:
        settings.MEDIA_ROOT = worker_media
    return gpu_worker
