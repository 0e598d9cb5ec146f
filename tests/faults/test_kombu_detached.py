"""kombu's crash on a detached Redis transport, which runtime/celery.py works around: after a
broker outage Celery collects the connection (the transport forgets its client, the channel
its pool), and a task finishing afterwards acknowledges through that channel. Real kombu,
real Redis: the ack is logged and skipped, the message stays unacknowledged in Redis, so it
is delivered again after the visibility timeout (the job tasks are idempotent)."""

from __future__ import annotations

import logging
import uuid

import kombu
import pytest
import redis
from django.conf import settings

import runtime.celery  # noqa: F401 - installs the workaround

pytestmark = pytest.mark.services


@pytest.mark.parametrize("settle", ["ack", "reject"])
def test_settling_a_message_on_a_detached_channel_leaves_it_for_redelivery(settle, caplog):
    name = f"test-detached-{uuid.uuid4().hex}"
    queue = kombu.Queue(name, exchange=kombu.Exchange(name), routing_key=name)
    with kombu.Connection(settings.REDIS_URL) as connection:
        with connection.Producer() as producer:
            producer.publish({"job": 1}, exchange=queue.exchange, routing_key=name, declare=[queue])
        message = connection.SimpleQueue(queue).get(timeout=5)
        unacked = redis.Redis.from_url(settings.REDIS_URL)
        assert unacked.hexists("unacked", message.delivery_tag)
        # What Celery's on_connection_error_after_connected leaves: a channel without its
        # pool, on a transport without its client.
        message.channel._disconnect_pools()
        transport_client, message.channel.connection.client = message.channel.connection.client, None
        try:
            with caplog.at_level(logging.WARNING, logger="runtime.celery"):
                getattr(message, settle)()
            assert "its broker connection was lost" in caplog.text
            assert unacked.hexists("unacked", message.delivery_tag)  # delivered again later
        finally:
            message.channel.connection.client = transport_client
            unacked.hdel("unacked", message.delivery_tag)
            unacked.zrem("unacked_index", message.delivery_tag)
            unacked.close()
