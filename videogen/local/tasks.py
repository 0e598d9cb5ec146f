"""The GPU worker's realtime task (queue ``gpu``), and the sweep of realtime sessions (beat,
queue ``default``); offline jobs run through the generic ``videogen.gpu.run_job``
(videogen.jobs.tasks) on the local backend."""

from __future__ import annotations

import logging

from runtime.celery import app
from videogen.local import gpu_worker  # noqa: F401 - the GPU worker's start-up signals
from videogen.local.producer import run_session
from videogen.realtime import sessions

logger = logging.getLogger(__name__)


@app.task(name="videogen.gpu.run_realtime_session")
def run_realtime_session(session_id: str) -> None:
    """Stream one realtime session on this process's warm pipeline (queue ``gpu``).

    Acknowledged at the end like every task (so a busy GPU worker reserves no second
    session that another GPU could take); a delivery after a worker died finds the session
    no longer ``queued`` and does nothing: a live session is over, not started again."""
    run_session(session_id)


@app.task(name="videogen.sweep_realtime_sessions")
def sweep_realtime_sessions() -> None:
    """Close realtime sessions nobody answers for, and save the recordings their dead producers
    left in parts (beat, every ``STUDIO_REALTIME_SWEEP_S``; queue ``default``)."""
    counts = sessions.sweep()
    if any(counts.values()):
        logger.info("realtime sweep: %s", counts)
