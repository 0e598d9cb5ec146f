"""Checkpoint loading for the realtime pipeline: lazy, memory-mapped, one tensor at a time.

No Django here. A checkpoint is a ``.safetensors`` file, a directory of shards (with or without
a ``*.safetensors.index.json``), or a PyTorch ``.pth``/``.pt``/``.bin`` file (Wan ships its VAE
and UMT5 encoder as ``.pth``; those are opened with ``torch.load(mmap=True)``).
:func:`open_checkpoint` returns a read-only mapping whose values are read from the mapped
file only when asked for, so loading a 28 GB DiT never holds a second full copy in host RAM:
:func:`load_into` moves each tensor to its device/dtype and drops the host copy before the
next one. Modules may be built on the ``meta`` device; their parameters are replaced by the
loaded tensors.

fp8: with ``fp8=True`` (or a predicate on the module key), ``nn.Linear`` weights are stored as
``torch.float8_e4m3fn`` with a per-tensor scale (``weight ~= weight_fp8 * scale``) in an
:class:`FP8Linear`, which dequantises to the activation dtype in ``forward``. That halves the
weight memory (~14 GB for the 14B DiT); the matmul itself runs in bf16.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

__all__ = [
    "FP8_DTYPE",
    "CheckpointMismatchError",
    "FP8Linear",
    "LazyCheckpoint",
    "LoadReport",
    "ModelLayout",
    "default_dtype",
    "dequantize_fp8",
    "expected_layout",
    "load_into",
    "open_checkpoint",
    "quantize_fp8",
    "save_checkpoint",
]

FP8_DTYPE = torch.float8_e4m3fn
FP8_MAX = float(torch.finfo(FP8_DTYPE).max)  # 448
SAFETENSORS_SUFFIX = ".safetensors"
TORCH_SUFFIXES = (".pth", ".pt", ".bin", ".ckpt")

KeyMap = Callable[[str], "str | None"] | Mapping[str, "str | None"] | None


# ----------------------------------------------------------------------------- reading


class LazyCheckpoint(Mapping[str, torch.Tensor]):
    """Read-only ``{key: tensor}`` over one or more checkpoint files, read on access.

    safetensors files are opened with ``safe_open`` (memory-mapped); each ``ckpt[key]``
    materialises that one tensor on the CPU. ``.pth`` files are ``torch.load``-ed with
    ``mmap=True`` (their storages stay on disk until touched).
    """

    def __init__(self, files: list[Path], weight_map: dict[str, Path] | None = None):
        if not files:
            raise FileNotFoundError("no checkpoint files")
        self.files = list(files)
        self._handles: dict[Path, object] = {}
        self._index: dict[str, Path] = {}
        for path in self.files:
            for key in self._keys_of(path):
                if key in self._index and self._index[key] != path:
                    raise ValueError(f"key {key!r} is in both {self._index[key]} and {path}")
                self._index[key] = path
        if weight_map is not None:
            missing = sorted(set(weight_map) - set(self._index))
            if missing:
                raise FileNotFoundError(f"index lists keys no shard holds: {_names(missing)}")

    def _handle(self, path: Path):
        handle = self._handles.get(path)
        if handle is None:
            if path.name.endswith(SAFETENSORS_SUFFIX):
                from safetensors import safe_open

                handle = safe_open(str(path), framework="pt", device="cpu")
            else:
                handle = torch.load(path, map_location="cpu", mmap=True, weights_only=True)
                if isinstance(handle, dict) and "state_dict" in handle and isinstance(handle["state_dict"], dict):
                    handle = handle["state_dict"]
                if not isinstance(handle, dict):
                    raise ValueError(f"{path} does not hold a state dict")
            self._handles[path] = handle
        return handle

    def _keys_of(self, path: Path) -> list[str]:
        handle = self._handle(path)
        return list(handle.keys())

    def __getitem__(self, key: str) -> torch.Tensor:
        path = self._index[key]  # KeyError for unknown keys
        handle = self._handle(path)
        if path.name.endswith(SAFETENSORS_SUFFIX):
            return handle.get_tensor(key)
        return handle[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._index)

    def __len__(self) -> int:
        return len(self._index)

    def __contains__(self, key: object) -> bool:
        return key in self._index

    def shape(self, key: str) -> tuple[int, ...]:
        """The tensor's shape without reading it (safetensors) or from the mmap (.pth)."""
        path = self._index[key]
        handle = self._handle(path)
        if path.name.endswith(SAFETENSORS_SUFFIX):
            return tuple(handle.get_slice(key).get_shape())
        return tuple(handle[key].shape)

    def file_of(self, key: str) -> Path:
        return self._index[key]

    def metadata(self) -> dict[str, str]:
        out: dict[str, str] = {}
        for path in self.files:
            if path.name.endswith(SAFETENSORS_SUFFIX):
                out.update(self._handle(path).metadata() or {})
        return out

    def close(self) -> None:
        self._handles.clear()

    def __enter__(self) -> LazyCheckpoint:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _checkpoint_files(directory: Path) -> tuple[list[Path], dict[str, Path] | None]:
    indexes = sorted(directory.glob("*.safetensors.index.json"))
    if len(indexes) > 1:
        raise ValueError(f"{directory} holds several index files: {[p.name for p in indexes]}")
    if indexes:
        data = json.loads(indexes[0].read_text())
        weight_map = {k: directory / v for k, v in data["weight_map"].items()}
        files = sorted(set(weight_map.values()))
        absent = [p.name for p in files if not p.is_file()]
        if absent:
            raise FileNotFoundError(f"{indexes[0].name} names missing shards: {absent}")
        return files, weight_map
    files = sorted(p for p in directory.iterdir() if p.name.endswith(SAFETENSORS_SUFFIX))
    if not files:
        files = sorted(p for p in directory.iterdir() if p.suffix in TORCH_SUFFIXES)
    if not files:
        raise FileNotFoundError(f"no .safetensors (or .pth) files in {directory}")
    return files, None


