"""Attention kernels, chosen by CUDA compute capability (never by GPU name).

Backends, in the order they are preferred:

- ``flash_attn_3`` (``flash_attn_interface``) on compute capability 9.x (Hopper: H100, H200);
- ``sageattention`` (``sageattention``) on other CUDA GPUs of capability 8.0 or more, unless
  ``DISABLE_SAGEATTENTION=1``; never on Hopper (SageAttention 2.2 gives static/noise on H100);
- ``flash_attn_2`` (``flash_attn``) as the fallback on capability 8.0 or more;
- ``sdpa`` (``torch.nn.functional.scaled_dot_product_attention``) everywhere else, CPU included.

``STUDIO_ATTENTION_BACKEND`` (or the ``override`` argument) forces one; if it is not
available the automatic choice is used and a warning is logged. The choice is logged once per
device.

Tensors are ``[batch, tokens, heads, head_dim]`` ("NHD", as Wan and FlashAttention use).

The bias on cached tokens: ``log(bias)`` is added to the logits of the first
``num_cached_tokens`` keys (the KV cache of earlier frames), i.e. their attention weights are
multiplied by ``bias`` before normalising. SDPA adds it as a mask; the flash kernels have no
score modifier, so the keys are split into a cached and a current segment, each segment's
output and log-sum-exp are computed, the bias is added to the cached segment's log-sum-exp and
the two are combined exactly. (SageAttention's log-sum-exp is not verified yet, so biased
calls on the Sage backend use FlashAttention 2, else SDPA; unbiased ones use Sage.)
"""

from __future__ import annotations

import functools
import importlib
import logging
import math
import os

import torch
import torch.nn.functional as F

logger = logging.getLogger("videogen.pipeline.attention")

FA3 = "flash_attn_3"
SAGE = "sageattention"
FA2 = "flash_attn_2"
SDPA = "sdpa"
BACKENDS = (FA3, SAGE, FA2, SDPA)
_MODULES = {FA3: "flash_attn_interface", SAGE: "sageattention", FA2: "flash_attn"}
_ALIASES = {
    "fa3": FA3, "flash3": FA3, "flash_attn_interface": FA3,
    "sage": SAGE, "sageattn": SAGE,
    "fa2": FA2, "flash": FA2, "flash_attn": FA2, "flash2": FA2,
    "torch": SDPA, "pytorch": SDPA,
}


def normalize_backend(name: str | None) -> str | None:
    if name is None or not name.strip():
        return None
    key = name.strip().lower()
    key = _ALIASES.get(key, key)
    if key not in BACKENDS:
        raise ValueError(f"unknown attention backend {name!r}; one of {', '.join(BACKENDS)}")
    return key


def choose_backend(
    capability: tuple[int, int] | None,
    available: set[str] | frozenset[str],
    disable_sage: bool = False,
    override: str | None = None,
) -> str:
    """Pure choice of backend. ``capability`` is None on CPU; ``available`` holds the
    importable optional backends (``sdpa`` is always available)."""
    forced = normalize_backend(override)
    if forced is not None:
        if forced == SDPA or (forced in available and capability is not None):
            return forced
        logger.warning("attention backend %s requested but not usable here; choosing automatically", forced)
    if capability is None:
        return SDPA
    major, _minor = capability
    if major == 9:  # Hopper, whatever the marketing name ("NVIDIA H200" included)
        if FA3 in available:
            return FA3
        if FA2 in available:
            return FA2
        return SDPA
    if capability >= (8, 0):
        if SAGE in available and not disable_sage:
            return SAGE
        if FA2 in available:
            return FA2
    return SDPA


def available_backends() -> set[str]:
    """The optional kernels that import here (each import guarded)."""
    found = {SDPA}
    for name, module in _MODULES.items():
        try:
            importlib.import_module(module)
        except Exception:  # noqa: BLE001 - missing, or built for another CUDA/torch
            continue
        found.add(name)
    return found


@functools.lru_cache(maxsize=1)
def _available() -> frozenset[str]:
    return frozenset(available_backends())


def _env_flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in {"1", "true", "yes", "on"}


_RESOLVED: dict[str, str] = {}


def resolve_backend(device: torch.device | str | None = None, override: str | None = None) -> str:
    """The backend for ``device``: the env/argument override or the capability choice, logged once."""
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    override = override or os.environ.get("STUDIO_ATTENTION_BACKEND") or None
    key = f"{device}|{override}"
    if key in _RESOLVED:
        return _RESOLVED[key]
    capability = None
    name = "cpu"
    if device.type == "cuda" and torch.cuda.is_available():
        capability = torch.cuda.get_device_capability(device)
        name = torch.cuda.get_device_name(device)
    available = available_backends() if capability is not None else {SDPA}
    backend = choose_backend(capability, available, _env_flag("DISABLE_SAGEATTENTION"), override)
    logger.info("attention backend %s (device %s, %s, capability %s, available %s)",
                backend, device, name, capability, sorted(available))
    _RESOLVED[key] = backend
    return backend


def combine_segments(outs: list[torch.Tensor], lses: list[torch.Tensor]) -> torch.Tensor:
    """Exactly combine attention over disjoint key segments.

    ``outs[i]``: ``[B, Lq, H, D]``; ``lses[i]``: ``[B, H, Lq]`` log-sum-exp of the segment's
    (scaled, biased) logits."""
    stacked = torch.stack([lse.float() for lse in lses])  # [S, B, H, Lq]
    weights = torch.softmax(stacked, dim=0).permute(0, 1, 3, 2).unsqueeze(-1)  # [S, B, Lq, H, 1]
    out = sum(w * o.float() for w, o in zip(weights, outs, strict=True))
    return out.to(outs[0].dtype)


