"""Studio's own Krea Realtime Video 14B pipeline (causal Wan 2.1 DiT, Self-Forcing), pure PyTorch.

Nothing here imports Django: ``python -c "import videogen.pipeline"`` works without settings.
See docs/pipeline.md. Public API:

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

import logging
import os
import time
from dataclasses import replace

import torch

from .attention import choose_backend, resolve_backend
from .config import (
    KREA_14B_CONFIG,
    TINY_CONFIG,
    DiTConfig,
    PipelineConfig,
    tiny_dit_config,
    tiny_pipeline_config,
)
from .dit import CausalWanDiT, KVCache, build_dit, load_original_state_dict, to_original_state_dict
from .schedule import FlowSchedule
from .session import Block, GenerationParams, PipelineSession, denoise_block
from .timeline import Timeline

logger = logging.getLogger("videogen.pipeline")

__all__ = [
    "KREA_14B_CONFIG", "TINY_CONFIG", "DiTConfig", "PipelineConfig", "tiny_dit_config",
    "tiny_pipeline_config", "CausalWanDiT", "KVCache", "build_dit", "load_original_state_dict",
    "to_original_state_dict", "FlowSchedule", "choose_backend", "resolve_backend",
    "Block", "GenerationParams", "PipelineSession", "denoise_block", "Timeline",
    "build_tiny_pipeline", "build_random_pipeline", "recommended_cpu_threads", "load_pipeline",
]


def recommended_cpu_threads() -> int:
    """Intra-op threads for the tiny model on a CPU: all usable cores but one (at least 1).

    The tiny model's kernels are small; on a shared 2-core machine two OpenMP threads that
    wait on each other (and on the web server) were 5-10x slower than one thread."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cores = os.cpu_count() or 1
    return max(1, cores - 1)


def _seeded(seed: int, build):
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return build()


def _on(device: torch.device, build):
    """Construct on ``device`` directly (a 14B model is never built on the CPU first)."""
    with torch.device(device):
        return build()


def build_random_pipeline(config: PipelineConfig, device: str | torch.device = "cpu",
                          dtype: torch.dtype = torch.float32, seed: int = 0, vae_config=None,
                          text_encoder_config=None) -> PipelineSession:
    """DiT + VAE decoder + text encoder of ``config``'s architecture with deterministic random
    weights (``seed``). The session says so: ``random_weights=True`` and a warning log line."""
    from . import text_encoder as te
    from . import vae as vae_mod

    device = torch.device(device)
    if text_encoder_config is None:
        text_encoder_config = te.tiny_text_encoder_config(text_len=config.dit.text_len)
    tcfg = replace(text_encoder_config, seed=seed + 2)
    encoder = _seeded(seed + 2, lambda: te.TextEncoder(tcfg, device=device, dtype=dtype))
    if encoder.dim != config.dit.text_dim:  # the DiT follows the encoder's width
        config = replace(config, dit=replace(config.dit, text_dim=encoder.dim))
    dit = build_dit(config.dit, device, dtype, seed)
    vcfg = vae_config if vae_config is not None else vae_mod.tiny_vae_config()
    decoder = _seeded(seed + 1, lambda: _on(device, lambda: vae_mod.WanVAEDecoder(vcfg))).to(device, dtype).eval()
    logger.warning("building %s with RANDOM weights (seed %d): frames will be patterns, not video",
                   config.name, seed)
    return PipelineSession(dit, vae_mod.StreamingVAEDecoder(decoder), encoder, config, device, dtype,
                           random_weights=True)


def build_tiny_pipeline(device: str | torch.device = "cpu", seed: int = 0,
                        config: PipelineConfig | None = None) -> PipelineSession:
    """The tiny configuration (``TINY_CONFIG``) with deterministic random weights, float32."""
    return build_random_pipeline(config or TINY_CONFIG, device, torch.float32, seed)


def load_pipeline(models_dir: str | None = None, device: str | torch.device = "cuda",
                  dtype: torch.dtype = torch.bfloat16, config: PipelineConfig = KREA_14B_CONFIG,
                  vae_config=None, text_encoder=None) -> PipelineSession:
    """The real pipeline from the checkpoints under ``models_dir`` (default ``$MODELS_DIR``;
    layout in :class:`weights.ModelLayout` and docs/pipeline.md). Each checkpoint is memory
    mapped and copied tensor by tensor; the DiT is built without a random init.
    ``text_encoder``: an encoder already built (else UMT5 from the layout)."""
    from . import text_encoder as te
    from . import vae as vae_mod
    from . import weights

    device = torch.device(device)
    layout = weights.expected_layout(models_dir)
    dit_path = layout.dit if layout.dit.exists() else layout.dit.with_suffix("")
    if not dit_path.exists():
        raise FileNotFoundError(f"no DiT checkpoint at {layout.dit} (or a shard directory {dit_path})")
    if layout.vae is None:
        raise FileNotFoundError(f"no VAE at {' or '.join(str(p) for p in layout.vae_candidates)}")
    if text_encoder is None:
        source = layout.text_encoder_source()
        if source is None:
            raise FileNotFoundError(f"no text encoder: {layout.missing()}")
        where = layout.text_encoder_dir if source[0] == layout.text_encoder_dir else layout.model_dir
        text_encoder = te.TextEncoder.from_pretrained_dir(where, device, dtype, text_len=config.dit.text_len)
    t0 = time.perf_counter()
    dit = build_dit(config.dit, device, dtype, seed=None)
    load_original_state_dict(dit, weights.open_checkpoint(dit_path))
    decoder = vae_mod.WanVAEDecoder(vae_config or vae_mod.WanVAEConfig())
    decoder = vae_mod.load_original_state_dict(decoder, weights.open_checkpoint(layout.vae), dtype=dtype,
                                               device=device).eval()
    logger.info("loaded %s from %s in %.1f s", config.name, layout.model_dir, time.perf_counter() - t0)
    return PipelineSession(dit, vae_mod.StreamingVAEDecoder(decoder), text_encoder, config, device, dtype)
