"""The DiT's weights in the original Wan 2.1 / Krea key layout (q, k, v separate), both ways."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from .dit import CausalWanDiT

__all__ = ["load_original_state_dict", "to_original_state_dict"]

_PREFIXES = ("model.", "generator.model.", "generator.", "module.", "_fsdp_wrapped_module.",
             "diffusion_model.", "_orig_mod.")
_QKV = re.compile(r"^blocks\.(\d+)\.self_attn\.([qkv])\.(weight|bias)$")


def _strip(key: str) -> str:
    changed = True
    while changed:
        changed = False
        for p in _PREFIXES:
            if key.startswith(p):
                key, changed = key[len(p):], True
    return key


def to_original_state_dict(model: CausalWanDiT) -> dict[str, torch.Tensor]:
    """The model's weights in the original Wan / Krea key layout (q, k, v separate)."""
    out: dict[str, torch.Tensor] = {}
    for key, value in model.state_dict().items():
        m = re.match(r"^blocks\.(\d+)\.self_attn\.qkv\.(weight|bias)$", key)
        if m:
            for name, part in zip("qkv", value.chunk(3, dim=0), strict=True):
                out[f"blocks.{m.group(1)}.self_attn.{name}.{m.group(2)}"] = part.clone()
        else:
            out[key] = value.clone()
    return out


@torch.no_grad()
def load_original_state_dict(model: CausalWanDiT, mapping: Mapping[str, torch.Tensor],
                             strict: bool = True) -> dict[str, list[str]]:
    """Copy weights in the original Wan 2.1 / Krea layout (``blocks.{i}.self_attn.q/k/v``,
    ``norm_q``, ``cross_attn.*``, ``ffn.0/2``, ``modulation``, ``norm3``, ``patch_embedding``,
    ``text_embedding.0/2``, ``time_embedding.0/2``, ``time_projection.1``, ``head.head``,
    ``head.modulation``) into the model; q/k/v are concatenated into the fused QKV.

    ``mapping`` may be lazy (a memory-mapped checkpoint): each tensor is read once and copied
    into the existing parameter (dtype and device converted). Common wrapper prefixes
    (``model.``, ``generator.``, ...) are stripped. Returns ``{"missing", "unexpected"}``;
    with ``strict`` either being non-empty raises."""
    own = model.state_dict()
    pending: dict[tuple[str, str], dict[str, torch.Tensor]] = {}
    loaded: set[str] = set()
    unexpected: list[str] = []
    for raw in mapping:
        key = _strip(raw)
        m = _QKV.match(key)
        if m:
            group = pending.setdefault((m.group(1), m.group(3)), {})
            group[m.group(2)] = mapping[raw]
            if len(group) == 3:
                target = f"blocks.{m.group(1)}.self_attn.qkv.{m.group(3)}"
                own[target].copy_(torch.cat([group["q"], group["k"], group["v"]], 0))
                loaded.add(target)
                del pending[(m.group(1), m.group(3))]
            continue
        if key not in own:
            unexpected.append(raw)
            continue
        tensor = mapping[raw]
        if tuple(tensor.shape) != tuple(own[key].shape):
            raise ValueError(f"{raw}: shape {tuple(tensor.shape)} != {tuple(own[key].shape)}")
        own[key].copy_(tensor)
        loaded.add(key)
    unexpected += [f"blocks.{i}.self_attn.{{q,k,v}}.{kind} (incomplete)" for i, kind in pending]
    missing = [k for k in own if k not in loaded]
    if strict and (missing or unexpected):
        raise KeyError(f"missing {missing[:8]}{'...' if len(missing) > 8 else ''}, "
                       f"unexpected {unexpected[:8]}{'...' if len(unexpected) > 8 else ''}")
    return {"missing": missing, "unexpected": unexpected}


