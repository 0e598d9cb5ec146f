"""The Krea pipeline's weight files: what is needed, where it comes from, and proof it is intact.

Used by ``manage.py download_models`` (no Django here: every function takes its paths). The
files land in ``videogen.pipeline.weights.ModelLayout``'s layout under ``MODELS_DIR``::

    krea-realtime-video/
        krea-realtime-video-14b.safetensors   krea/krea-realtime-video       the DiT (bf16, ~28.6 GB)
        Wan2.1_VAE.pth                        Wan-AI/Wan2.1-T2V-14B          the VAE (~508 MB)
        models_t5_umt5-xxl-enc-bf16.pth       Wan-AI/Wan2.1-T2V-14B          UMT5-XXL encoder (~11.4 GB)
        google/umt5-xxl/                      Wan-AI/Wan2.1-T2V-14B          its tokenizer (every file there)
        manifest.json                         written here: name, size, sha256, source of each file

How a file is verified (size and SHA-256, hashed in 8 MiB chunks, never read whole):

- **downloaded** from the Hugging Face Hub: against the hub's own metadata for that commit
  (the size, and the LFS object's SHA-256; small files kept in git have no SHA-256 on the
  hub, so their git blob id, a SHA-1 of the content, is checked instead);
- **imported** with ``--from-dir``: against a manifest that came with the files (the
  ``manifest.json`` ``download_models`` wrote on a machine that had the network), or one
  named with ``--manifest``; a file no manifest knows is refused unless
  ``--allow-unverified`` (then it is only checked for its structure and recorded as such);
- **checked** (``--check``): against the local ``manifest.json`` written after one of the two.

The exact sizes and hashes of the real files are not written into this module: they are
read from the hub (their one authority) when online and kept in the manifest from then on.
Every file is also checked for its structure: a safetensors header that parses and holds the
component's keys, a ``torch.save`` zip archive, JSON that parses.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import struct
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

MODEL_DIR_NAME = "krea-realtime-video"
MANIFEST_NAME = "manifest.json"
MANIFEST_FORMAT = "studio-models/1"
CHUNK = 8 << 20


@dataclass(frozen=True)
class Component:
    """One part of the pipeline and where it comes from on the Hugging Face Hub."""

    key: str
    what: str
    repo: str
    path: str  # a file, or a folder ("google/umt5-xxl/": every file in it); the same path locally
    approx_size: str  # for people; never used to verify

    @property
    def folder(self) -> bool:
        return self.path.endswith("/")


COMPONENTS: tuple[Component, ...] = (
    Component("dit", "Krea Realtime 14B DiT (bf16, Wan key layout)", "krea/krea-realtime-video",
              "krea-realtime-video-14b.safetensors", "about 28.6 GB"),
    Component("vae", "Wan 2.1 VAE", "Wan-AI/Wan2.1-T2V-14B", "Wan2.1_VAE.pth", "about 508 MB"),
    Component("text_encoder", "UMT5-XXL text encoder (bf16, Wan's checkpoint)", "Wan-AI/Wan2.1-T2V-14B",
              "models_t5_umt5-xxl-enc-bf16.pth", "about 11.4 GB"),
    Component("tokenizer", "UMT5 tokenizer (tokenizer.json and/or spiece.model)", "Wan-AI/Wan2.1-T2V-14B",
              "google/umt5-xxl/", "about 21 MB"),
)


class ModelFilesError(Exception):
    """Something the caller must fix; the message names the files and what to do."""


class Offline(ModelFilesError):
    """The Hugging Face Hub cannot be reached (HF_HUB_OFFLINE, no network)."""


# ----------------------------------------------------------------------------- hashing


def sha256_of(path: Path) -> str:
    """SHA-256 of a file, read in chunks (a 28 GB checkpoint is never in memory)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def git_blob_sha1(path: Path) -> str:
    """Git's blob id of a file: SHA-1 of ``"blob <size>\\0"`` + the content (the hub's id for
    files kept in git rather than LFS)."""
    digest = hashlib.sha1(f"blob {path.stat().st_size}\0".encode())  # noqa: S324 - git's id, not security
    with open(path, "rb") as handle:
        while chunk := handle.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