def _sdpa(q, k, v, mask, scale):
    out = F.scaled_dot_product_attention(
        q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), attn_mask=mask, scale=scale)
    return out.transpose(1, 2)


def sdpa_with_lse(q, k, v, scale=None):
    """Reference attention returning (out, lse) in pure PyTorch (tests, fallbacks)."""
    scale = scale if scale is not None else q.shape[-1] ** -0.5
    logits = torch.einsum("bqhd,bkhd->bhqk", q.float(), k.float()) * scale
    lse = torch.logsumexp(logits, dim=-1)
    out = torch.einsum("bhqk,bkhd->bqhd", torch.softmax(logits, dim=-1), v.float())
    return out.to(q.dtype), lse


def _kernel_with_lse(backend: str, q, k, v, scale):
    if backend == FA3:
        fa3 = importlib.import_module("flash_attn_interface")
        try:
            res = fa3.flash_attn_func(q, k, v, softmax_scale=scale, causal=False, return_attn_probs=True)
        except TypeError:  # older FA3 builds return (out, lse) unasked
            res = fa3.flash_attn_func(q, k, v, softmax_scale=scale, causal=False)
        return res[0], res[1]
    if backend == FA2:
        fa2 = importlib.import_module("flash_attn")
        out, lse, _ = fa2.flash_attn_func(q, k, v, softmax_scale=scale, causal=False, return_attn_probs=True)
        return out, lse
    return sdpa_with_lse(q, k, v, scale)


def _kernel(backend: str, q, k, v, scale):
    if backend == FA3:
        res = importlib.import_module("flash_attn_interface").flash_attn_func(
            q, k, v, softmax_scale=scale, causal=False)
        return res[0] if isinstance(res, tuple) else res
    if backend == FA2:
        return importlib.import_module("flash_attn").flash_attn_func(q, k, v, softmax_scale=scale, causal=False)
    if backend == SAGE:
        return importlib.import_module("sageattention").sageattn(
            q, k, v, tensor_layout="NHD", is_causal=False, sm_scale=scale)
    return _sdpa(q, k, v, None, scale)


def attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    *,
    num_cached_tokens: int = 0,
    bias_for_cached_tokens: float = 1.0,
    unbiased_prefix_tokens: int = 0,
    attn_mask: torch.Tensor | None = None,
    backend: str | None = None,
    scale: float | None = None,
) -> torch.Tensor:
    """Attention over ``[B, L, H, D]`` tensors.

    ``num_cached_tokens``: the first keys that come from the KV cache; their weights are
    multiplied by ``bias_for_cached_tokens`` (1.0 = no bias), except the first
    ``unbiased_prefix_tokens`` of them (Scope exempts the window's first frame, the anchor).
    ``attn_mask``: an additive float (or boolean, True = attend) ``[Lq, Lk]`` mask such as the
    block-causal one of the reference path; it forces SDPA. ``backend`` defaults to
    :func:`resolve_backend`.
    """
    if not 0.0 < bias_for_cached_tokens <= 1.0:
        raise ValueError("bias_for_cached_tokens must be in (0, 1]")
    scale = scale if scale is not None else q.shape[-1] ** -0.5
    start = min(max(unbiased_prefix_tokens, 0), num_cached_tokens)
    log_bias = math.log(bias_for_cached_tokens) if num_cached_tokens > start else 0.0
    if backend is None:
        backend = resolve_backend(q.device) if q.device.type == "cuda" else SDPA
    if attn_mask is not None or backend == SDPA:
        mask = None
        if attn_mask is not None:
            mask = attn_mask
            if mask.dtype == torch.bool:
                mask = torch.zeros(mask.shape, dtype=q.dtype, device=q.device).masked_fill_(~mask, float("-inf"))
            mask = mask.to(q.dtype)
        if log_bias:
            bias = torch.zeros(k.shape[1], dtype=q.dtype, device=q.device)
            bias[start:num_cached_tokens] = log_bias
            mask = bias if mask is None else mask + bias
        if mask is not None:
            mask = mask.expand(q.shape[1], k.shape[1])
        return _sdpa(q, k, v, mask, scale)
    if not log_bias:
        return _kernel(backend, q, k, v, scale)
    if backend == SAGE:
        # SageAttention's log-sum-exp output is not verified against the others yet: biased
        # calls go to FlashAttention 2 (or SDPA) so the bias can never be silently wrong.
        backend = FA2 if FA2 in _available() else SDPA
        if backend == SDPA:
            return attention(q, k, v, num_cached_tokens=num_cached_tokens,
                             bias_for_cached_tokens=bias_for_cached_tokens, unbiased_prefix_tokens=start,
                             backend=SDPA, scale=scale)
    # up to three key segments: unbiased prefix, biased cache, unbiased rest (the block itself)
    bounds = [(0, start, 0.0), (start, num_cached_tokens, log_bias), (num_cached_tokens, k.shape[1], 0.0)]
    outs, lses = [], []
    for lo, hi, add in bounds:
        if hi > lo:
            out, lse = _kernel_with_lse(backend, q, k[:, lo:hi], v[:, lo:hi], scale)
            outs.append(out)
            lses.append(lse.float() + add)
    return outs[0] if len(outs) == 1 else combine_segments(outs, lses)
