"""Which WebSocket handshakes may reach the consumers, by their ``Origin``.

Cross-site WebSocket hijacking needs the victim's cookie: a browser sends the studio's
session cookie with a handshake from any site, and reports that site as ``Origin``. So:

- **Same origin** (scheme, host and port of the handshake itself, or a trusted origin):
  passes with its cookie; the studio's own pages open their sockets this way.
- **No ``Origin``**: not a browser (a Python client); passes. It holds its own credentials.
- **Another origin with a token in the query** (``?token=``, ``?fal_jwt_token=``): passes,
  *without its cookie*, so the token is the only thing that can authenticate it. The seed
  Krea app and fal's clients, served from their own origins, connect this way.
- **Another origin without a token**: refused at the handshake (daphne answers 403).

"Own origin" is what Django's CSRF check calls it: the scheme the handshake arrived with
(``wss`` is ``https``; behind a TLS proxy, ``SECURE_PROXY_SSL_HEADER`` says so), and the
``Host`` header, which must be one of ``ALLOWED_HOSTS``; plus ``CSRF_TRUSTED_ORIGINS``
(``STUDIO_PUBLIC_URL`` is one). Default ports are filled in before comparing.
"""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import urlsplit

from channels.security.websocket import WebsocketDenier
from django.conf import settings
from django.http.request import split_domain_port, validate_host

from videogen.realtime.auth import query_token

logger = logging.getLogger(__name__)

DEFAULT_PORTS = {"http": 80, "https": 443}
DEBUG_HOSTS = [".localhost", "127.0.0.1", "[::1]"]  # Django's own fallback with DEBUG and no ALLOWED_HOSTS

Origin = tuple[str, str, int]


def parse_origin(value: str) -> Origin | None:
    """``(scheme, host, port)`` of an origin or URL, lower-cased with its default port; None
    for anything else (``null``, another scheme, a malformed port)."""
    try:
        parts = urlsplit(value.strip())
        port = parts.port
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    if scheme not in DEFAULT_PORTS or not parts.hostname:
        return None
    return scheme, parts.hostname.lower(), port or DEFAULT_PORTS[scheme]


def _header(scope: dict[str, Any], name: bytes) -> str | None:
    for key, value in scope.get("headers", []):
        if key == name:
            return value.decode("latin-1")
    return None


def _scheme(scope: dict[str, Any]) -> str:
    secure = scope.get("scheme") in ("wss", "https")
    proxy = getattr(settings, "SECURE_PROXY_SSL_HEADER", None)
    if proxy:  # ("HTTP_X_FORWARDED_PROTO", "https"): trusted as Django's HTTP side trusts it
        header = proxy[0].removeprefix("HTTP_").replace("_", "-").lower().encode("latin-1")
        forwarded = _header(scope, header)
        if forwarded is not None:
            secure = forwarded.split(",")[0].strip() == proxy[1]
    return "https" if secure else "http"


def own_origins(scope: dict[str, Any]) -> set[Origin]:
    """The origins a handshake counts as the studio's own (see the module docstring)."""
    trusted = {parse_origin(origin) for origin in settings.CSRF_TRUSTED_ORIGINS if "*" not in origin}
    host = _header(scope, b"host")
    allowed = settings.ALLOWED_HOSTS or (DEBUG_HOSTS if settings.DEBUG else [])
    if host:
        domain, _ = split_domain_port(host)
        if domain and validate_host(domain, allowed):
            trusted.add(parse_origin(f"{_scheme(scope)}://{host}"))
    return {origin for origin in trusted if origin is not None}


def _trusted_by_wildcard(origin: Origin) -> bool:
    """``CSRF_TRUSTED_ORIGINS`` entries like ``https://*.example.com`` (Django allows them)."""
    for entry in settings.CSRF_TRUSTED_ORIGINS:
        if "*." not in entry:
            continue
        wanted = parse_origin(entry.replace("*.", "", 1))
        if wanted and origin[0] == wanted[0] and origin[2] == wanted[2] and origin[1].endswith("." + wanted[1]):
            return True
    return False


def is_own_origin(value: str, scope: dict[str, Any]) -> bool:
    """Whether the ``Origin`` header ``value`` is the studio's own for this handshake."""
    origin = parse_origin(value)
    return origin is not None and (origin in own_origins(scope) or _trusted_by_wildcard(origin))


class SocketOriginPolicy:
    """ASGI middleware in front of every WebSocket route (studio/asgi.py); see the module docstring."""

    def __init__(self, application) -> None:
        self.application = application

    async def __call__(self, scope, receive, send):
        if scope["type"] != "websocket":
            return await self.application(scope, receive, send)
        origin = _header(scope, b"origin")
        if origin is None or is_own_origin(origin, scope):
            return await self.application(scope, receive, send)
        if query_token(scope) is not None:
            # From another site only a token may authenticate: the cookie stays behind.
            headers = [(key, value) for key, value in scope.get("headers", []) if key != b"cookie"]
            return await self.application({**scope, "headers": headers}, receive, send)
        logger.info("websocket %s from %s refused: another origin, and no token", scope.get("path"), origin[:200])
        return await WebsocketDenier()(scope, receive, send)
