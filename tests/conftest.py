"""Shared fixtures. The suite runs twice (see scripts/test): in the embedded default and,
for tests marked ``modes`` or ``services``, against PostgreSQL + Redis."""

from __future__ import annotations

import pytest
from django.conf import settings
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

EMBEDDED = settings.STUDIO_EMBEDDED


def pytest_collection_modifyitems(config, items):
    skip_services = pytest.mark.skip(reason="needs REDIS_URL (runs in the services pass of scripts/test)")
    for item in items:
        if "services" in item.keywords and EMBEDDED:
            item.add_marker(skip_services)


@pytest.fixture(autouse=True)
def _isolated_media(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path / "media"


@pytest.fixture(autouse=True)
def _empty_cache():
    """Each test starts with no throttle counts, login failures, generation slots or poller
    alarms (a test that only records what would be sent leaves an alarm with no message)."""
    from django.core.cache import cache

    from runtime import alarms

    if EMBEDDED:
        cache.clear()
        alarms.reset_local()
    else:  # only this run's keys: the Redis database may hold other runs' keys
        import redis

        client = redis.Redis.from_url(settings.REDIS_URL)
        for pattern in (f"{settings.CACHES['default']['KEY_PREFIX']}:*", f"{settings.REDIS_KEY_PREFIX}:alarm:*"):
            keys = list(client.scan_iter(match=pattern, count=500))
            if keys:
                client.delete(*keys)
        client.close()


@pytest.fixture
def user(django_user_model):
    return django_user_model.objects.create_user("alice", password="wonderland-42")


@pytest.fixture
def other_user(django_user_model):
    return django_user_model.objects.create_user("bob", password="builder-42")


@pytest.fixture
def api(user) -> APIClient:
    """An API client authenticated the way scripts are: ``Authorization: Token <key>``."""
    client = APIClient()
    token, _ = Token.objects.get_or_create(user=user)
    client.credentials(HTTP_AUTHORIZATION=f"Token {token.key}")
    return client


@pytest.fixture
def logged_in(client, user):
    client.force_login(user)
    return client


@pytest.fixture
def ws_headers(client, user):
    """Headers a logged-in browser sends when it opens a WebSocket to the studio."""

    def headers_for(u=user):
        client.force_login(u)
        cookie = f"sessionid={client.cookies['sessionid'].value}".encode()
        return [(b"origin", b"http://127.0.0.1"), (b"host", b"127.0.0.1"), (b"cookie", cookie)]

    return headers_for


@pytest.fixture
def fake_fal(settings):
    """A running fake fal (tests/fakes/fal.py) with the studio's settings pointed at it."""
    from tests.fakes.fal import FakeFal

    with FakeFal() as fake:
        for name, value in fake.settings().items():
            setattr(settings, name, value)
        yield fake


def _fake_tenstorrent(settings, mode: str):
    from tests.fakes.tenstorrent import FakeTenstorrent

    fake = FakeTenstorrent(mode=mode).start()
    for name, value in fake.settings().items():
        setattr(settings, name, value)
    settings.VIDEO_POLL_INTERVAL = 0.05
    return fake


@pytest.fixture
def fake_tt(settings):
    """tt-media-server's job API (202 job -> poll -> download)."""
    fake = _fake_tenstorrent(settings, "media")
    yield fake
    fake.stop()


@pytest.fixture
def fake_tt_legacy(settings):
    """The legacy cloud endpoint (MP4 bytes in the POST's answer)."""
    fake = _fake_tenstorrent(settings, "legacy")
    yield fake
    fake.stop()


@pytest.fixture(scope="session", autouse=True)
def _clean_redis_db():
    """The services pass starts and ends with no key under this run's REDIS_KEY_PREFIX (no
    stale tasks or groups); keys of other runs or studios sharing the Redis are left alone."""
    if EMBEDDED:
        yield
        return
    import re

    import redis

    # Every key the studio makes is "<REDIS_KEY_PREFIX>:..." (Celery, Channels, the cache);
    # the ":" keeps a run's prefix from matching a longer one ("run-1" and "run-12").
    pattern = re.sub(r"([*?\[\]\\])", r"\\\1", settings.REDIS_KEY_PREFIX) + ":*"

    def delete_run_keys():
        client = redis.Redis.from_url(settings.REDIS_URL)
        try:
            keys = list(client.scan_iter(match=pattern, count=1000))
            for start in range(0, len(keys), 500):
                client.delete(*keys[start:start + 500])
        finally:
            client.close()

    delete_run_keys()
    yield
    delete_run_keys()


@pytest.fixture(scope="module")
def browser():
    """Debian's chromium, headless, driven by playwright (for the tests marked ``browser``)."""
    from playwright.sync_api import sync_playwright

    from tests.test_browser import CHROMIUM, CHROMIUM_ARGS, SCREENSHOTS

    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()