def open_checkpoint(path_or_dir: str | os.PathLike) -> LazyCheckpoint:
    """A lazy mapping over a checkpoint file or a directory of shards (see the module doc)."""
    path = Path(path_or_dir)
    if path.is_dir():
        files, weight_map = _checkpoint_files(path)
        return LazyCheckpoint(files, weight_map)
    if path.name.endswith(".safetensors.index.json"):
        return open_checkpoint(path.parent)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}")
    return LazyCheckpoint([path])


# ----------------------------------------------------------------------------- writing


def save_checkpoint(
    state_dict: Mapping[str, torch.Tensor],
    path: str | os.PathLike,
    *,
    max_shard_bytes: int | None = None,
    metadata: dict[str, str] | None = None,
) -> list[Path]:
    """Write ``state_dict`` as safetensors: one file, or shards + an index when ``path`` is a
    directory (or ``max_shard_bytes`` is given). Returns the files written."""
    from safetensors.torch import save_file

    path = Path(path)
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in state_dict.items()}
    # safetensors refuses tensors sharing storage (tied weights): give each its own copy
    seen: set[tuple[int, int]] = set()
    for k, v in tensors.items():
        ident = (v.untyped_storage().data_ptr(), v.storage_offset())
        if ident in seen:
            tensors[k] = v.clone()
        seen.add(ident)
    if max_shard_bytes is None and not (path.is_dir() or path.suffix == ""):
        path.parent.mkdir(parents=True, exist_ok=True)
        save_file(tensors, str(path), metadata=metadata)
        return [path]
    path.mkdir(parents=True, exist_ok=True)
    limit = max_shard_bytes or (5 << 30)
    shards: list[dict[str, torch.Tensor]] = [{}]
    size = 0
    for k, v in tensors.items():
        n = v.numel() * v.element_size()
        if shards[-1] and size + n > limit:
            shards.append({})
            size = 0
        shards[-1][k] = v
        size += n
    total = len(shards)
    written, weight_map = [], {}
    for i, shard in enumerate(shards, 1):
        name = f"model-{i:05d}-of-{total:05d}.safetensors"
        save_file(shard, str(path / name), metadata=metadata)
        written.append(path / name)
        weight_map.update(dict.fromkeys(shard, name))
    index = {
        "metadata": {"total_size": sum(v.numel() * v.element_size() for v in tensors.values())},
        "weight_map": weight_map,
    }
    (path / "model.safetensors.index.json").write_text(json.dumps(index, indent=2))
    return written


