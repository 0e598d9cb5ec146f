"""model_control.http.provider_session: the environment read once, with what ``requests``
itself would take from it (proxies, CA bundles)."""

from __future__ import annotations

import pytest

from model_control.http import provider_session

URL = "https://queue.fal.run/fal-ai/x"
_PROXY_VARIABLES = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY", "http_proxy", "https_proxy",
                    "all_proxy", "no_proxy", "NETRC", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE")


@pytest.fixture(autouse=True)
def _bare_environment(monkeypatch):
    for name in _PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)


def merged(session) -> dict:
    return session.merge_environment_settings(URL, {}, None, None, None)


def test_without_proxies_the_ca_bundle_is_read_once_as_requests_would():
    assert merged(provider_session())["verify"] is True


@pytest.mark.parametrize("variable", ["REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"])
def test_a_ca_bundle_variable_is_the_sessions_verify(monkeypatch, variable, tmp_path):
    bundle = tmp_path / "ca.pem"
    monkeypatch.setenv(variable, str(bundle))
    session = provider_session()
    assert session.trust_env is False and merged(session)["verify"] == str(bundle)
    monkeypatch.delenv(variable)  # read once: the session keeps it
    assert merged(session)["verify"] == str(bundle)


def test_a_proxy_keeps_the_environment_read_per_request_so_no_proxy_still_applies(monkeypatch):
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.internal:3128")
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    session = provider_session()
    assert session.trust_env is True
    assert merged(session)["proxies"]["https"] == "http://proxy.internal:3128"
    loopback = session.merge_environment_settings("https://127.0.0.1:8443/x", {}, None, None, None)
    assert "https" not in loopback["proxies"]
