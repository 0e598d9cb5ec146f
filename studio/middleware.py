"""Studio's own middleware: login for pages (the API answers for itself), no secrets in errors,
client addresses behind a trusted proxy, text no database keeps, JSON errors under the API,
and generations counted only when accepted."""

from __future__ import annotations

import ipaddress
import logging
import sys
from collections.abc import Iterable
from http import HTTPStatus

from django.conf import settings
from django.contrib.auth.middleware import LoginRequiredMiddleware
from django.core.exceptions import BadRequest
from django.core.signals import got_request_exception
from django.http import HttpRequest, JsonResponse
from rest_framework.response import Response
from rest_framework.views import APIView

from model_control import limits
from model_control.redaction import redact
from runtime.parsers import printable_name, unstorable
from studio.api import OUTAGE_RETRY_AFTER_S, outage, outage_body

logger = logging.getLogger(__name__)

# Paths answered by the API: its errors are JSON (TT Studio's doors are /models/ and
# /models-api/; fal's token endpoint is /fal/tokens/).
API_PREFIXES = ("/api/", "/fal/", "/models/", "/models-api/")


class PagesRequireLoginMiddleware(LoginRequiredMiddleware):
    """Django's login-required-by-default, minus DRF views.

    An anonymous API call must get a 401/403 JSON answer from DRF's own authentication,
    never a redirect to the login page.
    """

    def process_view(self, request, view_func, view_args, view_kwargs):
        view_class = getattr(view_func, "cls", None)
        if isinstance(view_class, type) and issubclass(view_class, APIView):
            return None
        return super().process_view(request, view_func, view_args, view_kwargs)


class RedactErrorRepliesMiddleware:
    """The last net: no error reply (4xx/5xx) leaves with a configured secret in it.

    Provider errors are redacted where they are made; this catches any text that slipped
    past (an upstream body copied into a reply by a view written later).
    """

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        response = self.get_response(request)
        if response.status_code < 400 or getattr(response, "streaming", False):
            return response
        content_type = response.get("Content-Type", "")
        if not content_type.startswith(("application/json", "text/")):
            return response
        try:
            text = response.content.decode(response.charset or "utf-8")
        except UnicodeDecodeError:
            return response
        cleaned = redact(text)
        if cleaned != text:
            response.content = cleaned.encode(response.charset or "utf-8")
        return response


# --- client addresses behind a reverse proxy ---------------------------------------------------

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def _address(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """The address in one ``X-Forwarded-For`` hop or a peer (``[::1]:80`` and ``1.2.3.4:80`` too)."""
    text = text.strip()
    if text.startswith("[") and "]" in text:
        text = text[1:text.index("]")]
    elif text.count(":") == 1:  # IPv4 with a port; a bare IPv6 address has several colons
        text = text.split(":", 1)[0]
    try:
        address = ipaddress.ip_address(text.split("%", 1)[0])
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        return address.ipv4_mapped  # a dual-stack socket's view of an IPv4 peer
    return address


def _trusted(address: ipaddress.IPv4Address | ipaddress.IPv6Address, networks: Iterable[Network]) -> bool:
    return any(address.version == network.version and address in network for network in networks)


def client_address(peer: str, forwarded_for: str, networks: Iterable[Network]) -> str:
    """The client's address: ``peer`` unless it is a trusted proxy, else the rightmost hop of
    ``forwarded_for`` that is not a trusted proxy (each proxy appends the address it was
    reached from, so hops left of the first untrusted one were written by the client).

    When every hop is trusted, the leftmost; a malformed hop ends the walk at the hop to its
    right (a trusted proxy never writes one).
    """
    networks = tuple(networks)
    address = _address(peer)
    if address is None or not _trusted(address, networks):
        return str(address) if address else peer
    for hop in reversed(forwarded_for.split(",")):
        hop_address = _address(hop)
        if hop_address is None:
            break
        address = hop_address
        if not _trusted(address, networks):
            break
    return str(address)


def request_client_address(request: HttpRequest) -> str | None:
    """The client's address of a request that went through :class:`TrustedProxyMiddleware`;
    django-axes reads it (``AXES_CLIENT_IP_CALLABLE``), so a lockout is per real address."""
    return request.META.get("REMOTE_ADDR")


class TrustedProxyMiddleware:
    """``REMOTE_ADDR`` and the scheme from the proxy's headers, only when the peer is one of
    ``STUDIO_TRUSTED_PROXIES``.

    From a trusted peer: ``REMOTE_ADDR`` becomes the client's address (:func:`client_address`),
    ``X-Forwarded-Proto`` (its last value: what our proxy saw) sets the scheme. From any
    other peer the headers are dropped, so nothing later (DRF's throttles read
    ``X-Forwarded-For``; ``SECURE_PROXY_SSL_HEADER``) can be told a made-up address or scheme.
    With no trusted proxy configured, ``X-Forwarded-For`` is dropped and ``X-Forwarded-Proto``
    is left to ``SECURE_PROXY_SSL_HEADER`` (set when ``STUDIO_PUBLIC_URL`` is https).
    Done here, not with daphne's ``--proxy-headers`` (which believes any peer), so it holds
    for any server the studio runs on. The peer's own address stays in ``STUDIO_PEER_ADDR``.
    """

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request: HttpRequest):
        meta = request.META
        networks = settings.STUDIO_TRUSTED_PROXIES
        peer = meta.get("REMOTE_ADDR", "")
        meta["STUDIO_PEER_ADDR"] = peer
        forwarded_for = meta.pop("HTTP_X_FORWARDED_FOR", "")
        if networks:
            proto = meta.pop("HTTP_X_FORWARDED_PROTO", "")
            address = _address(peer)
            if address is not None and _trusted(address, networks):
                meta["REMOTE_ADDR"] = client_address(peer, forwarded_for, networks)
                scheme = proto.rsplit(",", 1)[-1].strip().lower()
                if scheme in ("http", "https"):
                    meta["wsgi.url_scheme"] = scheme
                    meta["HTTP_X_FORWARDED_PROTO"] = scheme
        return self.get_response(request)