# ----------------------------------------------------------------------------- structure


def check_structure(path: Path, component: Component, name: str | None = None) -> str | None:
    """What is wrong with the file's format for ``component``, or None when it looks right
    (judged as a file called ``name``, default its own)."""
    name = name or path.name
    try:
        if name.endswith(".safetensors"):
            keys = safetensors_keys(path)
            if component.key == "dit" and not any(k.endswith("blocks.0.self_attn.q.weight") for k in keys):
                return "a safetensors file without the DiT's keys (blocks.0.self_attn.q.weight ...)"
            if component.key == "vae" and not any(k.startswith("decoder.") for k in keys):
                return "a safetensors file without the VAE's decoder.* keys"
            return None
        if name.endswith((".pth", ".pt", ".bin")):
            if not zipfile.is_zipfile(path):
                return "not a torch.save archive (a zip file)"
            with zipfile.ZipFile(path) as archive:
                if not any(entry.endswith("data.pkl") for entry in archive.namelist()):
                    return "a zip file without torch.save's data.pkl"
            return None
        if name.endswith(".json"):
            json.loads(path.read_text(encoding="utf-8"))
            return None
    except (OSError, ValueError, UnicodeDecodeError, zipfile.BadZipFile, struct.error) as exc:
        return f"unreadable ({type(exc).__name__}: {exc})"
    if path.stat().st_size == 0:
        return "empty"
    return None


def safetensors_keys(path: Path) -> list[str]:
    """The tensor names in a safetensors file's header (reads only the header)."""
    with open(path, "rb") as handle:
        (length,) = struct.unpack("<Q", handle.read(8))
        if not 0 < length <= 100 << 20:
            raise ValueError(f"a header of {length} bytes is not a safetensors header")
        header = json.loads(handle.read(length))
    if not isinstance(header, dict):
        raise ValueError("the safetensors header is not a JSON object")
    return [k for k in header if k != "__metadata__"]


# ----------------------------------------------------------------------------- manifests


@dataclass
class Manifest:
    """``{relative path: {"size", "sha256", "component", "source", "verified"}}`` on disk as JSON."""

    files: dict[str, dict[str, Any]] = field(default_factory=dict)

    @classmethod
    def read(cls, path: Path) -> Manifest:
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError:
            raise
        except (OSError, ValueError) as exc:
            raise ModelFilesError(f"{path} is not a readable manifest ({exc})") from None
        files = data.get("files") if isinstance(data, dict) else None
        if not isinstance(files, dict) or not all(
                isinstance(v, dict) and isinstance(v.get("size"), int) and isinstance(v.get("sha256"), str)
                for v in files.values()):
            raise ModelFilesError(f"{path} is not a manifest: it needs {{\"files\": {{path: {{\"size\", \"sha256\"}}}}}}")
        return cls({k.replace("\\", "/"): dict(v) for k, v in files.items()})

    @classmethod
    def read_or_empty(cls, path: Path) -> Manifest:
        """The manifest at ``path``, or an empty one when there is none yet."""
        try:
            return cls.read(path)
        except FileNotFoundError:
            return cls()

    def write(self, path: Path) -> None:
        data = {"format": MANIFEST_FORMAT, "written_at": datetime.now(UTC).isoformat(timespec="seconds"),
                "files": dict(sorted(self.files.items()))}
        staged = path.with_name(path.name + ".partial")
        staged.write_text(json.dumps(data, indent=2) + "\n")
        os.replace(staged, path)


def model_dir(models_dir: Path) -> Path:
    return Path(models_dir) / MODEL_DIR_NAME


def component_of(relative: str) -> Component | None:
    for component in COMPONENTS:
        if relative == component.path or (component.folder and relative.startswith(component.path)):
            return component
    return None


def present(models_dir: Path, component: Component) -> bool:
    """Whether the layout has ``component`` (a tokenizer needs tokenizer.json or spiece.model)."""
    target = model_dir(models_dir) / component.path
    if component.folder:
        return any((target / name).is_file() for name in ("tokenizer.json", "spiece.model"))
    return target.is_file()


