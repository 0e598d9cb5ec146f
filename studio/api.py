"""API conventions shared by every app: the error body shape, one handler for every error."""

from __future__ import annotations

import logging

from django.conf import settings
from django.core.exceptions import (
    RequestDataTooBig,
    SuspiciousOperation,
    TooManyFieldsSent,
    TooManyFilesSent,
)
from django.db import InterfaceError, OperationalError
from kombu.exceptions import OperationalError as BrokerError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from model_control.catalog import UnknownModel
from model_control.errors import ProviderError
from model_control.inputs import CatalogError
from runtime.parsers import UnstorableText

logger = logging.getLogger(__name__)

# Seconds a client is told to wait when the database or Redis is down (Retry-After).
OUTAGE_RETRY_AFTER_S = 5
_DOWN = {"database": "The database is unavailable", "redis": "Redis (the broker and cache) is unavailable"}


def outage(exc: BaseException | None) -> str | None:
    """``"database"`` or ``"redis"`` when ``exc`` (or what caused it) says that one is down, else None.

    Connection failures only: a query that is wrong (``DataError``, ``IntegrityError``) is a bug,
    not an outage. Redis is reached through the cache (throttles, slots), Channels and Celery's
    broker (kombu wraps the error).
    """
    seen = 0
    while exc is not None and seen < 10:
        if isinstance(exc, (OperationalError, InterfaceError)):
            return "database"
        if isinstance(exc, (RedisConnectionError, RedisTimeoutError, BrokerError)):
            return "redis"
        exc, seen = exc.__cause__ or exc.__context__, seen + 1
    return None


def outage_body(down: str) -> dict[str, str]:
    """The body of the 503 for an outage of ``down`` (``outage``'s answer); sent with
    ``Retry-After: OUTAGE_RETRY_AFTER_S``."""
    return {"error": f"{_DOWN[down]}: try again in a moment.", "error_type": "unavailable", "unavailable": down}


def _suspicious_body(exc: SuspiciousOperation) -> Response:
    """Django's refusals of a request body, as DRF never sees them: 413 or 400 with a reason."""
    if isinstance(exc, RequestDataTooBig):
        limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
        return Response({"error": f"The request body is larger than {limit / 2**20:.1f} MiB, the most the studio "
                                  "reads as JSON or form fields (DATA_UPLOAD_MAX_MEMORY_SIZE); send images as "
                                  "file uploads.", "error_type": "too_large"}, status=413)
    if isinstance(exc, TooManyFieldsSent):
        return Response({"error": f"The form has more than {settings.DATA_UPLOAD_MAX_NUMBER_FIELDS} fields "
                                  "(DATA_UPLOAD_MAX_NUMBER_FIELDS).", "error_type": "bad_request"}, status=400)
    if isinstance(exc, TooManyFilesSent):
        return Response({"error": f"The form has more than {settings.DATA_UPLOAD_MAX_NUMBER_FILES} files "
                                  "(DATA_UPLOAD_MAX_NUMBER_FILES).", "error_type": "bad_request"}, status=400)
    return Response({"error": "Bad request: the studio could not read it.", "error_type": "bad_request"},
                    status=400)


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
    if isinstance(exc, UnstorableText):
        return Response({"error": str(exc), "fields": {exc.field: exc.reason}}, status=400)
    if isinstance(exc, SuspiciousOperation):
        return _suspicious_body(exc)
    down = outage(exc)
    if down:
        view = context.get("view")
        logger.error("%s: %s is down (%s: %s)", type(view).__name__ if view else "a view", down,
                     type(exc).__name__, exc)
        return Response(outage_body(down), status=503, headers={"Retry-After": str(OUTAGE_RETRY_AFTER_S)})
    response = drf_exception_handler(exc, context)
    if response is None or not isinstance(response.data, dict) or "error" in response.data:
        return response
    if "detail" in response.data:
        response.data = {"error": _flatten(response.data["detail"]), **response.data}
    else:
        response.data = {"error": _flatten(response.data), "fields": response.data}
    return response
