"""Hosting the pipeline: loaded once per process and reused, a clear refusal when the GPU is
too small, an out-of-memory error that ends one session and leaves the worker serving, and
/health telling what each GPU holds and runs."""

from __future__ import annotations

import time

import pytest
import torch
from asgiref.sync import sync_to_async
from django.conf import settings

from tests.support.processes import wait_for
from tests.support.realtime import RealtimeClient, params
from videogen.local import gpu_worker
from videogen.local.host import PipelineUnavailable, host, memory_need
from videogen.pipeline import PipelineSession

pytestmark = [pytest.mark.django_db(transaction=True)]


async def run_session(headers, **overrides):
    client = RealtimeClient("/ws/realtime/?backend=local", headers)
    assert (await client.connect())[0]
    await client.next(10)
    await client.send(params(**overrides))
    return await client.to_end(timeout=120)


def gpu_worker_names() -> list[str]:
    from runtime.workers import census

    return wait_for(lambda: census().consuming("gpu"), 10, "a GPU worker in the census")


@pytest.mark.modes
async def test_the_pipeline_is_loaded_once_and_reused_by_every_session(ws_headers, user, local):
    if settings.STUDIO_EMBEDDED:
        await sync_to_async(host.unload)()
        loads_before = host.loads
    else:  # the worker loaded it when it started, before any session
        names = await sync_to_async(gpu_worker_names)()
        states = await sync_to_async(wait_for)(
            lambda: (s := gpu_worker.worker_states(names)) and all(v and v["state"] == "ready" for v in s.values())
            and s, 60, "the GPU worker to load its pipeline at start")
        before = list(states.values())[0]
        assert before["pipeline"]["name"] == "tiny-random"
    headers = await sync_to_async(ws_headers)(user)
    for _ in range(2):
        seen = await run_session(headers, num_blocks=1)
        assert seen.last("completed") is not None
    if settings.STUDIO_EMBEDDED:
        assert host.loads == loads_before + 1 and host.state == "ready"
    else:
        def published_after_both():
            state = list(gpu_worker.worker_states(names).values())[0]
            return state if state and state["runs"] >= before["runs"] + 2 else None

        after = await sync_to_async(wait_for)(published_after_both, 30, "the worker's state after two sessions")
        assert after["pipeline"]["loaded_at"] == before["pipeline"]["loaded_at"], "the worker loaded it again"


def fake_cuda(monkeypatch, free_gib: float, total_gib: float = 80.0) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device=None: (int(free_gib * 2**30), int(total_gib * 2**30)))
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: "NVIDIA H100 80GB HBM3")


@pytest.fixture
def full_weights_present(settings, tmp_path):
    """The file layout of the real weights (empty files: the memory check comes before loading)."""
    root = tmp_path / "models"
    model = root / "krea-realtime-video"
    (model / "umt5-xxl").mkdir(parents=True)
    for name in ("krea-realtime-video-14b.safetensors", "Wan2.1_VAE.safetensors", "umt5-xxl/config.json",
                 "umt5-xxl/tokenizer.json"):
        (model / name).write_bytes(b"")
    settings.MODELS_DIR = root
    settings.STUDIO_PIPELINE, settings.STUDIO_PIPELINE_DEVICE = "full", "cuda"
    host.unload()
    yield
    host.unload()


def test_a_gpu_without_enough_free_memory_is_refused_with_what_is_needed(full_weights_present, monkeypatch):
    fake_cuda(monkeypatch, free_gib=8.0)
    with pytest.raises(PipelineUnavailable) as refused:
        host.get()
    message = str(refused.value)
    assert "needs about 53.7 GiB" in message and "KV cache at 832x480 7.1 GiB" in message
    assert "NVIDIA H100 80GB HBM3 (cuda) has 8.0 GiB free of 80.0 GiB" in message
    assert host.state == "failed" and host.error == message


async def test_a_session_on_a_gpu_that_is_too_small_ends_with_that_message(
        full_weights_present, monkeypatch, ws_headers, user):
    if not settings.STUDIO_EMBEDDED:
        pytest.skip("patches this process's torch: the embedded mode runs the session here")
    fake_cuda(monkeypatch, free_gib=20.0)
    seen = await run_session(await sync_to_async(ws_headers)(user), num_blocks=1)
    assert "needs about 53.7 GiB" in seen.errors[-1] and "20.0 GiB free" in seen.errors[-1]
    assert seen.close_code == 1000


def test_the_memory_need_follows_the_size():
    small, large = memory_need(size=(576, 320)), memory_need(size=(832, 480))
    assert small.dit == large.dit and small.kv_cache < large.kv_cache
    assert round(large.dit / 2**30, 1) == 26.6  # 14.29 B parameters in bf16


