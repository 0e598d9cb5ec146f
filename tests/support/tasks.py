"""Tasks on the studio's own Celery app, for tests of the two run modes.

A worker started with ``celery -A tests.support.tasks worker`` knows them; in the embedded
mode they run on the web process's background threads like any studio task.
"""

from __future__ import annotations

import time

from runtime.celery import app
from runtime.events import notify_user


@app.task(name="tests.announce")
def announce(user_id: int, marker: str, delay_s: float = 0.0) -> str:
    """Wait ``delay_s``, then tell the user's sockets ``marker`` (from wherever this ran)."""
    time.sleep(delay_s)
    import os
    import threading

    notify_user(user_id, "test.announce", {"marker": marker, "pid": os.getpid(),
                                            "thread": threading.current_thread().name})
    return marker


@app.task(name="tests.gpu.announce")
def announce_gpu(user_id: int, marker: str) -> str:
    return announce(user_id, marker)