def missing_components(models_dir: Path) -> list[Component]:
    return [c for c in COMPONENTS if not present(models_dir, c)]


def describe_missing(components: list[Component], models_dir: Path) -> str:
    lines = [f"  {c.path:<40} {c.what}, {c.approx_size}, from {c.repo}" for c in components]
    return f"missing under {model_dir(models_dir)}:\n" + "\n".join(lines)


# ----------------------------------------------------------------------------- verification


@dataclass
class Outcome:
    path: str
    ok: bool
    message: str


Say = Callable[[str], None]


def _quiet(_: str) -> None:
    pass


def verify_file(path: Path, expected: dict[str, Any], *, quick: bool = False, say: Say = _quiet) -> str | None:
    """What differs between the file and its ``expected`` size and sha256 (None when equal)."""
    if not path.is_file():
        return "missing"
    size = path.stat().st_size
    if size != expected["size"]:
        return f"size {size:,} bytes, expected {expected['size']:,}"
    if quick:
        return None
    if size > 256 << 20:
        say(f"  hashing {path.name} ({size / 1e9:.1f} GB) ...")
    digest = sha256_of(path)
    if digest != expected["sha256"]:
        return f"sha256 mismatch: expected {expected['sha256']}, got {digest}"
    return None


def check(models_dir: Path, *, quick: bool = False, say: Say = _quiet) -> list[Outcome]:
    """Verify the layout against its own manifest (size, and sha256 unless ``quick``)."""
    root = model_dir(models_dir)
    manifest_path = root / MANIFEST_NAME
    try:
        manifest = Manifest.read(manifest_path)
    except FileNotFoundError:
        raise ModelFilesError(f"no manifest at {manifest_path}: nothing was downloaded or imported with "
                              "download_models yet (run it, or download_models --from-dir DIR)") from None
    outcomes = []
    for relative, expected in manifest.files.items():
        problem = verify_file(root / relative, expected, quick=quick, say=say)
        if problem is None and (component := component_of(relative)) is not None:
            problem = check_structure(root / relative, component)
        outcomes.append(Outcome(relative, problem is None, problem or f"ok ({expected.get('verified', '?')})"))
    for component in missing_components(models_dir):
        outcomes.append(Outcome(component.path, False, f"missing: {component.what}, {component.approx_size}, "
                                                       f"from {component.repo}"))
    return outcomes


# ----------------------------------------------------------------------------- --from-dir


def _source_files(source: Path, component: Component) -> Iterator[tuple[str, Path]]:
    """(layout-relative path, file in ``source``) for ``component``: at its layout path, or
    (a single file) directly in ``source``."""
    if component.folder:
        folder = source / component.path
        if folder.is_dir():
            for entry in sorted(folder.iterdir()):
                if entry.is_file() and not entry.name.startswith("."):
                    yield component.path + entry.name, entry
        return
    for candidate in (source / component.path, source / Path(component.path).name):
        if candidate.is_file():
            yield component.path, candidate
            return


def _place(source: Path, target: Path, link: bool) -> Path:
    """Hard-link (same filesystem) or copy ``source`` next to ``target`` as a staging file."""
    target.parent.mkdir(parents=True, exist_ok=True)
    staged = target.with_name(f".{target.name}.partial")
    staged.unlink(missing_ok=True)
    if link:
        try:
            os.link(source, staged)
            return staged
        except OSError:  # another filesystem, or links not allowed: copy
            pass
    shutil.copyfile(source, staged)
    return staged