# ----------------------------------------------------------------------------- fp8


def quantize_fp8(weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-tensor scaled e4m3: returns ``(w_fp8, scale)`` with ``w ~= w_fp8.float() * scale``."""
    w = weight.float()
    amax = w.abs().max().clamp(min=1e-12)
    scale = (amax / FP8_MAX).reshape(())
    q = (w / scale).clamp(-FP8_MAX, FP8_MAX).to(FP8_DTYPE)
    return q, scale.to(torch.float32)


def dequantize_fp8(q: torch.Tensor, scale: torch.Tensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    return (q.to(torch.float32) * scale.to(q.device, torch.float32)).to(dtype)


class FP8Linear(nn.Module):
    """A Linear whose weight is float8_e4m3fn with a per-tensor scale (dequantised per call)."""

    def __init__(self, in_features: int, out_features: int, bias: bool = True, *, device=None, dtype=None):
        super().__init__()
        self.in_features = in_features
        self.out_features = out_features
        self.compute_dtype = dtype or torch.bfloat16
        self.weight = nn.Parameter(
            torch.zeros(out_features, in_features, device=device, dtype=FP8_DTYPE), requires_grad=False
        )
        self.register_buffer("weight_scale", torch.ones((), device=device, dtype=torch.float32))
        self.bias = (
            nn.Parameter(torch.zeros(out_features, device=device, dtype=self.compute_dtype), requires_grad=False)
            if bias
            else None
        )

    @classmethod
    def from_linear(cls, linear: nn.Linear, dtype: torch.dtype | None = None) -> FP8Linear:
        dev = linear.weight.device
        new = cls(linear.in_features, linear.out_features, linear.bias is not None, device=dev, dtype=dtype)
        if dev.type != "meta":
            q, s = quantize_fp8(linear.weight.detach())
            new.weight.data = q
            new.weight_scale.data = s
            if linear.bias is not None:
                new.bias.data = linear.bias.detach().to(new.compute_dtype)
        return new

    def set_weight(self, weight: torch.Tensor, scale: torch.Tensor | None = None) -> None:
        if weight.dtype != FP8_DTYPE:
            weight, scale = quantize_fp8(weight)
        self.weight = nn.Parameter(weight, requires_grad=False)
        self.weight_scale = (scale if scale is not None else torch.ones(())).to(weight.device, torch.float32)

    def dequantized_weight(self, dtype: torch.dtype | None = None) -> torch.Tensor:
        return dequantize_fp8(self.weight, self.weight_scale, dtype or self.compute_dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = self.dequantized_weight(x.dtype)
        b = None if self.bias is None else self.bias.to(x.dtype)
        return F.linear(x, w, b)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}, fp8"


# ----------------------------------------------------------------------------- loading


class CheckpointMismatchError(ValueError):
    """The checkpoint's keys or shapes do not fit the module; the message names them."""

    def __init__(self, missing: list[str], unexpected: list[str], mismatched: list[str]):
        self.missing, self.unexpected, self.mismatched = missing, unexpected, mismatched
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing key(s) (in the module, not the checkpoint): {_names(missing)}")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected key(s) (in the checkpoint, not the module): {_names(unexpected)}")
        if mismatched:
            parts.append(f"{len(mismatched)} shape mismatch(es): {_names(mismatched)}")
        super().__init__("checkpoint does not fit the module: " + "; ".join(parts))


