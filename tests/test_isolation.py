"""Two test runs (or a test run and a studio) can share one Redis and one PostgreSQL: every
Redis key lives under REDIS_KEY_PREFIX, scripts/test gives each run its own prefix and test
database and removes both when the run ends, however it ends."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import uuid
from urllib.parse import unquote, urlsplit

import pytest
from django.conf import settings

from tests.support.processes import ROOT, celery_worker, control_app, worker_env

pytestmark = [pytest.mark.services]

# Set by test_scripts_test_... for the scripts/test run it starts: the path where the inner
# test writes what it saw; CRASH makes the inner pytest die without any teardown.
INNER = "STUDIO_ISOLATION_INNER"
CRASH = "STUDIO_ISOLATION_CRASH"


def _receive_event(layer_prefix: str, user_id: int, send, timeout: float):
    """Listen to ``user_id``'s event group on a channel layer under ``layer_prefix``, call
    ``send()``, return the events that arrive within ``timeout`` s of the first (or none)."""
    from channels_redis.core import RedisChannelLayer

    from runtime.events import user_group

    async def main():
        layer = RedisChannelLayer(hosts=[settings.REDIS_URL], prefix=layer_prefix)
        channel = await layer.new_channel()
        await layer.group_add(user_group(user_id), channel)
        events = []
        try:
            send()
            deadline = timeout
            while True:
                try:
                    message = await asyncio.wait_for(layer.receive(channel), deadline)
                except TimeoutError:
                    return events
                events.append(message["event"]["marker"])
                deadline = 1.0  # anything else that comes shortly after the first
        finally:
            await layer.flush()
            await layer.close_pools()

    return asyncio.run(main())


@pytest.mark.django_db(transaction=True)
def test_a_worker_under_one_key_prefix_neither_answers_nor_consumes_for_another():
    # Both prefixes lie under this run's own, so the session's cleanup removes their keys too.
    mine, theirs = f"{settings.REDIS_KEY_PREFIX}:iso-a", f"{settings.REDIS_KEY_PREFIX}:iso-b"
    import redis

    client = redis.Redis.from_url(settings.REDIS_URL)
    with (
        control_app(settings.REDIS_URL, mine) as app_a,
        control_app(settings.REDIS_URL, theirs) as app_b,
        celery_worker({**worker_env(), "REDIS_KEY_PREFIX": mine}, queues="default", name="iso"),
    ):
        # Remote control (what /health uses): only an app under the worker's prefix sees it.
        assert app_a.control.ping(timeout=1), "the worker answers under its own prefix"
        assert app_b.control.ping(timeout=1) == [], "a worker under another prefix must not answer"
        assert not app_b.control.inspect(timeout=1).active_queues()

        def send_both():
            app_b.send_task("tests.announce", args=[0, "theirs"], queue="default")
            app_a.send_task("tests.announce", args=[0, "mine"], queue="default")

        # The worker's events go through its channel layer, under "<its prefix>:channels".
        events = _receive_event(f"{mine}:channels", 0, send_both, timeout=20)
        assert events == ["mine"], "the worker runs its own prefix's task and only that one"
        assert client.llen(f"{theirs}:celery:default") == 1, "the other prefix's task is still queued"
        assert client.llen(f"{mine}:celery:default") == 0
    client.close()


# --- scripts/test: per-run names, nothing left behind ------------------------------------------


@pytest.mark.django_db
def test_inner_run_of_scripts_test_writes_a_row_and_a_redis_key():
    """Runs only inside the scripts/test run that the next test starts."""
    record = os.environ.get(INNER)
    if not record:
        pytest.skip("runs only inside the scripts/test run started by test_scripts_test_leaves_...")
    from django.contrib.auth.models import User
    from django.core.cache import cache
    from django.db import connection

    User.objects.create_user("isolation")
    cache.set("isolation-marker", "left behind?", None)
    with open(record, "w") as out:
        json.dump({"database": connection.settings_dict["NAME"], "prefix": settings.REDIS_KEY_PREFIX,
                   "cache_key": cache.make_key("isolation-marker")}, out)
    if os.environ.get(CRASH):
        os.kill(os.getpid(), signal.SIGKILL)  # no teardown: the test database and the key stay


def _databases(names: list[str]) -> list[str]:
    import psycopg

    parts = urlsplit(os.environ["DATABASE_URL"])
    with psycopg.connect(host=parts.hostname, port=parts.port or 5432, user=unquote(parts.username or "postgres"),
                         password=unquote(parts.password or "") or None, dbname="postgres",
                         connect_timeout=5) as conn:
        rows = conn.execute("SELECT datname FROM pg_database WHERE datname = ANY(%s)", [names]).fetchall()
    return [row[0] for row in rows]


@pytest.mark.timeout(420)
@pytest.mark.parametrize("crash", [False, True], ids=["passing", "killed"])
def test_scripts_test_leaves_no_database_and_no_redis_key_behind(tmp_path, crash):
    if os.environ.get(INNER):
        pytest.skip("already inside a scripts/test run started by this test")
    import redis

    run = f"iso_{uuid.uuid4().hex[:12]}"
    record = tmp_path / "inner.json"
    env = {name: value for name, value in os.environ.items() if not name.startswith("PYTEST_")}
    env.update({"TEST_REDIS_URL": settings.REDIS_URL, "TEST_DATABASE_URL": os.environ["DATABASE_URL"],
                "STUDIO_TEST_RUN_ID": run, INNER: str(record), CRASH: "1" if crash else ""})
    # Keys of others sharing the Redis: this (outer) run's, and a run whose prefix starts with
    # the inner run's. Neither the inner run's pytest nor its scripts/test may touch them.
    client = redis.Redis.from_url(settings.REDIS_URL)
    bystanders = [f"{settings.REDIS_KEY_PREFIX}:bystander-{run}", f"studio-test-{run}0:bystander"]
    try:
        for key in bystanders:
            client.set(key, "mine", ex=600)
        result = subprocess.run(
            ["bash", "scripts/test", "tests/test_isolation.py::test_inner_run_of_scripts_test_writes_a_row_and_a_redis_key",
             "-q", "-p", "no:cacheprovider"],
            cwd=ROOT, env=env, capture_output=True, text=True, timeout=360,
        )
        survivors = [key for key in bystanders if client.exists(key)]
        leftovers = [key for key in client.scan_iter(match=f"studio-test-{run}*", count=1000)
                     if key.decode() not in bystanders]
    finally:
        client.delete(*bystanders)
        client.close()
    output = result.stdout + result.stderr
    assert (result.returncode != 0) if crash else (result.returncode == 0), output
    assert f"== run {run}: REDIS_KEY_PREFIX=studio-test-{run}" in output

    # The inner run used the run's own names...
    seen = json.loads(record.read_text())
    assert seen["database"] == f"test_studio_{run}", seen
    assert seen["prefix"] == f"studio-test-{run}", seen
    assert seen["cache_key"].startswith(f"studio-test-{run}:cache:"), seen
    if crash:  # ...and when pytest died, scripts/test's own cleanup removed them
        assert f"dropped the leftover database test_studio_{run}" in output, output
        assert f"Redis keys under studio-test-{run}:" in output, output

    # Nothing of the run is left: no database, no key with its prefix; other keys are intact.
    assert _databases([f"test_studio_{run}", f"studio_{run}"]) == []
    assert leftovers == []
    assert survivors == bystanders, "a run deletes only its own keys"
