"""The local Krea pipeline, loaded once per process and kept warm.

A GPU worker (Celery queue ``gpu``, one process per GPU) or, in the embedded mode, the web
process holds one :class:`~videogen.pipeline.PipelineSession` and runs every realtime session
and offline job on it, one at a time. Which pipeline it holds is ``STUDIO_PIPELINE``:

* ``full``: the Krea 14B weights under ``STUDIO_MODELS_DIR/krea-realtime-video`` on the
  device (bfloat16 on a GPU);
* ``tiny``: the tiny configuration with deterministic random weights (frames are patterns,
  not video): tests, demos, a machine with no GPU;
* ``auto`` (default): ``full`` when the weights are there and CUDA is available, else ``tiny``.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from django.conf import settings

logger = logging.getLogger(__name__)


class PipelineUnavailable(RuntimeError):
    """The local pipeline cannot be loaded here; the message says what is missing."""


@dataclass(frozen=True)
class LoadedPipeline:
    session: Any  # videogen.pipeline.PipelineSession
    kind: str  # "full" | "tiny"
    name: str
    device: str
    dtype: str
    attention: str
    random_weights: bool
    load_s: float
    loaded_at: float

    def describe(self) -> dict[str, Any]:
        return {"kind": self.kind, "name": self.name, "device": self.device, "dtype": self.dtype,
                "attention": self.attention, "random_weights": self.random_weights,
                "load_s": round(self.load_s, 2), "loaded_at": self.loaded_at}


def _device(torch) -> Any:
    choice = settings.STUDIO_PIPELINE_DEVICE
    if choice == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(choice)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise PipelineUnavailable(f"STUDIO_PIPELINE_DEVICE is {choice} but this process sees no CUDA device")
    return device


def _has_weights() -> bool:
    from videogen.pipeline import weights

    return not weights.expected_layout(settings.MODELS_DIR).missing()


GiB = 2**30
WORKING_MEMORY_BYTES = 6 * GiB  # activations of a block and of the VAE decode at 832x480, with room
VAE_BYTES = GiB // 2


@dataclass(frozen=True)
class MemoryNeed:
    """GPU memory the full pipeline needs, by part (bytes)."""

    dit: int
    text_encoder: int
    vae: int
    kv_cache: int
    working: int
    size: tuple[int, int]
    # the VAE's streaming state at ``size``: the decoder's and encoder's causal-conv caches and
    # Krea's decoded frames kept for the anchor re-encode (videogen.pipeline.memory)
    vae_caches: int = 0

    @property
    def total(self) -> int:
        return self.dit + self.text_encoder + self.vae + self.kv_cache + self.vae_caches + self.working

    def describe(self) -> str:
        def gib(n: int) -> str:
            return f"{n / GiB:.1f} GiB"

        return (f"{gib(self.total)} (DiT weights {gib(self.dit)}, text encoder {gib(self.text_encoder)}, "
                f"VAE {gib(self.vae)}, KV cache at {self.size[0]}x{self.size[1]} {gib(self.kv_cache)}, "
                f"VAE encoder and decoder caches {gib(self.vae_caches)}, working memory {gib(self.working)})")


def memory_need(size: tuple[int, int] = (832, 480)) -> MemoryNeed:
    """What the Krea 14B pipeline needs in bf16 (2 bytes a value) at ``size``: weights, the KV
    cache, the VAE's encoder and decoder caches, and working memory."""
    from videogen.pipeline import KREA_14B_CONFIG as config
    from videogen.pipeline.memory import vae_stream_bytes
    from videogen.pipeline.text_encoder import umt5_xxl_config

    bytes_per_value = 2  # bf16
    umt5 = umt5_xxl_config()
    d, f, layers = umt5["d_model"], umt5["d_ff"], umt5["num_layers"]
    inner = umt5["num_heads"] * umt5["d_kv"]
    text_params = umt5["vocab_size"] * d + layers * (4 * d * inner + 3 * d * f + 2 * d)
    return MemoryNeed(dit=config.dit.num_parameters() * bytes_per_value, text_encoder=text_params * bytes_per_value,
                      vae=VAE_BYTES, kv_cache=config.kv_cache_bytes(*size, bytes_per_value=bytes_per_value),
                      working=WORKING_MEMORY_BYTES, size=size,
                      vae_caches=vae_stream_bytes(*size, config, bytes_per_value=bytes_per_value).total)


def check_gpu_memory(device, need: MemoryNeed) -> None:
    """Raise ``PipelineUnavailable`` naming what is needed when ``device`` has less free."""
    import torch

    free, total = torch.cuda.mem_get_info(device)
    if free >= need.total:
        return
    name = torch.cuda.get_device_name(device)
    raise PipelineUnavailable(
        f"the Krea 14B pipeline needs about {need.describe()} of GPU memory; {name} ({device}) has "
        f"{free / GiB:.1f} GiB free of {total / GiB:.1f} GiB. Free the GPU (another process holds "
        f"{(total - free) / GiB:.1f} GiB), give this worker a larger GPU, or run STUDIO_PIPELINE=tiny.")


