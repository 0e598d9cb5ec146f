"""Verify fal's signed webhooks (docs/protocols.md, "fal queue", "Webhooks"). No Django models.

fal signs ``"{request_id}\\n{user_id}\\n{timestamp}\\n{sha256_hex(raw body)}"`` with Ed25519
and sends it hex-encoded in ``X-Fal-Webhook-Signature``, next to ``X-Fal-Webhook-Request-Id``,
``-User-Id`` and ``-Timestamp`` (unix seconds). Its public keys are a JWKS at
``{FAL_REST_URL}/.well-known/jwks.json``.

* Keys are fetched once and kept ``ttl`` seconds (in-process). A signature no cached key
  accepts makes one refetch (fal rotated its key), at most every ``min_refetch_interval``
  seconds, so forged requests cannot make the studio hammer fal's JWKS.
* A timestamp more than ``max_skew`` seconds away from now (either way) is refused, so a
  captured delivery cannot be replayed later.

Errors: ``MalformedWebhook`` (missing or unreadable headers or body), ``StaleWebhook``
(timestamp out of range), ``BadSignature`` (no key accepts it), ``KeysUnavailable`` (the
JWKS could not be fetched: try again later). All derive from ``WebhookError``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import requests
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

logger = logging.getLogger(__name__)

HEADER_REQUEST_ID = "X-Fal-Webhook-Request-Id"
HEADER_USER_ID = "X-Fal-Webhook-User-Id"
HEADER_TIMESTAMP = "X-Fal-Webhook-Timestamp"
HEADER_SIGNATURE = "X-Fal-Webhook-Signature"

DEFAULT_MAX_SKEW_S = 300
JWKS_TTL_S = 3600.0
JWKS_MIN_REFETCH_S = 10.0
JWKS_TIMEOUT_S = 10.0
MAX_HEADER_LENGTH = 512


class WebhookError(Exception):
    """A webhook that is not accepted; ``http_status`` is the answer to give."""

    http_status = 400
    kind = "invalid"


class MalformedWebhook(WebhookError):
    """A header is missing or unreadable, or the body is not the JSON fal sends."""

    http_status = 400
    kind = "malformed"


class StaleWebhook(WebhookError):
    """The signed timestamp is too far from now (a replay, or a clock far off)."""

    http_status = 401
    kind = "stale"


class BadSignature(WebhookError):
    """No published key accepts the signature."""

    http_status = 401
    kind = "bad_signature"


class KeysUnavailable(WebhookError):
    """fal's JWKS could not be fetched or read; fal retries, so a later delivery may pass."""

    http_status = 503
    kind = "keys_unavailable"


@dataclass(frozen=True)
class FalWebhook:
    """A verified delivery: who it is about and what fal says happened."""

    request_id: str
    gateway_request_id: str | None
    user_id: str
    timestamp: int
    ok: bool
    payload: Any
    error: str | None
    payload_error: Any = None


def _public_keys(document: Any) -> list[Ed25519PublicKey]:
    """The Ed25519 keys of a JWKS document (other key types are skipped)."""
    if not isinstance(document, dict) or not isinstance(document.get("keys"), list):
        raise KeysUnavailable("fal's JWKS is not a {\"keys\": [...]} document.")
    keys = []
    for entry in document["keys"]:
        if not isinstance(entry, dict) or entry.get("kty") != "OKP" or entry.get("crv") != "Ed25519":
            continue
        x = entry.get("x")
        if not isinstance(x, str):
            continue
        try:
            raw = base64.urlsafe_b64decode(x + "=" * (-len(x) % 4))
            keys.append(Ed25519PublicKey.from_public_bytes(raw))
        except (ValueError, binascii.Error):
            logger.warning("skipping an unreadable key in fal's JWKS")
    return keys


class JwksCache:
    """fal's webhook keys from ``url``, kept ``ttl`` seconds; thread-safe."""

    def __init__(self, url: str, *, ttl: float = JWKS_TTL_S, min_refetch_interval: float = JWKS_MIN_REFETCH_S,
                 timeout: float = JWKS_TIMEOUT_S, session: requests.Session | None = None,
                 clock: Callable[[], float] = time.monotonic):
        self.url = url
        self.ttl = ttl
        self.min_refetch_interval = min_refetch_interval
        self.timeout = timeout
        self.session = session or requests.Session()
        self.clock = clock
        self.fetches = 0
        self._keys: list[Ed25519PublicKey] | None = None
        self._fetched_at: float | None = None
        self._lock = threading.Lock()

    def keys(self) -> list[Ed25519PublicKey]:
        """The cached keys, fetched first when there are none or they are older than ``ttl``."""
        with self._lock:
            if self._keys is None or self._fetched_at is None or self.clock() - self._fetched_at >= self.ttl:
                self._fetch()
            return list(self._keys or [])

    def refresh(self) -> list[Ed25519PublicKey] | None:
        """Fetch again (a key may have rotated); None when the last fetch is too recent."""
        with self._lock:
            if self._fetched_at is not None and self.clock() - self._fetched_at < self.min_refetch_interval:
                return None
            self._fetch()
            return list(self._keys or [])

    def clear(self) -> None:
        with self._lock:
            self._keys, self._fetched_at = None, None

    def _fetch(self) -> None:
        self.fetches += 1
        try:
            response = self.session.get(self.url, timeout=self.timeout)
        except requests.RequestException as exc:
            raise KeysUnavailable(f"Cannot fetch fal's webhook keys ({type(exc).__name__}).") from None
        if not response.ok:
            raise KeysUnavailable(f"fal's webhook keys answered HTTP {response.status_code}.")
        try:
            document = response.json()
        except ValueError:
            raise KeysUnavailable("fal's webhook keys are not JSON.") from None
        keys = _public_keys(document)
        if not keys:
            raise KeysUnavailable("fal's JWKS holds no Ed25519 key.")
        self._keys, self._fetched_at = keys, self.clock()


