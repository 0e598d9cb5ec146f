"""Studio's own Krea Realtime Video 14B pipeline (causal Wan 2.1 DiT), pure PyTorch.

Nothing here imports Django, and importing the package imports nothing heavy: its names are
loaded on first use (PEP 562), so ``import videogen.pipeline.timeline`` or
``videogen.pipeline.config`` does not import torch. See docs/pipeline.md. Public API:

- configs: :class:`DiTConfig`, :class:`PipelineConfig`, ``KREA_14B_CONFIG``, ``TINY_CONFIG``;
- the model: :class:`CausalWanDiT`, :func:`build_dit`, :func:`load_original_state_dict`;
- the schedule: :class:`FlowSchedule`;
- attention: ``videogen.pipeline.attention.attention``, :func:`choose_backend`,
  :func:`resolve_backend`;
- streaming: :class:`PipelineSession`, :class:`GenerationParams`, :class:`Block`,
  :class:`Timeline`;
- :func:`load_pipeline`: the real weights from ``MODELS_DIR`` (weights.ModelLayout);
- :func:`build_tiny_pipeline`: the tiny configuration with deterministic RANDOM weights
  (tests, a machine with no GPU; its frames are patterns, not video).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

# name -> the submodule that defines it
_EXPORTS = {
    "KREA_14B_CONFIG": "config", "TINY_CONFIG": "config", "DiTConfig": "config", "PipelineConfig": "config",
    "tiny_dit_config": "config", "tiny_pipeline_config": "config", "recommended_cpu_threads": "config",
    "CausalWanDiT": "dit", "build_dit": "dit", "load_original_state_dict": "dit_weights",
    "to_original_state_dict": "dit_weights", "KVCache": "kv_cache",
    "FlowSchedule": "schedule",
    "choose_backend": "attention", "resolve_backend": "attention",
    "Block": "session", "GenerationParams": "session", "PipelineSession": "session", "denoise_block": "stream",
    "Timeline": "timeline",
    "build_tiny_pipeline": "builders", "build_random_pipeline": "builders", "load_pipeline": "builders",
}

__all__ = [
    "KREA_14B_CONFIG", "TINY_CONFIG", "Block", "CausalWanDiT", "DiTConfig", "FlowSchedule", "GenerationParams",
    "KVCache", "PipelineConfig", "PipelineSession", "Timeline", "build_dit", "build_random_pipeline",
    "build_tiny_pipeline", "choose_backend", "denoise_block", "load_original_state_dict", "load_pipeline",
    "recommended_cpu_threads", "resolve_backend", "tiny_dit_config", "tiny_pipeline_config", "to_original_state_dict",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value  # the next lookup is a plain attribute
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))


if TYPE_CHECKING:  # for type checkers and IDEs; nothing is imported at run time
    from .attention import choose_backend, resolve_backend
    from .builders import build_random_pipeline, build_tiny_pipeline, load_pipeline
    from .config import (
        KREA_14B_CONFIG,
        TINY_CONFIG,
        DiTConfig,
        PipelineConfig,
        recommended_cpu_threads,
        tiny_dit_config,
        tiny_pipeline_config,
    )
    from .dit import CausalWanDiT, build_dit
    from .dit_weights import load_original_state_dict, to_original_state_dict
    from .kv_cache import KVCache
    from .schedule import FlowSchedule
    from .session import Block, GenerationParams, PipelineSession
    from .stream import denoise_block
    from .timeline import Timeline
