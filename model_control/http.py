"""The HTTP session provider clients use: kept per client, so connections are reused.

``requests`` reads the environment (proxies, ``NO_PROXY``, CA bundles, ``~/.netrc``) again on
every request, a cost on every call to a provider. When none of those variables is set there
is nothing to read, so the session skips it; when one is, the session honours them as usual.
"""

from __future__ import annotations

import os
import urllib.request

import requests

_ENVIRONMENT = ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "SSL_CERT_FILE", "NETRC")


def provider_session() -> requests.Session:
    session = requests.Session()
    session.trust_env = bool(urllib.request.getproxies()) or any(os.environ.get(name) for name in _ENVIRONMENT)
    return session
