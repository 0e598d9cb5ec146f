"""API conventions shared by every app: the error body shape, one handler for every error."""

from __future__ import annotations

import logging

from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from model_control.catalog import UnknownModel
from model_control.errors import ProviderError
from model_control.inputs import CatalogError

logger = logging.getLogger(__name__)


def _flatten(value) -> str:
    if isinstance(value, list):
        return " ".join(_flatten(v) for v in value)
    if isinstance(value, dict):
        return "; ".join(f"{k}: {_flatten(v)}" for k, v in value.items())
    return str(value)


def exception_handler(exc, context):
    """DRF's handler, with every error body carrying one readable ``error`` message.

    Provider failures (``ProviderError``: its status and ``as_dict``), invalid input
    (``CatalogError``: 400 with ``fields``) and unknown models (404) are answered here, so
    views raise them instead of catching each one.

    DRF answers ``{"detail": ...}`` or ``{field: [messages]}``; clients of TT Studio read
    ``error``. Field errors stay available under ``fields``.
    """
    if isinstance(exc, ProviderError):
        view = context.get("view")
        logger.warning("%s failed: %s (%s, request %s)", type(view).__name__ if view else "a view",
                       exc.kind, exc.provider or "no provider", exc.request_id)
        return Response(exc.as_dict(), status=exc.http_status)
    if isinstance(exc, CatalogError):
        return Response({"error": str(exc), "fields": exc.errors}, status=400)
    if isinstance(exc, UnknownModel):
        return Response({"error": str(exc)}, status=404)
    response = drf_exception_handler(exc, context)
    if response is None or not isinstance(response.data, dict) or "error" in response.data:
        return response
    if "detail" in response.data:
        response.data = {"error": _flatten(response.data["detail"]), **response.data}
    else:
        response.data = {"error": _flatten(response.data), "fields": response.data}
    return response