@pytest.fixture
def out_of_memory_once(monkeypatch):
    """The pipeline's second block of the next stream raises CUDA's out-of-memory error."""
    real = PipelineSession.generate_block
    calls = {"n": 0, "armed": True}

    def generate_block(self):
        calls["n"] += 1
        if calls["armed"] and calls["n"] == 2:
            calls["armed"] = False
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return real(self)

    monkeypatch.setattr(PipelineSession, "generate_block", generate_block)
    return calls


async def test_running_out_of_memory_ends_that_session_and_the_worker_serves_the_next(
        out_of_memory_once, ws_headers, user, local):
    if not settings.STUDIO_EMBEDDED:
        pytest.skip("patches this process's pipeline: the embedded mode runs the session here")
    headers = await sync_to_async(ws_headers)(user)
    ooms = host.out_of_memory
    failed = await run_session(headers, num_blocks=4)
    loads = host.loads
    error = failed.errors[-1]
    assert "ran out of memory generating 64x64" in error and "after 6 frames" in error
    assert failed.texts[-1]["video"] is not None  # the first block was recorded
    assert host.out_of_memory == ooms + 1 and host.state == "ready"
    assert host.loaded.session.cache is None  # the stream's KV cache was let go
    fine = await run_session(headers, num_blocks=2)
    assert fine.last("completed")["generated"] == 6 + 12
    assert host.loads == loads  # served by the same pipeline, not a reload


@pytest.mark.modes
async def test_health_tells_staff_what_the_gpu_holds_and_runs(ws_headers, user, admin_client, local):
    if not settings.STUDIO_EMBEDDED:
        names = await sync_to_async(gpu_worker_names)()
        await sync_to_async(wait_for)(
            lambda: all(v and v["state"] == "ready" for v in gpu_worker.worker_states(names).values()), 60,
            "the GPU worker to publish its state")
    client = RealtimeClient("/ws/realtime/?backend=local", await sync_to_async(ws_headers)(user))
    assert (await client.connect())[0]
    await client.next(10)
    await client.send({"prompt": "a fox", "width": 128, "height": 128, "num_blocks": 50})
    await client.status("started", timeout=90)
    report = (await sync_to_async(admin_client.get)("/health")).json()
    gpu = report["gpu"]
    assert gpu["sessions"]["local"] == {"streaming": 1}
    if settings.STUDIO_EMBEDDED:
        pipeline = gpu["pipeline"]
    else:
        pipeline = list(gpu["pipelines"].values())[0]
        assert pipeline["worker"] == gpu["gpu_workers"][0]
    assert pipeline["state"] == "ready" and pipeline["pipeline"]["name"] == "tiny-random"
    assert pipeline["pipeline"]["device"] == "cpu" and pipeline["gpu"] is None  # no CUDA here
    await client.disconnect()
    deadline = time.monotonic() + 30
    while (await sync_to_async(admin_client.get)("/health")).json()["gpu"]["sessions"].get("local"):
        assert time.monotonic() < deadline, "the session never ended"
        await __import__("asyncio").sleep(0.2)


def test_an_offline_job_out_of_memory_fails_saying_so_and_the_next_job_runs(out_of_memory_once, api, local):
    if not settings.STUDIO_EMBEDDED:
        pytest.skip("patches this process's pipeline: the embedded mode runs the job here")
    from tests.support.jobs import wait_until

    def post(**fields):
        response = api.post("/api/jobs/", {"model": "local/krea-offline", "prompt": "a fox", "resolution": "320x192",
                                           **fields}, format="json")
        assert response.status_code == 202, response.content[:300]
        return response.json()["id"]

    failed = wait_until(api, post(num_frames=30), timeout=120)
    assert failed["status"] == "failed" and failed["error_type"] == "out_of_memory"
    assert "ran out of memory making a 320x192 video" in failed["error_message"]
    loads = host.loads
    fine = wait_until(api, post(num_frames=18), timeout=120)
    assert fine["status"] == "completed" and host.loads == loads


def test_the_state_thread_waits_for_a_torch_import_in_progress(monkeypatch):
    """Two start-up threads of a GPU worker (the loader importing torch, the state heartbeat
    reading the GPU's memory): the reader waits for the import instead of reading the half-made
    module (issue 16: a 'partially initialized module' traceback)."""
    import importlib
    import sys
    import threading
    import types

    from videogen.local import host as host_module

    half = types.ModuleType("torch")  # what sys.modules holds while the loader imports torch
    finished = threading.Event()
    real_import = importlib.import_module

    def waiting_import(name, *args, **kwargs):
        if name == "torch":
            assert finished.wait(5), "the import never finished"
            return torch
        return real_import(name, *args, **kwargs)

    monkeypatch.setitem(sys.modules, "torch", half)
    monkeypatch.setattr(importlib, "import_module", waiting_import)
    threading.Timer(0.2, finished.set).start()
    assert host_module.gpu_memory("cpu") is None  # no CUDA here; the half-made module never touched
    assert finished.is_set()
