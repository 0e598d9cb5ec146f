"""Which client serves each backend, and whether that backend can run here.

The catalog is data (models, inputs, prices); this module reads the settings: each
backend's client built from them, and what a backend still needs before it can run.
"""

from __future__ import annotations

import importlib
import importlib.util
from typing import Any

from django.conf import settings

from model_control.catalog import FAL, FAL_REALTIME, TENSTORRENT, VideoModel
from model_control.errors import ProviderNotConfigured
from model_control.fal import FalClient
from model_control.tenstorrent import TenstorrentClient

# The local Krea pipeline's package (plain PyTorch, no Django); named, never imported at
# module level, here.
LOCAL_PIPELINE_PACKAGE = "videogen.pipeline"
LOCAL_WEIGHTS_DIR = "krea-realtime-video"


def fal_client() -> FalClient:
    return FalClient(settings.FAL_KEY, queue_url=settings.FAL_QUEUE_URL, run_url=settings.FAL_RUN_URL,
                     rest_url=settings.FAL_REST_URL, cdn_url=settings.FAL_CDN_URL,
                     timeout=settings.FAL_HTTP_TIMEOUT, max_attempts=settings.FAL_MAX_ATTEMPTS,
                     poll_interval=settings.VIDEO_POLL_INTERVAL)


def tenstorrent_client() -> TenstorrentClient:
    return TenstorrentClient(settings.CLOUD_VIDEO_GENERATION_URL, settings.CLOUD_VIDEO_GENERATION_AUTH_TOKEN,
                             poll_interval=settings.VIDEO_POLL_INTERVAL)


def local_pipeline_missing() -> str | None:
    """Why the local pipeline cannot run here, or None when it can.

    It can once its package is installed and it has either real weights in
    ``MODELS_DIR/krea-realtime-video`` or its tiny demo configuration (``TINY_CONFIG``).
    """
    if importlib.util.find_spec(LOCAL_PIPELINE_PACKAGE) is None:
        return "the local pipeline is not built into this studio yet"
    weights = settings.MODELS_DIR / LOCAL_WEIGHTS_DIR
    if weights.is_dir() and any(weights.glob("*.safetensors")):
        return None
    if getattr(importlib.import_module(LOCAL_PIPELINE_PACKAGE), "TINY_CONFIG", None) is not None:
        return None
    return f"no weights in {weights} (python manage.py download_models) and no tiny demo configuration"


_NEEDS = {
    FAL: ("FAL_KEY", "fal is not configured: set FAL_KEY (or FAL_API_KEY) in the studio's environment."),
    FAL_REALTIME: ("FAL_KEY", "fal is not configured: set FAL_KEY (or FAL_API_KEY) in the studio's environment."),
    TENSTORRENT: ("CLOUD_VIDEO_GENERATION_URL",
                  "Tenstorrent is not configured: set CLOUD_VIDEO_GENERATION_URL (and "
                  "CLOUD_VIDEO_GENERATION_AUTH_TOKEN) in the studio's environment."),
}


def missing(model: VideoModel) -> str | None:
    """What ``model``'s backend still needs before it can run, or None when it is ready."""
    if model.backend in _NEEDS:
        setting = _NEEDS[model.backend][0]
        return None if getattr(settings, setting) else f"set {setting}" + (
            " (or FAL_API_KEY)" if setting == "FAL_KEY" else "")
    return local_pipeline_missing()


def configured(model: VideoModel) -> bool:
    return missing(model) is None


def require_configured(model: VideoModel) -> None:
    """Raise ``ProviderNotConfigured`` naming the setting ``model``'s backend lacks."""
    reason = missing(model)
    if reason is not None:
        message = _NEEDS[model.backend][1] if model.backend in _NEEDS else f"The local pipeline cannot run: {reason}."
        raise ProviderNotConfigured(message, provider=model.backend)


def describe(model: VideoModel) -> dict[str, Any]:
    """The catalog's description of ``model`` plus whether it can run here."""
    reason = missing(model)
    return {**model.describe(), "configured": reason is None, "missing": reason}