def _names(keys: list[str], limit: int = 20) -> str:
    shown = ", ".join(keys[:limit])
    return shown + (f", ... (+{len(keys) - limit} more)" if len(keys) > limit else "")


@dataclass
class LoadReport:
    loaded: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # checkpoint keys the key map dropped
    fp8: list[str] = field(default_factory=list)


def default_dtype(device: torch.device | str | None) -> torch.dtype:
    """bf16 on an accelerator, float32 on the CPU."""
    dev = torch.device(device) if device is not None else torch.device("cpu")
    return torch.float32 if dev.type in ("cpu", "meta") else torch.bfloat16


def _resolve_key_map(key_map: KeyMap) -> Callable[[str], str | None]:
    """A callable (ckpt key -> module key or None to drop) or a dict of renames.

    A dict maps exact keys first, then the longest matching key *prefix* (``{"model.": ""}``
    strips a prefix, ``{"encoder.": None}`` drops a subtree); other keys map to themselves.
    """
    if key_map is None:
        return lambda k: k
    if callable(key_map):
        return key_map
    rules = dict(key_map)
    prefixes = sorted(rules, key=len, reverse=True)

    def mapped(k: str) -> str | None:
        if k in rules:
            return rules[k]
        for p in prefixes:
            if p and k.startswith(p):
                new = rules[p]
                return None if new is None else new + k[len(p):]
        return k

    return mapped


def _split(name: str) -> tuple[str, str]:
    return name.rsplit(".", 1) if "." in name else ("", name)