def import_dir(models_dir: Path, source: Path, *, reference: Manifest | None = None,
               allow_unverified: bool = False, link: bool = True, say: Say = _quiet) -> list[Outcome]:
    """Copy (or hard-link) the pipeline's files from ``source`` into the layout, verifying each.

    ``reference``: the sizes and hashes to hold them to (else ``source/manifest.json``). A file
    that does not match is not imported; the layout's manifest records what was.
    """
    source = Path(source)
    if not source.is_dir():
        raise ModelFilesError(f"--from-dir {source}: no such directory")
    nested = source / MODEL_DIR_NAME  # a MODELS_DIR given instead of its krea-realtime-video/
    if nested.is_dir() and not any(next(_source_files(source, c), None) for c in COMPONENTS):
        source = nested
    if reference is None:
        reference = Manifest.read_or_empty(source / MANIFEST_NAME)
    root = model_dir(models_dir)
    root.mkdir(parents=True, exist_ok=True)
    local = Manifest.read_or_empty(root / MANIFEST_NAME)
    outcomes: list[Outcome] = []
    found_any = False
    for component in COMPONENTS:
        for relative, path in _source_files(source, component):
            found_any = True
            expected = reference.files.get(relative)
            if expected is None and not allow_unverified:
                outcomes.append(Outcome(relative, False, "no reference size and sha256 (no manifest lists it): "
                                                         "pass the manifest.json written where it was downloaded "
                                                         "(--manifest), or --allow-unverified"))
                continue
            if expected is not None and path.stat().st_size != expected["size"]:
                outcomes.append(Outcome(relative, False, f"size {path.stat().st_size:,} bytes, expected "
                                                         f"{expected['size']:,}: not imported"))
                continue
            target = root / relative
            say(f"  importing {relative} ({path.stat().st_size / 1e6:,.1f} MB)")
            staged = _place(path, target, link)
            try:
                digest = sha256_of(staged)
                if expected is not None and digest != expected["sha256"]:
                    outcomes.append(Outcome(relative, False, f"sha256 mismatch: expected {expected['sha256']}, got "
                                                             f"{digest} (corrupted, or another version): not imported"))
                    continue
                problem = check_structure(staged, component, name=target.name)
                if problem:
                    outcomes.append(Outcome(relative, False, f"{problem}: not imported"))
                    continue
                os.replace(staged, target)
            finally:
                staged.unlink(missing_ok=True)
            local.files[relative] = {"size": target.stat().st_size, "sha256": digest, "component": component.key,
                                     "source": (expected or {}).get("source", f"imported from {source}"),
                                     "verified": "manifest" if expected is not None else "unverified"}
            outcomes.append(Outcome(relative, True, "imported, size and sha256 match the manifest"
                                    if expected is not None else "imported UNVERIFIED (no reference hash; "
                                                                 "structure checked)"))
    if not found_any:
        raise ModelFilesError(f"--from-dir {source} holds none of the pipeline's files "
                              f"({', '.join(c.path for c in COMPONENTS)})")
    local.write(root / MANIFEST_NAME)
    reported = {component_of(o.path) for o in outcomes}
    for component in missing_components(models_dir):
        if component not in reported:  # a file refused above is named once, with its reason
            outcomes.append(Outcome(component.path, False, f"missing: not in {source} either ({component.what}, "
                                                           f"{component.approx_size}, from {component.repo})"))
    return outcomes


# ----------------------------------------------------------------------------- the hub


def hub_offline_reason() -> str | None:
    """Why the hub is not to be asked (HF_HUB_OFFLINE), or None."""
    value = os.environ.get("HF_HUB_OFFLINE", "").strip().lower()
    if value in {"1", "true", "yes", "on"}:
        return "HF_HUB_OFFLINE is set"
    return None


def network_errors() -> tuple[type[BaseException], ...]:
    """Exceptions that mean "the hub cannot be reached" (huggingface_hub's httpx, requests, OS)."""
    from huggingface_hub import errors

    found: list[type[BaseException]] = [errors.OfflineModeIsEnabled, errors.LocalEntryNotFoundError, OSError,
                                        TimeoutError]
    for module, name in (("httpx2", "TransportError"), ("httpx", "TransportError"),
                         ("requests", "ConnectionError"), ("requests", "Timeout")):
        try:
            found.append(getattr(__import__(module), name))
        except (ImportError, AttributeError):
            continue
    return tuple(found)


@dataclass(frozen=True)
class HubFile:
    path: str
    size: int
    sha256: str | None  # the LFS object's SHA-256; None for a file kept in git
    blob_id: str  # git's blob id (SHA-1)


