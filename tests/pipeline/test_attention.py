"""Backend choice by compute capability and the attention entry point (SDPA on CPU)."""

from __future__ import annotations

import math

import pytest
import torch

from videogen.pipeline import attention as attn_mod
from videogen.pipeline.attention import (
    FA2,
    FA3,
    SAGE,
    SDPA,
    attention,
    choose_backend,
    combine_segments,
    sdpa_with_lse,
)

pytestmark = pytest.mark.timeout(60)

ALL = {FA3, SAGE, FA2, SDPA}


@pytest.mark.parametrize(
    ("capability", "available", "disable_sage", "expected"),
    [
        (None, ALL, False, SDPA),  # CPU
        ((7, 5), ALL, False, SDPA),  # Turing: none of the kernels
        ((8, 0), ALL, False, SAGE),  # A100
        ((8, 0), ALL, True, FA2),
        ((8, 6), {SAGE, FA2, SDPA}, False, SAGE),  # RTX 30xx
        ((8, 6), {FA2, SDPA}, False, FA2),
        ((8, 9), ALL, False, SAGE),  # L40S / RTX 40xx
        ((8, 9), {SDPA}, False, SDPA),
        ((9, 0), ALL, False, FA3),  # H100 and "NVIDIA H200": by capability, never Sage
        ((9, 0), {SAGE, FA2, SDPA}, False, FA2),
        ((9, 0), {SAGE, SDPA}, False, SDPA),
        ((10, 0), ALL, False, SAGE),  # B200
        ((10, 0), {FA2, SDPA}, True, FA2),
    ],
)
def test_choose_backend(capability, available, disable_sage, expected):
    assert choose_backend(capability, available, disable_sage, None) == expected


