"""API conventions shared by every app: the error body shape."""

from __future__ import annotations

from rest_framework.views import exception_handler as drf_exception_handler


def _flatten(value) -> str:
    if isinstance(value, list):
        return " ".join(_flatten(v) for v in value)
    if isinstance(value, dict):
        return "; ".join(f"{k}: {_flatten(v)}" for k, v in value.items())
    return str(value)


def exception_handler(exc, context):
    """DRF's handler, with every error body carrying one readable ``error`` message.

    DRF answers ``{"detail": ...}`` or ``{field: [messages]}``; clients of TT Studio read
    ``error``. Field errors stay available under ``fields``.
    """
    response = drf_exception_handler(exc, context)
    if response is None or not isinstance(response.data, dict) or "error" in response.data:
        return response
    if "detail" in response.data:
        response.data = {"error": _flatten(response.data["detail"]), **response.data}
    else:
        response.data = {"error": _flatten(response.data), "fields": response.data}
    return response