class Hub:
    """The few hub calls download_models makes (a fake stands in for it in tests)."""

    def __init__(self, endpoint: str | None = None, token: str | None = None):
        from huggingface_hub import HfApi

        self.endpoint = endpoint
        self.token = token
        self.api = HfApi(endpoint=endpoint, token=token)

    def commit(self, repo: str, revision: str) -> str:
        return self.api.model_info(repo, revision=revision).sha

    def files(self, repo: str, path: str, revision: str) -> list[HubFile]:
        from huggingface_hub.hf_api import RepoFile

        if path.endswith("/"):
            entries = self.api.list_repo_tree(repo, path_in_repo=path.rstrip("/"), revision=revision)
        else:
            entries = self.api.get_paths_info(repo, [path], revision=revision)
        return [HubFile(e.path, e.size, e.lfs.sha256 if e.lfs else None, e.blob_id)
                for e in entries if isinstance(e, RepoFile)]

    def download(self, repo: str, path: str, revision: str, local_dir: Path) -> Path:
        from huggingface_hub import hf_hub_download

        return Path(hf_hub_download(repo, path, revision=revision, local_dir=local_dir, endpoint=self.endpoint,
                                    token=self.token))


def download(models_dir: Path, hub: Hub, *, revision: str = "main", say: Say = _quiet) -> list[Outcome]:
    """Fetch what the layout lacks (or what differs from the hub) and verify it by the hub's
    size and SHA-256 (git blob id for small git files); writes the manifest."""
    errors = network_errors()
    root = model_dir(models_dir)
    root.mkdir(parents=True, exist_ok=True)
    local = Manifest.read_or_empty(root / MANIFEST_NAME)
    outcomes: list[Outcome] = []
    commits: dict[str, str] = {}
    for component in COMPONENTS:
        try:
            if component.repo not in commits:
                commits[component.repo] = hub.commit(component.repo, revision)
            commit = commits[component.repo]
            remote = hub.files(component.repo, component.path, commit)
        except errors as exc:
            raise Offline(f"{type(exc).__name__}: {exc}") from None
        if not remote:
            outcomes.append(Outcome(component.path, False, f"{component.repo} has no {component.path} at "
                                                           f"{revision} ({commit[:12]})"))
            continue
        for entry in remote:
            target = root / entry.path
            known = local.files.get(entry.path)
            if target.is_file() and known and known["size"] == entry.size == target.stat().st_size and (
                    entry.sha256 is None or known["sha256"] == entry.sha256):
                outcomes.append(Outcome(entry.path, True, "already here (size matches the hub; --check hashes it)"))
                continue
            say(f"  downloading {component.repo}/{entry.path} ({entry.size / 1e9:.2f} GB)")
            try:
                downloaded = hub.download(component.repo, entry.path, commit, root)
            except errors as exc:
                raise Offline(f"{type(exc).__name__}: {exc}") from None
            if downloaded.resolve() != target.resolve():
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.move(str(downloaded), target)
            problem = _against_hub(target, entry)
            if problem is None:
                problem = check_structure(target, component)
            if problem:
                target.unlink(missing_ok=True)
                outcomes.append(Outcome(entry.path, False, f"{problem}; the download was removed"))
                local.files.pop(entry.path, None)
                continue
            local.files[entry.path] = {"size": entry.size, "sha256": entry.sha256 or sha256_of(target),
                                       "component": component.key,
                                       "source": f"{component.repo}@{commit}/{entry.path}", "verified": "hub"}
            local.write(root / MANIFEST_NAME)  # after every file: an interrupted download keeps the others
            outcomes.append(Outcome(entry.path, True, "downloaded, size and hash match the hub"))
    local.write(root / MANIFEST_NAME)
    return outcomes


def _against_hub(path: Path, entry: HubFile) -> str | None:
    size = path.stat().st_size
    if size != entry.size:
        return f"size {size:,} bytes, the hub says {entry.size:,}"
    if entry.sha256 is not None:
        digest = sha256_of(path)
        if digest != entry.sha256:
            return f"sha256 mismatch: the hub says {entry.sha256}, got {digest}"
        return None
    blob = git_blob_sha1(path)
    if blob != entry.blob_id:
        return f"git blob id mismatch: the hub says {entry.blob_id}, got {blob}"
    return None
