"""The registry of backends: every way Studio can make a video, one module each.

``register`` adds a backend (``model_control`` registers fal's queue, fal realtime and
Tenstorrent when it starts; ``videogen`` registers the local pipeline from its
``AppConfig.ready``, so the dependency points from videogen to here). Everything else reads
from the registry: the catalog is every registered backend's models, a job's backend is
``backend(job.backend)``, a realtime socket's is ``stream_backend(key)``. Nothing outside a
backend module asks which backend it holds. docs/architecture.md, "Adding a backend".
"""

from __future__ import annotations

import threading
from typing import Any

from django.core.signals import setting_changed

from model_control.backends.port import (
    Backend,
    GeneratedVideo,
    ProviderStatus,
    QueuedBackend,
    RemoteBackend,
    StreamBackend,
    StreamLimits,
    Submitted,
    WebhookNews,
    WebhookRefused,
    WorkerBackend,
)
from model_control.catalog import Catalog, VideoModel
from model_control.errors import ProviderNotConfigured

__all__ = [
    "Backend", "QueuedBackend", "RemoteBackend", "WorkerBackend", "StreamBackend", "StreamLimits",
    "GeneratedVideo", "ProviderStatus", "Submitted", "WebhookNews", "WebhookRefused", "UnknownBackend",
    "register", "unregister", "backend", "backends", "stream_backend", "stream_backends", "catalog",
    "backend_of", "missing", "configured", "require_configured", "describe",
]

_registered: dict[str, Backend] = {}
_lock = threading.Lock()
_catalog: Catalog | None = None


class UnknownBackend(LookupError):
    """A backend name nobody registered."""


def register(new: Backend) -> Backend:
    """Add ``new`` (replacing a backend of the same name); the catalog is rebuilt on next use."""
    global _catalog
    for model in new.models():
        if model.backend != new.name:
            raise ValueError(f"{type(new).__name__} declares {model.id} with backend {model.backend!r}, "
                             f"not its own name {new.name!r}")
    with _lock:
        _registered[new.name] = new
        _catalog = None
    return new


def unregister(name: str) -> None:
    global _catalog
    with _lock:
        _registered.pop(name, None)
        _catalog = None


def backends() -> list[Backend]:
    """Every registered backend, in registration order."""
    return list(_registered.values())


def backend(name: str) -> Backend:
    found = _registered.get(name)
    if found is None:
        raise UnknownBackend(f"no backend named {name!r}; registered: {', '.join(_registered) or 'none'}")
    return found


def stream_backends() -> dict[str, StreamBackend]:
    """The realtime backends by their ``?backend=`` key."""
    return {b.key: b for b in _registered.values() if isinstance(b, StreamBackend)}


def stream_backend(key: str) -> StreamBackend | None:
    return stream_backends().get(key)


def catalog() -> Catalog:
    """Every registered backend's models (built once per registration or settings change)."""
    global _catalog
    with _lock:
        if _catalog is None:
            _catalog = Catalog([model for b in _registered.values() for model in b.models()])
        return _catalog


def _forget_catalog(**kwargs: Any) -> None:
    global _catalog
    with _lock:
        _catalog = None


# Limits come from settings (blocks per session, say): a changed setting rebuilds the catalog.
setting_changed.connect(_forget_catalog)


def backend_of(model: VideoModel) -> Backend:
    return backend(model.backend)


def missing(model: VideoModel) -> str | None:
    """What ``model``'s backend still needs before it can run, or None when it is ready."""
    return backend_of(model).missing()


def configured(model: VideoModel) -> bool:
    return missing(model) is None


def require_configured(model: VideoModel) -> None:
    """Raise ``ProviderNotConfigured`` naming what ``model``'s backend lacks."""
    owner = backend_of(model)
    if owner.missing() is not None:
        raise ProviderNotConfigured(owner.not_configured_message(), provider=owner.name)


def describe(model: VideoModel) -> dict[str, Any]:
    """The catalog's description of ``model`` plus whether it can run here."""
    reason = missing(model)
    return {**model.describe(), "configured": reason is None, "missing": reason}
