"""The HTTP session provider clients use: kept per client, so connections are reused.

``requests`` reads the environment (proxies, ``NO_PROXY``, CA bundles, ``~/.netrc``) again on
every request, a cost on every call to a provider. A process's environment does not change
while it runs, so the session reads it once, here: the CA bundle ``requests`` would pick
(``REQUESTS_CA_BUNDLE``, else ``CURL_CA_BUNDLE``) becomes the session's ``verify``, and only
when a proxy or ``NETRC`` is configured (``NO_PROXY`` is decided per URL) does the session
keep reading the environment on each request, honouring them as usual.
"""

from __future__ import annotations

import os
import urllib.request

import requests


def provider_session() -> requests.Session:
    session = requests.Session()
    session.trust_env = bool(urllib.request.getproxies()) or bool(os.environ.get("NETRC"))
    if not session.trust_env:
        session.verify = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE") or True
    return session