def test_h200_is_hopper_by_capability(monkeypatch):
    """A GPU named "NVIDIA H200" gets the Hopper kernels: the name is never looked at."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda d=None: (9, 0))
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda d=None: "NVIDIA H200")
    monkeypatch.setattr(attn_mod, "available_backends", lambda: set(ALL))
    monkeypatch.setattr(attn_mod, "_RESOLVED", {})
    monkeypatch.delenv("STUDIO_ATTENTION_BACKEND", raising=False)
    assert attn_mod.resolve_backend("cuda:0") == FA3
    monkeypatch.setenv("STUDIO_ATTENTION_BACKEND", "fa2")
    assert attn_mod.resolve_backend("cuda:0") == FA2


def test_override():
    assert choose_backend((8, 0), ALL, False, "fa2") == FA2
    assert choose_backend((9, 0), ALL, False, "sdpa") == SDPA
    assert choose_backend((8, 0), {SDPA}, False, "flash_attn_3") == SDPA  # not there: automatic
    assert choose_backend(None, ALL, False, "sage") == SDPA  # no GPU
    with pytest.raises(ValueError):
        choose_backend(None, ALL, False, "xformers")


def test_cpu_resolves_to_sdpa(monkeypatch):
    monkeypatch.setattr(attn_mod, "_RESOLVED", {})
    assert attn_mod.resolve_backend("cpu") == SDPA


def test_optional_imports_are_guarded():
    assert SDPA in attn_mod.available_backends()


def _qkv(lq=10, lk=24, h=2, d=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(1, lq, h, d, generator=g), torch.randn(1, lk, h, d, generator=g),
            torch.randn(1, lk, h, d, generator=g))


def _naive(q, k, v, logit_bias):
    logits = torch.einsum("bqhd,bkhd->bhqk", q, k) / math.sqrt(q.shape[-1]) + logit_bias
    return torch.einsum("bhqk,bkhd->bqhd", logits.softmax(-1), v)


def test_cached_token_bias_is_log_space():
    q, k, v = _qkv()
    bias = torch.zeros(24)
    bias[:16] = math.log(0.3)
    out = attention(q, k, v, num_cached_tokens=16, bias_for_cached_tokens=0.3)
    torch.testing.assert_close(out, _naive(q, k, v, bias), atol=1e-5, rtol=1e-5)
    plain = attention(q, k, v, num_cached_tokens=16, bias_for_cached_tokens=1.0)
    torch.testing.assert_close(plain, _naive(q, k, v, torch.zeros(24)), atol=1e-5, rtol=1e-5)


def test_the_windows_first_frame_is_exempt_from_the_bias():
    """Scope's rule: the cached window's first frame (the anchor) keeps its full weight."""
    q, k, v = _qkv()
    bias = torch.zeros(24)
    bias[4:16] = math.log(0.3)
    out = attention(q, k, v, num_cached_tokens=16, bias_for_cached_tokens=0.3, unbiased_prefix_tokens=4)
    torch.testing.assert_close(out, _naive(q, k, v, bias), atol=1e-5, rtol=1e-5)
    only_anchor = attention(q, k, v, num_cached_tokens=4, bias_for_cached_tokens=0.3, unbiased_prefix_tokens=4)
    torch.testing.assert_close(only_anchor, _naive(q, k, v, torch.zeros(24)), atol=1e-5, rtol=1e-5)


def test_segment_combine_equals_biased_attention():
    """The flash path (two segments + log-sum-exp) is exact."""
    q, k, v = _qkv()
    out_c, lse_c = sdpa_with_lse(q, k[:, :16], v[:, :16])
    out_n, lse_n = sdpa_with_lse(q, k[:, 16:], v[:, 16:])
    combined = combine_segments([out_c, out_n], [lse_c + math.log(0.3), lse_n])
    expected = attention(q, k, v, num_cached_tokens=16, bias_for_cached_tokens=0.3)
    torch.testing.assert_close(combined, expected, atol=1e-5, rtol=1e-5)


def test_block_causal_mask():
    q, k, v = _qkv(lq=24, lk=24)
    allowed = torch.ones(24, 24, dtype=torch.bool).tril()
    out = attention(q, k, v, attn_mask=allowed)
    ref = _naive(q, k, v, torch.zeros(24, 24).masked_fill(~allowed, float("-inf")))
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-5)


def test_bias_must_be_positive():
    q, k, v = _qkv()
    with pytest.raises(ValueError):
        attention(q, k, v, num_cached_tokens=4, bias_for_cached_tokens=0.0)


class _FakeFlash:
    """Stands in for flash_attn / flash_attn_interface on the CPU (same call and returns)."""

    def __init__(self, fa3: bool):
        self.fa3 = fa3
        self.calls = 0

    def flash_attn_func(self, q, k, v, softmax_scale=None, causal=False, return_attn_probs=False):
        assert not causal
        self.calls += 1
        out, lse = sdpa_with_lse(q, k, v, softmax_scale)
        if self.fa3:
            return out, lse  # older FA3 builds always return (out, lse)
        return (out, lse, None) if return_attn_probs else out

    def sageattn(self, q, k, v, tensor_layout="NHD", is_causal=False, sm_scale=None):
        self.calls += 1
        return sdpa_with_lse(q, k, v, sm_scale)[0]


@pytest.mark.parametrize(("backend", "module"), [(FA2, "flash_attn"), (FA3, "flash_attn_interface"),
                                                 (SAGE, "sageattention")])
def test_kernel_paths_with_bias_match_sdpa(monkeypatch, backend, module):
    fake = _FakeFlash(fa3=backend == FA3)
    monkeypatch.setitem(__import__("sys").modules, module, fake)
    monkeypatch.setitem(__import__("sys").modules, "flash_attn", _FakeFlash(False) if backend == SAGE else fake)
    attn_mod._available.cache_clear()
    try:
        q, k, v = _qkv()
        expected = attention(q, k, v, num_cached_tokens=16, bias_for_cached_tokens=0.3, backend=SDPA)
        got = attention(q, k, v, num_cached_tokens=16, bias_for_cached_tokens=0.3, backend=backend)
        torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)
        kw = {"num_cached_tokens": 16, "bias_for_cached_tokens": 0.3, "unbiased_prefix_tokens": 4}
        torch.testing.assert_close(attention(q, k, v, backend=backend, **kw), attention(q, k, v, backend=SDPA, **kw),
                                   atol=1e-5, rtol=1e-5)
        plain = attention(q, k, v, backend=backend)
        torch.testing.assert_close(plain, attention(q, k, v, backend=SDPA), atol=1e-5, rtol=1e-5)
        assert fake.calls >= 1
    finally:
        attn_mod._available.cache_clear()
