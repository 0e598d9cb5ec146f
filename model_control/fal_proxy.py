"""What ``/api/fal/proxy`` may forward, decided before a single byte leaves the studio.

The proxy adds ``Authorization: Key <FAL_KEY>`` to what it forwards, so the target URL is
checked with the parser the HTTP client itself uses (urllib3's ``parse_url``, which is what
``requests`` connects by), cross-checked with the standard library's, and then *rebuilt*
from the configured queue URL plus a path that matched one of a few shapes. Nothing a
caller wrote in the scheme, host, port or user-info part ever reaches the wire.

Allowed, and only on fal's queue host (``FAL_QUEUE_URL``):

* ``POST /{app_id}``: a submit to a queue model of this studio's catalog;
* ``GET /{owner}/{alias}/requests/{id}/status`` and ``GET /{owner}/{alias}/requests/{id}``,
  ``PUT /{owner}/{alias}/requests/{id}/cancel``: for request ids the same user submitted.

Token minting, other apps, other hosts and other users' requests are refused. A submit's body
is held to the rule of every other door for images (``check_image_urls``): an image URL must
point at a public server (``images.check_public_url``) or be an image ``data:`` URL.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

from urllib3.exceptions import LocationParseError
from urllib3.util import parse_url

from model_control import backends, images
from model_control.backends import fal_queue

TARGET_HEADER = "x-fal-target-url"
MAX_TARGET_LENGTH = 2048

SUBMIT, STATUS, RESULT, CANCEL = "submit", "status", "result", "cancel"
_SEGMENT = r"[A-Za-z0-9][A-Za-z0-9._-]*"
_REQUEST_ID = r"[A-Za-z0-9][A-Za-z0-9-]{0,127}"
_REQUEST_PATH = re.compile(rf"^/(?P<alias>{_SEGMENT}/{_SEGMENT})/requests/(?P<id>{_REQUEST_ID})"
                           r"(?P<action>/status|/cancel)?$")
_ACTIONS = {("GET", "/status"): STATUS, ("GET", ""): RESULT, ("PUT", "/cancel"): CANCEL}
# Characters no legitimate target holds anywhere: the tricks that make two URL parsers disagree.
_FORBIDDEN = re.compile(r"[\\\s\x00-\x1f\x7f]|%5c|%2e|%2f|%00|%40", re.IGNORECASE)


class TargetRefused(Exception):
    """The target may not be reached through the proxy; ``status`` is the HTTP answer."""

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.message = message
        self.status = status


@dataclass(frozen=True)
class ProxyTarget:
    """A checked target: what it does, and the URL rebuilt from trusted parts."""

    operation: str
    url: str
    app_id: str = ""  # for a submit
    alias: str = ""  # owner/alias, for status/result/cancel
    request_id: str = ""


def _origin(url: str) -> tuple[str, str, int | None, str]:
    parts = parse_url(url)
    return (parts.scheme or "").lower(), (parts.host or "").lower(), parts.port, (parts.path or "").rstrip("/")


def check_target(raw: str | None, method: str, queue_url: str) -> ProxyTarget:
    """The forwardable target for ``method`` + the ``x-fal-target-url`` value, or ``TargetRefused``.

    ``queue_url`` is the configured ``FAL_QUEUE_URL`` (https://queue.fal.run, or a loopback
    fake in tests): the only origin the proxy ever connects to.
    """
    if not raw:
        raise TargetRefused(f"Missing the {TARGET_HEADER} header: the fal URL to forward to.")
    invalid = f"Invalid {TARGET_HEADER}: only fal's queue ({queue_url}) can be reached through this proxy."
    if len(raw) > MAX_TARGET_LENGTH or _FORBIDDEN.search(raw):
        raise TargetRefused(invalid)
    try:
        client_view = parse_url(raw)  # how requests/urllib3 will read it
    except (LocationParseError, ValueError):
        raise TargetRefused(invalid) from None
    stdlib_view = urlsplit(raw)
    try:
        stdlib_port = stdlib_view.port
    except ValueError:
        raise TargetRefused(invalid) from None
    scheme, host, port, base_path = _origin(queue_url)
    if (
        client_view.auth is not None or "@" in (stdlib_view.netloc or "")
        or (client_view.scheme or "").lower() != scheme
        or (client_view.host or "").lower() != host
        or (stdlib_view.hostname or "") != host
        or client_view.port != port or stdlib_port != port
        or raw.lower().split("//", 1)[-1].split("/", 1)[0] != (f"{host}:{port}" if port else host)
    ):
        raise TargetRefused(invalid)
    path = client_view.path or "/"
    if base_path:
        if not path.startswith(base_path + "/"):
            raise TargetRefused(invalid)
        path = path[len(base_path):]
    if ".." in path or "//" in path:
        raise TargetRefused(invalid)
    query = parse_qsl(client_view.query or "", keep_blank_values=True)
    return _route(method.upper(), path, query, queue_url.rstrip("/"))


def _route(method: str, path: str, query: list[tuple[str, str]], base: str) -> ProxyTarget:
    if "/tokens" in path or path.startswith("/storage"):
        raise TargetRefused("fal tokens are not minted through the proxy: the studio's realtime socket takes "
                            "the studio's own tokens, from POST /api/fal or POST /fal/tokens/.", status=403)
    match = _REQUEST_PATH.match(path)
    if match:
        operation = _ACTIONS.get((method, match["action"] or ""))
        if operation is None:
            raise TargetRefused(f"{method} is not allowed on a fal request through this proxy.", status=405)
        kept = [(k, v) for k, v in query if k == "logs" and v in ("0", "1", "true", "false")]
        url = f"{base}/{match['alias']}/requests/{match['id']}{match['action'] or ''}"
        if kept:
            url += "?" + urlencode(kept)
        return ProxyTarget(operation, url, alias=match["alias"], request_id=match["id"])
    app_id = path.strip("/")
    if method == "POST" and app_id in queue_apps():
        if query:
            raise TargetRefused("A submit through the proxy takes no query parameters.")
        return ProxyTarget(SUBMIT, f"{base}/{app_id}", app_id=app_id)
    if method == "POST":
        raise TargetRefused(f"{app_id or 'this path'} is not a queue model of this studio: see "
                            "GET /api/models/ for the ones it offers.", status=403)
    raise TargetRefused("The proxy forwards only submits to this studio's models and the status, result "
                        "and cancel of your own requests.", status=403)


def queue_apps() -> set[str]:
    """fal app ids of the fal queue backend's models."""
    return {m.endpoint for m in backends.backend(fal_queue.NAME).models()}


def image_url_fields(app_id: str) -> set[str]:
    """The endpoint fields of ``app_id``'s image inputs (``image_url``, ``first_frame_url``...)."""
    return {param.target for model in backends.backend(fal_queue.NAME).models() if model.endpoint == app_id
            for param in model.params if param.kind == "image"}


def check_image_urls(app_id: str, body: dict[str, Any]) -> None:
    """Refuse (``CatalogError``, a 400 naming the field) a submit body whose image URL the
    studio's other doors would refuse: the model's image fields and any other ``*_url``
    string (``*_urls`` lists of strings too) must be a public http(s) URL or an image
    ``data:`` URL (fal fetches them for a request made with the studio's key)."""
    fields = image_url_fields(app_id) | {name for name in body if isinstance(name, str) and name.endswith(
        ("_url", "_urls"))}
    for field in sorted(fields):
        value = body.get(field)
        values = value if field.endswith("_urls") and isinstance(value, list) else [value]
        for item in values:
            if isinstance(item, str):
                _check_image_url(item, field)


def _check_image_url(url: str, field: str) -> None:
    if url[:11].lower() == "data:image/":
        images.validate_data_url(url, field)
    else:
        images.check_public_url(url, field)
