"""Behind a reverse proxy: the client's address and scheme come from the proxy's headers only
when the peer is one of ``STUDIO_TRUSTED_PROXIES`` (studio.middleware.TrustedProxyMiddleware),
and the login lockout is per real address, so nobody behind a shared proxy locks anyone out.

Lockouts count in the database (embedded) or Redis (services): these run in both modes.
"""

from __future__ import annotations

import ipaddress

import pytest

from studio.middleware import client_address
from tests.test_settings import start_django

PROXY = "10.0.0.2"
TRUSTED = (ipaddress.ip_network("10.0.0.0/8"), ipaddress.ip_network("fd00::/8"))


@pytest.mark.parametrize(("peer", "forwarded_for", "client"), [
    ("203.0.113.9", "198.51.100.7", "203.0.113.9"),  # an untrusted peer's header is ignored
    (PROXY, "198.51.100.7", "198.51.100.7"),
    (PROXY, "", PROXY),
    (PROXY, "6.6.6.6, 198.51.100.7", "198.51.100.7"),  # the client wrote 6.6.6.6 itself
    (PROXY, "6.6.6.6, 198.51.100.7, 10.1.1.1", "198.51.100.7"),  # two trusted proxies
    (PROXY, "10.9.9.9, 10.1.1.1", "10.9.9.9"),  # every hop trusted: the leftmost
    (PROXY, "garbage, 10.1.1.1", "10.1.1.1"),  # a malformed hop ends the walk
    (PROXY, "198.51.100.7:4431", "198.51.100.7"),
    (PROXY, "[2001:db8::5]:4431", "2001:db8::5"),
    ("::ffff:10.0.0.2", "198.51.100.7", "198.51.100.7"),  # a dual-stack socket's IPv4 peer
    ("fd00::1", "2001:db8::5", "2001:db8::5"),
])
def test_the_client_is_the_rightmost_hop_that_is_not_a_trusted_proxy(peer, forwarded_for, client):
    assert client_address(peer, forwarded_for, TRUSTED) == client


def test_with_no_trusted_proxy_the_header_is_never_used():
    assert client_address(PROXY, "198.51.100.7", ()) == PROXY


def login(client, password: str, peer: str, forwarded_for: str | None = None):
    extra = {"REMOTE_ADDR": peer}
    if forwarded_for is not None:
        extra["HTTP_X_FORWARDED_FOR"] = forwarded_for
    return client.post("/accounts/login/", {"username": "alice", "password": password}, **extra)


@pytest.fixture
def behind_proxy(settings):
    settings.STUDIO_TRUSTED_PROXIES = TRUSTED
    return settings


pytestmark = pytest.mark.modes


@pytest.mark.django_db
def test_a_lockout_from_one_address_does_not_lock_the_user_out_from_another(client, user, settings):
    for _ in range(settings.AXES_FAILURE_LIMIT):
        login(client, "guess", "203.0.113.9")
    assert login(client, "wonderland-42", "203.0.113.9").status_code == 429
    assert login(client, "wonderland-42", "198.51.100.7").status_code == 302


@pytest.mark.django_db
def test_clients_of_one_trusted_proxy_do_not_share_a_lockout(client, user, behind_proxy):
    for _ in range(behind_proxy.AXES_FAILURE_LIMIT):
        login(client, "guess", PROXY, "203.0.113.9")
    assert login(client, "wonderland-42", PROXY, "203.0.113.9").status_code == 429
    # Alice, behind the same proxy at her own address, logs in.
    assert login(client, "wonderland-42", PROXY, "198.51.100.7").status_code == 302


@pytest.mark.django_db
def test_a_spoofed_header_from_an_untrusted_peer_neither_dodges_nor_aims_a_lockout(client, user, behind_proxy):
    # A new made-up address on every try: still counted against the attacker's own address ...
    for n in range(behind_proxy.AXES_FAILURE_LIMIT):
        login(client, "guess", "203.0.113.9", f"192.0.2.{n}")
    assert login(client, "wonderland-42", "203.0.113.9", "192.0.2.200").status_code == 429
    # ... and the address it named (Alice's, behind the proxy) is not locked out.
    assert login(client, "wonderland-42", PROXY, "192.0.2.0").status_code == 302


@pytest.mark.django_db
def test_the_scheme_comes_from_a_trusted_proxy_only(client, behind_proxy):
    behind_proxy.SECURE_HSTS_SECONDS = 3600  # sent only on requests Django sees as https
    trusted = client.get("/accounts/login/", REMOTE_ADDR=PROXY, HTTP_X_FORWARDED_PROTO="https")
    assert trusted["Strict-Transport-Security"].startswith("max-age=3600")
    spoofed = client.get("/accounts/login/", REMOTE_ADDR="203.0.113.9", HTTP_X_FORWARDED_PROTO="https")
    assert "Strict-Transport-Security" not in spoofed


def test_a_bad_trusted_proxy_list_stops_start_up_naming_the_variable(tmp_path):
    result = start_django({"STUDIO_TRUSTED_PROXIES": "10.0.0.0/8,the-proxy"}, tmp_path)
    assert result.returncode != 0
    assert "STUDIO_TRUSTED_PROXIES" in result.stderr.strip().splitlines()[-1]
    assert start_django({"STUDIO_TRUSTED_PROXIES": "10.0.0.0/8, ::1,192.168.1.7"}, tmp_path).returncode == 0
