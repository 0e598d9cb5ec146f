"""The few errors a generation can end in, each with a message a user can act on.

``CatalogError``: the request itself is wrong for the model (nothing was sent). The
``ProviderError`` family: what a backend call ended in. Provider clients and backends raise
these and nothing else; the API's one exception handler turns them into HTTP answers.
"""

from __future__ import annotations

from typing import Any

from model_control.redaction import hide_hosts, redact, redact_value


class CatalogError(ValueError):
    """A request a model cannot take; ``errors`` maps each Studio field to a message."""

    def __init__(self, errors: dict[str, str]):
        self.errors = errors
        super().__init__("; ".join(f"{k}: {v}" for k, v in errors.items()))


class ProviderError(Exception):
    """Base of every provider failure. ``request_id`` is set when the provider has the job;
    ``upstream_status`` is the provider's HTTP status when it answered one."""

    http_status = 502
    kind = "provider_error"

    def __init__(self, message: str, *, provider: str = "", request_id: str | None = None,
                 details: Any = None, provider_error_type: str | None = None, upstream_status: int | None = None):
        # Upstream text may echo what it was sent (credentials) and where (host:port).
        message = hide_hosts(redact(message))
        super().__init__(message)
        self.message = message
        self.provider = provider
        self.request_id = request_id
        self.details = redact_value(details)
        self.provider_error_type = provider_error_type
        self.upstream_status = upstream_status

    def as_dict(self) -> dict[str, Any]:
        body: dict[str, Any] = {"error": self.message, "error_type": self.kind}
        if self.provider:
            body["provider"] = self.provider
        if self.request_id:
            body["request_id"] = self.request_id
        if self.details is not None:
            body["details"] = self.details
        if self.provider_error_type:
            body["provider_error_type"] = self.provider_error_type
        return body


class ProviderTimeout(ProviderError):
    """The provider did not finish in time. The job may still complete: keep ``request_id``."""

    http_status = 504
    kind = "timeout"


class ProviderRejected(ProviderError):
    """The provider refused the input; ``details`` lists ``{"field", "message"}`` entries."""

    http_status = 422
    kind = "rejected"


class ProviderUnavailable(ProviderError):
    """The provider could not be reached or failed on its side; trying later may work."""

    http_status = 502
    kind = "unavailable"


class ProviderFailed(ProviderError):
    """The provider ran the job and reports it failed: final, unlike ``ProviderUnavailable``."""

    http_status = 502
    kind = "failed"


class ProviderUnauthorized(ProviderError):
    """The provider refused our credentials (the key or token in the settings)."""

    http_status = 502
    kind = "unauthorized"


class ProviderNotConfigured(ProviderError):
    """A setting the provider needs (its key or URL) is missing."""

    http_status = 503
    kind = "not_configured"


class ProviderCancelled(ProviderError):
    """The job was cancelled before it produced a result."""

    http_status = 409
    kind = "cancelled"


class ProviderOutOfMemory(ProviderError):
    """The generator ran out of (GPU) memory for this request; a smaller one may fit."""

    http_status = 503
    kind = "out_of_memory"