def load_into(
    module: nn.Module,
    mapping: Mapping[str, torch.Tensor],
    *,
    key_map: KeyMap = None,
    dtype: torch.dtype | None = None,
    device: torch.device | str | None = None,
    strict: bool = True,
    fp8: bool | Callable[[str], bool] = False,
    keep_dtype: Callable[[str], bool] | None = None,
) -> LoadReport:
    """Copy ``mapping`` into ``module`` tensor by tensor (module may live on ``meta``).

    ``key_map`` turns checkpoint keys into module keys (see :func:`_resolve_key_map`); keys it
    maps to ``None`` are skipped. Floating tensors go to ``dtype`` (default: bf16 off-CPU,
    float32 on the CPU) unless ``keep_dtype(module_key)``; ``fp8`` selects ``nn.Linear`` weights
    to store as :class:`FP8Linear`. With ``strict`` a :class:`CheckpointMismatchError` names
    every missing/unexpected key and shape mismatch before anything is loaded.
    """
    mapper = _resolve_key_map(key_map)
    if device is None:
        first = next(iter(module.parameters()), None)
        device = first.device if first is not None and first.device.type != "meta" else torch.device("cpu")
    device = torch.device(device)
    dtype = dtype or default_dtype(device)
    want_fp8: Callable[[str], bool] = (lambda _k: bool(fp8)) if isinstance(fp8, bool) else fp8

    targets = module.state_dict(keep_vars=True)  # params + persistent buffers
    report = LoadReport()
    plan: dict[str, str] = {}  # module key -> checkpoint key
    for ck in mapping:
        mk = mapper(ck)
        if mk is None:
            report.skipped.append(ck)
        elif mk not in targets and mk.endswith(".weight_scale") and mk[: -len("_scale")] in targets:
            report.skipped.append(ck)  # the scale of an fp8 weight: read along with the weight
        elif mk not in targets:
            report.unexpected.append(ck)
        elif mk in plan:
            raise ValueError(f"checkpoint keys {plan[mk]!r} and {ck!r} both map to {mk!r}")
        else:
            plan[mk] = ck
    # FP8Linear scales come with the weight (or from a quantised checkpoint)
    scale_keys = {k for k in targets if k.endswith(".weight_scale")}
    # tied parameters (one tensor under several names, e.g. T5's shared/embed_tokens) are
    # satisfied by any one of their names
    loaded_ids = {id(targets[mk]) for mk in plan if mk in targets}
    report.missing = sorted(
        k for k in targets if k not in plan and k not in scale_keys and id(targets[k]) not in loaded_ids
    )
    mismatched = []
    shape_of = getattr(mapping, "shape", None)
    for mk, ck in plan.items():
        if mk in scale_keys:
            continue
        got = tuple(shape_of(ck)) if shape_of else tuple(mapping[ck].shape)
        if got != tuple(targets[mk].shape):
            mismatched.append(f"{ck} -> {mk}: checkpoint {list(got)} vs module {list(targets[mk].shape)}")
    if strict and (report.missing or report.unexpected or mismatched):
        raise CheckpointMismatchError(report.missing, report.unexpected, mismatched)
    if mismatched:
        raise CheckpointMismatchError([], [], mismatched)

    modules = dict(module.named_modules())
    aliases: dict[int, list[str]] = {}
    for k, v in targets.items():
        aliases.setdefault(id(v), []).append(k)
    for mk, ck in plan.items():
        if mk in scale_keys:
            continue
        owner_name, leaf = _split(mk)
        owner = modules[owner_name]
        tensor = mapping[ck]
        is_linear_weight = leaf == "weight" and isinstance(owner, nn.Linear | FP8Linear)
        if is_linear_weight and (isinstance(owner, FP8Linear) or want_fp8(mk)):
            if isinstance(owner, nn.Linear):
                fp8_owner = FP8Linear(
                    owner.in_features, owner.out_features, owner.bias is not None, device="meta", dtype=dtype
                )
                if owner.bias is not None:
                    fp8_owner.bias = owner.bias
                parent_name, child = _split(owner_name)
                setattr(modules[parent_name], child, fp8_owner)
                modules[owner_name] = owner = fp8_owner
            scale_key = ck.rsplit(".", 1)[0] + ".weight_scale"
            if tensor.dtype == FP8_DTYPE:
                scale = mapping[scale_key] if scale_key in mapping else torch.ones(())
                owner.set_weight(tensor.to(device), scale.to(device))
            else:
                owner.set_weight(tensor.to(device, torch.float32))
            owner.compute_dtype = dtype
            report.fp8.append(mk)
        else:
            if tensor.dtype == FP8_DTYPE:  # an fp8 checkpoint into a plain module
                scale_key = ck.rsplit(".", 1)[0] + ".weight_scale"
                scale = mapping[scale_key] if scale_key in mapping else torch.ones(())
                tensor = dequantize_fp8(tensor, scale)
            if tensor.is_floating_point() and not (keep_dtype and keep_dtype(mk)):
                tensor = tensor.to(device=device, dtype=dtype)
            else:
                tensor = tensor.to(device=device)
            current = getattr(owner, leaf)
            if isinstance(current, nn.Parameter):
                tensor = nn.Parameter(tensor, requires_grad=current.requires_grad)
            for alias in aliases.get(id(targets[mk]), [mk]):  # tied names share the tensor
                alias_owner_name, alias_leaf = _split(alias)
                alias_owner = modules[alias_owner_name]
                if isinstance(tensor, nn.Parameter):
                    setattr(alias_owner, alias_leaf, tensor)
                else:
                    alias_owner._buffers[alias_leaf] = tensor
        report.loaded.append(mk)
        del tensor
    # non-persistent buffers (e.g. the VAE's latent statistics) follow the module
    for name, buf in list(module.named_buffers()):
        if name not in targets and buf is not None:
            owner_name, leaf = _split(name)
            owner = modules.get(owner_name, module)
            if buf.device.type == "meta":
                continue
            owner._buffers[leaf] = buf.to(device)
    return report


# ----------------------------------------------------------------------------- layout


