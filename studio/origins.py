"""Which WebSocket handshakes may reach the consumers: browsers from the studio's own hosts,
and programs that send no ``Origin`` at all.

Browsers always send ``Origin`` with a WebSocket handshake, and with it any cookie the
studio set; checking it against ``ALLOWED_HOSTS`` keeps another site from opening a socket
in a logged-in user's name. A program (a Python client with an API token) sends none, and
nothing is gained by refusing it: it holds its own credentials. Channels'
``AllowedHostsOriginValidator`` refuses a missing ``Origin``, which shut those clients out.
"""

from __future__ import annotations

from channels.security.websocket import OriginValidator
from django.conf import settings


class BrowserOriginValidator(OriginValidator):
    def __init__(self, application) -> None:
        allowed = list(settings.ALLOWED_HOSTS)
        if settings.DEBUG and not allowed:
            allowed = ["localhost", "127.0.0.1", "[::1]"]
        super().__init__(application, allowed)

    def valid_origin(self, parsed_origin) -> bool:
        if parsed_origin is None:
            return True  # not a browser
        return super().valid_origin(parsed_origin)
