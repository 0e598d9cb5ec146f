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

import logging
import threading
import time
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


class PipelineHost:
    """The process's one pipeline: loaded on first use (or at worker start), then reused."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._loaded: LoadedPipeline | None = None
        self.loads = 0  # how many times this process built a pipeline

    def get(self) -> LoadedPipeline:
        with self._lock:
            if self._loaded is None:
                self._loaded = load()
                self.loads += 1
            return self._loaded

    @property
    def loaded(self) -> LoadedPipeline | None:
        return self._loaded

    def unload(self) -> None:
        """Forget the pipeline (its memory goes with the last reference)."""
        with self._lock:
            self._loaded = None


host = PipelineHost()