@dataclass(frozen=True)
class ModelLayout:
    """Where the realtime pipeline's weights live under ``MODELS_DIR``.

    ::

        MODELS_DIR/krea-realtime-video/
            krea-realtime-video-14b.safetensors   the Krea DiT (bf16; or a shard dir + index)
            Wan2.1_VAE.safetensors | Wan2.1_VAE.pth   Wan's VAE (keys encoder.*, conv1.*, conv2.*, decoder.*)
            taew2_1.pth                           optional: TAEHV's decoder (load_pipeline(use_taehv=True))
            umt5-xxl/                             the text encoder, HF UMT5EncoderModel layout:
                config.json, model.safetensors[.index.json] (encoder.block.{i}.layer.0.SelfAttention.q.weight ...),
                tokenizer.json and/or spiece.model (+ tokenizer_config.json, special_tokens_map.json)
            models_t5_umt5-xxl-enc-bf16.pth       alternatively Wan's own T5 checkpoint (keys blocks.{i}.attn.q.weight ...)
            google/umt5-xxl/                      ... with Wan's tokenizer folder
    """

    root: Path

    @property
    def model_dir(self) -> Path:
        return self.root / "krea-realtime-video"

    @property
    def dit(self) -> Path:
        return self.model_dir / "krea-realtime-video-14b.safetensors"

    @property
    def vae_candidates(self) -> tuple[Path, ...]:
        return (self.model_dir / "Wan2.1_VAE.safetensors", self.model_dir / "Wan2.1_VAE.pth")

    @property
    def taehv(self) -> Path:
        """TAEHV's Wan 2.1 decoder (optional: Krea's ``use_taehv``; madebyollin/taehv's file)."""
        return self.model_dir / "taew2_1.pth"

    @property
    def text_encoder_dir(self) -> Path:
        return self.model_dir / "umt5-xxl"

    @property
    def wan_t5_checkpoint(self) -> Path:
        return self.model_dir / "models_t5_umt5-xxl-enc-bf16.pth"

    @property
    def wan_tokenizer_dir(self) -> Path:
        return self.model_dir / "google" / "umt5-xxl"

    @property
    def vae(self) -> Path | None:
        return next((p for p in self.vae_candidates if p.exists()), None)

    def text_encoder_source(self) -> tuple[Path, Path] | None:
        """(weights, tokenizer dir) for the text encoder, HF layout first, else Wan's."""
        if (self.text_encoder_dir / "config.json").is_file():
            return self.text_encoder_dir, self.text_encoder_dir
        if self.wan_t5_checkpoint.is_file() and self.wan_tokenizer_dir.is_dir():
            return self.wan_t5_checkpoint, self.wan_tokenizer_dir
        return None

    def missing(self) -> list[str]:
        """What is absent, in words (empty when everything is there)."""
        out = []
        if not (self.dit.exists() or self.dit.with_suffix("").is_dir()):
            out.append(str(self.dit))
        if self.vae is None:
            out.append(" or ".join(str(p) for p in self.vae_candidates))
        if self.text_encoder_source() is None:
            out.append(f"{self.text_encoder_dir}/ (config.json, weights, tokenizer) or {self.wan_t5_checkpoint} + {self.wan_tokenizer_dir}/")
        else:
            tok = self.text_encoder_source()[1]
            if not any((tok / n).exists() for n in ("tokenizer.json", "spiece.model")):
                out.append(f"{tok}/tokenizer.json or spiece.model")
        return out

    def describe(self) -> dict[str, str]:
        return {
            "dit": str(self.dit),
            "vae": " | ".join(str(p) for p in self.vae_candidates),
            "text_encoder": f"{self.text_encoder_dir}/ (HF UMT5EncoderModel) | {self.wan_t5_checkpoint}",
            "tokenizer": "tokenizer.json | spiece.model",
        }


def expected_layout(models_dir: str | os.PathLike | None = None) -> ModelLayout:
    """The layout under ``models_dir`` (default: ``$MODELS_DIR``, else ``./models``)."""
    root = Path(models_dir if models_dir is not None else os.environ.get("MODELS_DIR", "models"))
    return ModelLayout(root)
