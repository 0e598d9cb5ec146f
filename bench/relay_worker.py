"""The GPU worker of bench/relay.py: a Celery worker whose ``videogen.gpu.run_realtime_session``
publishes a fixed JPEG at a fixed rate through the real ``ProducerLink`` instead of running
the pipeline, so the bench measures the relay (producer -> Redis layer -> consumer -> client)
and nothing else. Each frame carries its send time after the JPEG's end (decoders ignore
bytes after EOI). Started by bench/relay.py; not part of the studio.

    celery -A bench.relay_worker worker -Q gpu --pool threads -c 8
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "studio.settings")

import django  # noqa: E402

django.setup()

from celery import Celery  # noqa: E402

from bench import MARKER, STAMP  # noqa: E402
from videogen.realtime import sessions  # noqa: E402
from videogen.realtime.link import ProducerLink  # noqa: E402

# The studio's CELERY_* settings (broker, queues and routes, acks_late, prefetch 1, ...).
app = Celery("bench-relay", set_as_current=False)
app.config_from_object("django.conf:settings", namespace="CELERY")

FRAME = Path(os.environ.get("BENCH_FRAME", "")).read_bytes() if os.environ.get("BENCH_FRAME") else b""


def stamped(index: int) -> bytes:
    return FRAME + STAMP.pack(time.time(), index, MARKER)


@app.task(name="videogen.gpu.run_realtime_session")
def run_realtime_session(session_id: str) -> None:
    fps = float(os.environ.get("BENCH_FPS", "30"))
    seconds = float(os.environ.get("BENCH_SECONDS", "10"))
    session = sessions.claim(session_id, "bench")
    if session is None:
        return
    link = ProducerLink(session_id)
    try:
        link.publish({"type": "rt.started", "width": 832, "height": 480, "seed": 0, "num_blocks": 0,
                      "num_denoising_steps": 0, "model": "bench", "random_weights": True})
        count = int(fps * seconds)
        start = time.perf_counter()
        sent = 0
        for index in range(count):
            delay = start + index / fps - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            if any(c.get("op") == "stop" for c in link.drain()):
                break
            link.publish({"type": "rt.frame", "jpeg": stamped(index), "index": index, "t": time.time()})
            sent += 1
        link.flush(30)
        sessions.finish(session_id, frames=sent, timeline=None, video=None)
        link.publish({"type": "rt.completed", "frames": sent, "video": None, "url": None})
    finally:
        link.close()