def _header(headers: Mapping[str, str], name: str) -> str:
    value = headers.get(name)
    if value is None:  # a plain dict with other capitalisation
        lowered = name.lower()
        value = next((v for k, v in headers.items() if k.lower() == lowered), None)
    if value is None or not str(value).strip():
        raise MalformedWebhook(f"The {name} header is missing.")
    value = str(value).strip()
    if len(value) > MAX_HEADER_LENGTH or "\n" in value:
        raise MalformedWebhook(f"The {name} header is malformed.")
    return value


class WebhookVerifier:
    """Checks a delivery's headers, timestamp and signature, then reads its body."""

    def __init__(self, jwks: JwksCache, *, max_skew: float = DEFAULT_MAX_SKEW_S,
                 clock: Callable[[], float] = time.time):
        self.jwks = jwks
        self.max_skew = max_skew
        self.clock = clock

    def verify(self, headers: Mapping[str, str], body: bytes) -> FalWebhook:
        """The verified webhook, or a ``WebhookError`` (nothing in it may be trusted then)."""
        request_id = _header(headers, HEADER_REQUEST_ID)
        user_id = _header(headers, HEADER_USER_ID)
        stamp = _header(headers, HEADER_TIMESTAMP)
        signature_hex = _header(headers, HEADER_SIGNATURE)
        if not stamp.isascii() or not stamp.isdigit():
            raise MalformedWebhook(f"The {HEADER_TIMESTAMP} header is not unix seconds.")
        timestamp = int(stamp)
        try:
            signature = bytes.fromhex(signature_hex)
        except ValueError:
            raise MalformedWebhook(f"The {HEADER_SIGNATURE} header is not hex.") from None
        if len(signature) != 64:
            raise MalformedWebhook(f"The {HEADER_SIGNATURE} header is not an Ed25519 signature.")
        if abs(self.clock() - timestamp) > self.max_skew:
            raise StaleWebhook(f"The webhook's timestamp is more than {self.max_skew:g} s from now.")
        message = f"{request_id}\n{user_id}\n{stamp}\n{hashlib.sha256(body).hexdigest()}".encode()
        if not self._signed(self.jwks.keys(), signature, message):
            rotated = self.jwks.refresh()
            if rotated is None or not self._signed(rotated, signature, message):
                raise BadSignature("No key of fal's accepts the webhook's signature.")
        return self._read(body, request_id, user_id, timestamp)

    @staticmethod
    def _signed(keys: list[Ed25519PublicKey], signature: bytes, message: bytes) -> bool:
        for key in keys:
            try:
                key.verify(signature, message)
                return True
            except InvalidSignature:
                continue
        return False

    @staticmethod
    def _read(body: bytes, request_id: str, user_id: str, timestamp: int) -> FalWebhook:
        try:
            data = json.loads(body)
        except (ValueError, UnicodeDecodeError):
            raise MalformedWebhook("The webhook's body is not JSON.") from None
        if not isinstance(data, dict):
            raise MalformedWebhook("The webhook's body is not a JSON object.")
        status = data.get("status")
        if status not in ("OK", "ERROR"):
            raise MalformedWebhook('The webhook\'s status is neither "OK" nor "ERROR".')
        body_id, gateway_id = data.get("request_id"), data.get("gateway_request_id")
        if request_id not in (body_id, gateway_id):
            raise MalformedWebhook("The webhook's body is about another request than its headers.")
        error = data.get("error")
        return FalWebhook(request_id=str(body_id or request_id),
                          gateway_request_id=str(gateway_id) if gateway_id else None, user_id=user_id,
                          timestamp=timestamp, ok=status == "OK", payload=data.get("payload"),
                          error=str(error) if error not in (None, "") else None,
                          payload_error=data.get("payload_error"))


_caches: dict[str, JwksCache] = {}
_caches_lock = threading.Lock()


def jwks_url(jwks_url_setting: str | None, rest_url: str) -> str:
    """``FAL_JWKS_URL``, else ``{FAL_REST_URL}/.well-known/jwks.json``."""
    return jwks_url_setting or f"{rest_url.rstrip('/')}/.well-known/jwks.json"


def shared_cache(url: str) -> JwksCache:
    """The process's key cache for ``url`` (one per URL, kept across requests)."""
    with _caches_lock:
        cache = _caches.get(url)
        if cache is None:
            cache = _caches[url] = JwksCache(url)
        return cache


def from_settings(settings: Any) -> WebhookVerifier:
    """A verifier from Django-style settings (``FAL_JWKS_URL``, ``FAL_REST_URL``,
    ``FAL_WEBHOOK_MAX_SKEW``), sharing the process's key cache."""
    url = jwks_url(getattr(settings, "FAL_JWKS_URL", None), settings.FAL_REST_URL)
    return WebhookVerifier(shared_cache(url),
                           max_skew=getattr(settings, "FAL_WEBHOOK_MAX_SKEW", DEFAULT_MAX_SKEW_S))