# --- text no database keeps ---------------------------------------------------------------------

def is_api_path(path: str) -> bool:
    """Whether ``path`` is answered by the API (JSON errors) rather than pages (HTML errors)."""
    return path.startswith(API_PREFIXES)


class UnstorableTextMiddleware:
    """A 400 naming the part of the request (path, query parameter, header) that holds a
    character no database keeps: NUL (PostgreSQL refuses it; SQLite keeps it, so only one mode
    would fail) or a lone surrogate (``runtime.parsers.unstorable``).

    Query parameters and headers reach database lookups in many views (``?model=``, the API
    token, the session cookie); checking them once here covers views written later too.
    Bodies are checked where they are parsed (``runtime.parsers``, ``model_control.parsing``).
    """

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request: HttpRequest):
        problem = self._problem(request)
        if problem is None:
            return self.get_response(request)
        where, name, reason = problem
        message = f"The {where} {name} {reason}."
        if not is_api_path(request.path_info):
            raise BadRequest(message)
        body: dict = {"error": message, "error_type": "bad_request"}
        if where == "query parameter":
            body["fields"] = {name: reason}
        return JsonResponse(body, status=400)

    @staticmethod
    def _problem(request: HttpRequest) -> tuple[str, str, str] | None:
        reason = unstorable(request.path_info)
        if reason:
            return "path", printable_name(request.path_info), reason
        for key, values in request.GET.lists():
            for text in (key, *values):
                reason = unstorable(text)
                if reason:
                    return "query parameter", printable_name(key), reason
        for key, value in request.META.items():
            if key.startswith("HTTP_") and isinstance(value, str):
                reason = unstorable(value)
                if reason:
                    return "header", key[5:].replace("_", "-").title(), reason
        return None


# --- every API error is JSON ----------------------------------------------------------------------

def _remember_failure(sender, request: HttpRequest | None = None, **kwargs) -> None:
    """Keep the exception Django is about to answer with its 500 page, for the JSON answer."""
    if request is not None:
        request.studio_failure = sys.exc_info()[1]


got_request_exception.connect(_remember_failure, dispatch_uid="studio.middleware.remember_failure")


_MESSAGES = {
    400: "Bad request: the studio could not read it.",
    404: "Not found.",
    500: "The studio failed to answer this request; the error is in its log.",
}
_KINDS = {400: "bad_request", 401: "unauthorized", 403: "forbidden", 404: "not_found", 405: "method_not_allowed",
          413: "too_large", 500: "server_error", 503: "unavailable"}


def error_message(status: int) -> str:
    """A short message for an error ``status`` whose page said nothing more useful."""
    if status in _MESSAGES:
        return _MESSAGES[status]
    try:
        return f"{HTTPStatus(status).phrase}."
    except ValueError:
        return f"Error {status}."


class JsonApiErrorsMiddleware:
    """Under the API's paths, Django's own error pages become JSON: ``{"error", "error_type"}``.

    DRF answers what reaches its views (``studio.api.exception_handler``); this answers the
    rest in the same shape: errors raised in middleware (a session saved while the database
    is down), outside DRF, or by Django before a view runs. A 500 caused by an outage is a
    503 naming what is down (``studio.api.outage``). Pages keep their HTML error pages, and
    replies DRF rendered (JSON, or the browsable API's HTML) are left alone.
    """

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request: HttpRequest):
        response = self.get_response(request)
        if (response.status_code < 400 or not is_api_path(request.path_info) or isinstance(response, Response)
                or getattr(response, "streaming", False) or "json" in response.get("Content-Type", "")):
            return response
        failure = getattr(request, "studio_failure", None)
        down = outage(failure) if response.status_code >= 500 and failure is not None else None
        if down:
            answer = JsonResponse(outage_body(down), status=503)
            answer["Retry-After"] = str(OUTAGE_RETRY_AFTER_S)
            return answer
        status = response.status_code
        answer = JsonResponse({"error": error_message(status), "error_type": _KINDS.get(status, "error")},
                              status=status)
        for header in ("Allow", "Retry-After", "WWW-Authenticate"):
            if header in response:
                answer[header] = response[header]
        return answer


# --- generations count when accepted ----------------------------------------------------------

class GenerationCountMiddleware:
    """Takes back the hourly generation count of a request that was not accepted (any answer
    but a 2xx: a 400 for bad input, a 404, a 429 at the unfinished cap, a provider's refusal).

    DRF's throttles count before the view runs; ``limits.GenerationRateThrottle`` notes what
    it counted on the request and ``limits.uncount_unless_accepted`` takes it back here.
    """

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request: HttpRequest):
        response = self.get_response(request)
        try:
            limits.uncount_unless_accepted(request, response.status_code)
        except Exception as exc:
            if not outage(exc):
                raise
            # Redis went down during the request: the count stays (the rate errs on the safe
            # side) and the answer the user was given stands.
            logger.warning("could not take back a generation count: %s is down", outage(exc))
        return response