def load() -> LoadedPipeline:
    """Build the pipeline ``STUDIO_PIPELINE`` asks for (slow for ``full``: minutes)."""
    import torch

    from videogen import pipeline
    from videogen.pipeline.attention import resolve_backend

    device = _device(torch)
    kind = settings.STUDIO_PIPELINE
    if kind == "auto":
        kind = "full" if device.type == "cuda" and _has_weights() else "tiny"
    t0 = time.perf_counter()
    if kind == "full":
        from videogen.pipeline import weights

        missing = weights.expected_layout(settings.MODELS_DIR).missing()
        if missing:
            raise PipelineUnavailable("the Krea weights are not all there (python manage.py download_models); "
                                      f"missing: {'; '.join(missing)}")
        if device.type == "cuda":
            check_gpu_memory(device, memory_need())
        session = pipeline.load_pipeline(str(settings.MODELS_DIR), device=device,
                                         dtype=torch.bfloat16 if device.type == "cuda" else torch.float32)
    else:
        if device.type == "cpu":
            torch.set_num_threads(pipeline.recommended_cpu_threads())
        session = pipeline.build_tiny_pipeline(device)
    loaded = LoadedPipeline(session=session, kind=kind, name=session.config.name, device=str(device),
                            dtype=str(session.dtype).replace("torch.", ""), attention=resolve_backend(device),
                            random_weights=session.random_weights, load_s=time.perf_counter() - t0,
                            loaded_at=time.time())
    logger.info("local pipeline %s loaded on %s in %.1f s (attention: %s)", loaded.name, loaded.device,
                loaded.load_s, loaded.attention)
    return loaded


def is_out_of_memory(exc: BaseException) -> bool:
    """Whether ``exc`` is the device running out of memory (CUDA's, or any torch OOM)."""
    import torch

    return isinstance(exc, torch.OutOfMemoryError) or "out of memory" in str(exc).lower()


class PipelineHost:
    """The process's one pipeline: loaded once (at GPU worker start, or on first use), then
    reused by every session and job, one at a time."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._loaded: LoadedPipeline | None = None
        self.loads = 0  # how many times this process built a pipeline
        self.state = "not loaded"  # not loaded | loading | ready | failed
        self.error: str | None = None
        self.runs = 0  # sessions and jobs served
        self.out_of_memory = 0  # runs that ended in an out-of-memory error
        self.current: str | None = None  # what runs now ("realtime <id>", "job <id>")

    def get(self) -> LoadedPipeline:
        """The pipeline, loading it first if needed (another caller waits for that load)."""
        with self._lock:
            if self._loaded is None:
                self.state, self.error = "loading", None
                try:
                    self._loaded = load()
                except Exception as exc:
                    self.state, self.error = "failed", str(exc)
                    raise
                self.loads += 1
                self.state = "ready"
            return self._loaded

    @property
    def loaded(self) -> LoadedPipeline | None:
        return self._loaded

    def preload(self) -> threading.Thread:
        """Load in the background now, so the first session does not wait for it."""

        def run() -> None:
            try:
                self.get()
            except Exception:  # the state says why; the next session reports it to its client
                logger.exception("preloading the local pipeline failed")

        thread = threading.Thread(target=run, name="pipeline-preload", daemon=True)
        thread.start()
        return thread

    @contextlib.contextmanager
    def running(self, what: str) -> Iterator[None]:
        """Context for one session or job on the pipeline (counted, and shown by /health)."""
        self.current = what
        try:
            yield
        finally:
            self.current = None
            self.runs += 1

    def recover_from_out_of_memory(self) -> None:
        """After an OOM: drop the stream's state (its KV cache and activations) and give the
        memory back, so the next session starts with the weights alone (PyTorch otherwise
        keeps the freed blocks cached, and a cache still referenced keeps them in use)."""
        import gc

        import torch

        self.out_of_memory += 1
        loaded = self._loaded
        if loaded is not None:
            loaded.session.stop()
            loaded.session.cache = None
            loaded.session._context = None
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
        logger.warning("the local pipeline ran out of memory; its stream state was dropped and the cache freed")

    def describe(self) -> dict[str, Any]:
        """For /health: what is loaded, what runs, what went wrong."""
        out: dict[str, Any] = {"state": self.state, "runs": self.runs, "out_of_memory": self.out_of_memory,
                               "running": self.current}
        if self._loaded is not None:
            out["pipeline"] = self._loaded.describe()
        if self.error:
            out["error"] = self.error
        out["gpu"] = gpu_memory(self._loaded.device if self._loaded is not None else None)
        return out

    def unload(self) -> None:
        """Forget the pipeline (its memory goes with the last reference)."""
        with self._lock:
            self._loaded = None
            self.state, self.error = "not loaded", None


def gpu_memory(device: str | None) -> dict[str, Any] | None:
    """The GPU this process uses, and its memory (None without CUDA or torch loaded)."""
    import importlib
    import sys

    if "torch" not in sys.modules:  # never import torch just to say there is none
        return None
    # The loader may be importing torch on another thread right now: sys.modules already holds
    # the half-made module then, and touching it raised "partially initialized module". An
    # import waits for that import to finish (Python's per-module import lock).
    torch = importlib.import_module("torch")
    if not torch.cuda.is_available():
        return None
    index = torch.device(device if device and device.startswith("cuda") else "cuda").index or 0
    free, total = torch.cuda.mem_get_info(index)
    major, minor = torch.cuda.get_device_capability(index)
    return {"name": torch.cuda.get_device_name(index), "capability": f"{major}.{minor}", "index": index,
            "memory_total_mb": total // 2**20, "memory_free_mb": free // 2**20,
            "memory_allocated_mb": torch.cuda.memory_allocated(index) // 2**20}


host = PipelineHost()
