"""Building sessions: the real weights from ``MODELS_DIR``, or deterministic random ones.

:func:`load_pipeline` reads the checkpoints of :class:`~.weights.ModelLayout` (the DiT, both
halves of the Wan VAE from its one file, UMT5; optionally Krea's ``use_taehv`` decoder);
:func:`build_random_pipeline` / :func:`build_tiny_pipeline` make the same architecture (or the
tiny one) with RANDOM weights, which the session says (``random_weights``) and logs.
"""

from __future__ import annotations

import logging
import time
from dataclasses import replace
from typing import Any

import torch

from .config import KREA_14B_CONFIG, TINY_CONFIG, PipelineConfig
from .dit import build_dit, load_original_state_dict
from .session import PipelineSession

logger = logging.getLogger("videogen.pipeline")

__all__ = ["build_random_pipeline", "build_tiny_pipeline", "load_pipeline"]


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
                          text_encoder_config=None, decoder: str = "wan", taehv_config=None) -> PipelineSession:
    """DiT + VAE (encoder and decoder) + text encoder of ``config``'s architecture with
    deterministic random weights (``seed``). ``decoder``: ``"wan"`` (Wan's VAE decoder) or
    ``"taehv"`` (a TAEHV-shaped one, ``taehv_config``). The session says it has random weights:
    ``random_weights=True`` and a warning log line."""
    from . import text_encoder as te
    from . import vae as vae_mod
    from . import vae_encoder as enc_mod

    device = torch.device(device)
    if text_encoder_config is None:
        text_encoder_config = te.tiny_text_encoder_config(text_len=config.dit.text_len)
    tcfg = replace(text_encoder_config, seed=seed + 2)
    encoder = _seeded(seed + 2, lambda: te.TextEncoder(tcfg, device=device, dtype=dtype))
    if encoder.dim != config.dit.text_dim:  # the DiT follows the encoder's width
        config = replace(config, dit=replace(config.dit, text_dim=encoder.dim))
    dit = build_dit(config.dit, device, dtype, seed)
    vcfg = vae_config if vae_config is not None else vae_mod.tiny_vae_config()
    video_decoder = _random_decoder(decoder, vcfg, taehv_config, seed + 1, device, dtype)
    video_encoder = _seeded(seed + 3, lambda: _on(device, lambda: enc_mod.WanVAEEncoder(vcfg))).to(device, dtype).eval()
    logger.warning("building %s with RANDOM weights (seed %d): frames will be patterns, not video",
                   config.name, seed)
    return PipelineSession(dit, video_decoder, encoder, config, device, dtype, random_weights=True,
                           encoder=video_encoder)


def _random_decoder(kind: str, vae_config, taehv_config, seed: int, device: torch.device, dtype: torch.dtype) -> Any:
    from . import vae as vae_mod

    if kind == "wan":
        decoder = _seeded(seed, lambda: _on(device, lambda: vae_mod.WanVAEDecoder(vae_config)))
        return vae_mod.StreamingVAEDecoder(decoder.to(device, dtype).eval())
    if kind == "taehv":
        from . import taehv

        cfg = taehv_config if taehv_config is not None else taehv.tiny_taehv_config()
        decoder = _seeded(seed, lambda: taehv.init_random_visible(_on(device, lambda: taehv.TAEHVDecoder(cfg))))
        return taehv.StreamingTAEHVDecoder(decoder.to(device, dtype).eval())
    raise ValueError(f"decoder must be 'wan' or 'taehv', got {kind!r}")


def build_tiny_pipeline(device: str | torch.device = "cpu", seed: int = 0,
                        config: PipelineConfig | None = None, decoder: str = "taehv") -> PipelineSession:
    """The tiny configuration (``TINY_CONFIG``) with deterministic random weights, float32, and
    a tiny TAEHV-shaped decoder (``decoder="wan"``: the tiny Wan decoder)."""
    return build_random_pipeline(config or TINY_CONFIG, device, torch.float32, seed, decoder=decoder)


def load_pipeline(models_dir: str | None = None, device: str | torch.device = "cuda",
                  dtype: torch.dtype = torch.bfloat16, config: PipelineConfig = KREA_14B_CONFIG,
                  vae_config=None, text_encoder=None, use_taehv: bool = False, taehv_config=None) -> PipelineSession:
    """The real pipeline from the checkpoints under ``models_dir`` (default ``$MODELS_DIR``;
    layout in :class:`weights.ModelLayout` and docs/pipeline.md). Each checkpoint is memory
    mapped and copied tensor by tensor; the DiT is built without a random init.
    ``text_encoder``: an encoder already built (else UMT5 from the layout). ``use_taehv``
    (Krea's server option): decode with TAEHV (``taew2_1.pth``) instead of Wan's decoder; the
    Wan encoder is still used (the anchor re-encode, video in); ``taehv_config``: its shape (default
    TAEHV's own)."""
    from . import text_encoder as te
    from . import vae as vae_mod
    from . import vae_encoder as enc_mod
    from . import weights

    device = torch.device(device)
    layout = weights.expected_layout(models_dir)
    dit_path = layout.dit if layout.dit.exists() else layout.dit.with_suffix("")
    if not dit_path.exists():
        raise FileNotFoundError(f"no DiT checkpoint at {layout.dit} (or a shard directory {dit_path})")
    if layout.vae is None:
        raise FileNotFoundError(f"no VAE at {' or '.join(str(p) for p in layout.vae_candidates)}")
    if use_taehv and not layout.taehv.exists():
        raise FileNotFoundError(f"use_taehv: no TAEHV checkpoint at {layout.taehv}")
    if text_encoder is None:
        source = layout.text_encoder_source()
        if source is None:
            raise FileNotFoundError(f"no text encoder: {layout.missing()}")
        where = layout.text_encoder_dir if source[0] == layout.text_encoder_dir else layout.model_dir
        text_encoder = te.TextEncoder.from_pretrained_dir(where, device, dtype, text_len=config.dit.text_len)
    t0 = time.perf_counter()
    dit = build_dit(config.dit, device, dtype, seed=None)
    load_original_state_dict(dit, weights.open_checkpoint(dit_path))
    vcfg = vae_config or vae_mod.WanVAEConfig()
    vae_file = weights.open_checkpoint(layout.vae)
    if use_taehv:
        from . import taehv

        video_decoder: Any = taehv.StreamingTAEHVDecoder(
            taehv.load_taehv_decoder(weights.open_checkpoint(layout.taehv), taehv_config, device=device,
                                     dtype=dtype).eval())
    else:
        decoder = vae_mod.load_original_state_dict(vae_mod.WanVAEDecoder(vcfg), vae_file, dtype=dtype, device=device)
        video_decoder = vae_mod.StreamingVAEDecoder(decoder.eval())
    video_encoder = None
    if any(k.startswith("encoder.") for k in vae_file):
        video_encoder = enc_mod.load_original_state_dict(enc_mod.WanVAEEncoder(vcfg), vae_file, dtype=dtype,
                                                         device=device).eval()
    else:  # an incomplete file: Krea's stream (the anchor re-encode) and video in will refuse to start
        logger.warning("%s holds no encoder.* keys: the session can run cache_mode='rolling' only", layout.vae)
    logger.info("loaded %s from %s in %.1f s", config.name, layout.model_dir, time.perf_counter() - t0)
    return PipelineSession(dit, video_decoder, text_encoder, config, device, dtype, encoder=video_encoder)
