"""Waiting for a job to finish without polling the database: the synchronous door and
``?wait=`` sleep until the job's own "finished" event (``services.job_group``) wakes them.

The row is read once after joining the group (the job may have finished before) and again
when the event comes; a lost event (a Redis blip) costs at most ``RECHECK_S``, when the row
is read again anyway.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from asgiref.sync import async_to_sync, sync_to_async
from channels.layers import get_channel_layer

from runtime.db import give_back_connection
from videogen.jobs.services import job_group
from videogen.models import FINISHED, Job

RECHECK_S = 5.0


def _load(job_id: Any) -> Job:
    job = Job.objects.select_related("video").get(pk=job_id)
    give_back_connection()  # the wait may be long: nothing is read meanwhile
    return job


def wait_for(job_id: Any, seconds: float) -> Job:
    """The job once it has finished, or as it is after ``seconds``."""

    async def wait() -> Job:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + seconds
        layer = get_channel_layer()
        channel = await layer.new_channel("job-wait.")
        group = job_group(job_id)
        await layer.group_add(group, channel)
        try:
            while True:
                job = await sync_to_async(_load)(job_id)
                remaining = deadline - loop.time()
                if job.status in FINISHED or remaining <= 0:
                    return job
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(layer.receive(channel), timeout=min(remaining, RECHECK_S))
        finally:
            await layer.group_discard(group, channel)

    return async_to_sync(wait)()
