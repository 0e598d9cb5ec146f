"""Durable jobs at scale: N jobs against the fake fal on real Celery workers (Redis, PostgreSQL).

    .venv/bin/python bench/jobs.py [--jobs 1000] [--run-time 5] [--workers 2] [--concurrency 4]

Each fake job runs ``--run-time`` seconds on "fal" once submitted. The studio may have
``JOB_SUBMIT_CONCURRENCY`` (5) submits and ``JOB_POLL_CONCURRENCY`` (20) polls in flight, so
the ideal wall time is the time to submit every job five at a time plus one run time. The
table shows the wall time against that ideal, provider requests per job, database queries
per poll and the workers' peak memory; it is printed and appended to docs/benchmarks.md.
Needs PostgreSQL and Redis on 127.0.0.1 (bash scripts/services.sh); it makes and drops a
database of its own and deletes its Redis keys.
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench import delete_redis_keys, postgres  # noqa: E402

RUN = uuid.uuid4().hex[:8]
DATABASE = f"studio_bench_{RUN}"
DATA_DIR = tempfile.mkdtemp(prefix="studio-bench-jobs-")
os.environ.update({
    "DJANGO_SETTINGS_MODULE": "studio.settings", "STUDIO_ENV_FILE": "", "STUDIO_DATA_DIR": DATA_DIR,
    "REDIS_URL": os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/11"),
    "DATABASE_URL": f"postgres://postgres@127.0.0.1:5432/{DATABASE}", "REDIS_KEY_PREFIX": f"bench-{RUN}",
    "LOG_LEVEL": "WARNING", "DATABASE_CONN_MAX_AGE": "0", "STUDIO_MAX_UNFINISHED_GENERATIONS": "100000",
    "VIDEO_POLL_INTERVAL": "0.25",
})


def peak_rss_mb(pids: list[int]) -> float:
    """Largest resident set (VmHWM) among the workers and their pool processes, MB."""
    peak = 0
    for pid in pids:
        for task in [pid, *_children(pid)]:
            try:
                for line in Path(f"/proc/{task}/status").read_text().splitlines():
                    if line.startswith("VmHWM:"):
                        peak = max(peak, int(line.split()[1]))
            except OSError:
                continue
    return peak / 1024


def _children(pid: int) -> list[int]:
    try:
        return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def queries_per_poll(job_id) -> int:
    """Database queries one poll makes (the job still running at the fake), counted in-process."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from videogen.jobs import tasks

    with CaptureQueriesContext(connection) as captured:
        tasks.poll_job.run(str(job_id)) if hasattr(tasks.poll_job, "run") else tasks.poll_job(str(job_id))
    return len(captured.captured_queries)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=1000)
    parser.add_argument("--run-time", type=float, default=5.0)
    parser.add_argument("--workers", type=int, default=2, help="celery worker processes")
    parser.add_argument("--concurrency", type=int, default=4, help="threads per worker")
    parser.add_argument("--clients", type=int, default=8, help="threads creating jobs at once")
    args = parser.parse_args()

    postgres(f'CREATE DATABASE "{DATABASE}"')
    fal = None
    workers: list[subprocess.Popen] = []
    try:
        import django

        from tests.fakes.fal import FakeFal

        fal = FakeFal().start()
        for name, value in fal.settings().items():
            os.environ[name] = value
        django.setup()
        from django.conf import settings
        from django.contrib.auth import get_user_model
        from django.core.management import call_command

        from model_control.backends import catalog
        from videogen.jobs import services
        from videogen.models import Job, JobStatus

        call_command("migrate", verbosity=0)
        user = get_user_model().objects.create_user("bench", password="bench-password-1")
        fal.queue_time, fal.processing_time = 0.0, args.run_time

        # The fake's own submit latency, for the ideal.
        import requests

        started = time.perf_counter()
        for _ in range(20):
            requests.post(f"{fal.base_url}/fal-ai/fast-animatediff/text-to-video", json={"prompt": "probe"},
                          headers={"Authorization": f"Key {fal.key}"}, timeout=10)
        submit_s = (time.perf_counter() - started) / 20
        calls_before = len(fal.calls)

        env = {**os.environ}
        for n in range(args.workers):
            workers.append(subprocess.Popen(
                [sys.executable, "-m", "celery", "-A", "studio", "worker", "-Q", "default", "--pool", "threads",
                 "-c", str(args.concurrency), "-n", f"bench{n}-{RUN}@%h", "--without-gossip", "--without-mingle",
                 "--loglevel", "WARNING"], cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        time.sleep(6)  # workers up

        model = catalog().require("fal-ai/fast-animatediff/text-to-video")

        def enqueue(n: int) -> None:  # as API requests do: several at once
            from django.db import connection

            values = model.clean({"prompt": f"bench {n}"})
            services.enqueue_job(user, model, values, dict(values))
            connection.close()

        from concurrent.futures import ThreadPoolExecutor

        started = time.perf_counter()
        with ThreadPoolExecutor(args.clients) as pool:
            list(pool.map(enqueue, range(args.jobs)))
        enqueued_s = time.perf_counter() - started
        done = 0
        while done < args.jobs:
            time.sleep(0.5)
            done = Job.objects.filter(status__in=[JobStatus.COMPLETED, JobStatus.FAILED]).count()
            if time.perf_counter() - started > 60 + args.jobs * 2:
                break
        wall = time.perf_counter() - started
        completed = Job.objects.filter(status=JobStatus.COMPLETED).count()
        polls = sum(Job.objects.values_list("polls", flat=True))
        requests_per_job = (len(fal.calls) - calls_before - fal.count("GET", "/cdn/")) / max(args.jobs, 1)
        peak = peak_rss_mb([w.pid for w in workers])

        # Queries per poll, measured on one more job while fal still runs it.
        fal.processing_time = 60
        values = model.clean({"prompt": "query count"})
        probe = services.enqueue_job(user, model, values, dict(values))
        for _ in range(100):
            probe.refresh_from_db()
            if probe.provider_request_id:
                break
            time.sleep(0.1)
        per_poll = queries_per_poll(probe.pk)
    finally:
        for worker in workers:
            worker.terminate()
        for worker in workers:
            try:
                worker.wait(20)
            except subprocess.TimeoutExpired:
                worker.kill()
        if fal is not None:
            fal.stop()
        postgres(f'DROP DATABASE IF EXISTS "{DATABASE}" WITH (FORCE)')  # closes our connections too
        delete_redis_keys(os.environ["REDIS_URL"], f"bench-{RUN}*")

    ideal = args.jobs * submit_s / settings.JOB_SUBMIT_CONCURRENCY + args.run_time
    header = ("| jobs | run time (s) | workers x threads | wall (s) | ideal (s) | wall / ideal | completed | "
              "provider requests / job | polls / job | DB queries / poll | worker peak RSS (MB) |")
    row = (f"| {args.jobs} | {args.run_time:g} | {args.workers} x {args.concurrency} | {wall:.1f} | {ideal:.1f} | "
           f"{wall / ideal:.2f} | {completed} | {requests_per_job:.1f} | {polls / max(args.jobs, 1):.1f} | "
           f"{per_poll} | {peak:.0f} |")
    table = "\n".join([header, "|" + " --- |" * 11, row])
    print(table)
    after = wall - enqueued_s
    print(f"(creating the jobs took {enqueued_s:.1f} s with {args.clients} clients; the last job finished "
          f"{after:.1f} s after the last was created; the fake's submit latency {submit_s * 1000:.1f} ms)")
    stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    with (ROOT / "docs" / "benchmarks.md").open("a") as out:
        out.write(f"\n### bench/jobs.py, {stamp}, {platform.machine()} {os.cpu_count()} cores\n\n{table}\n\n"
                  f"Creating the jobs took {enqueued_s:.1f} s ({args.clients} clients); the last job finished "
                  f"{after:.1f} s after the last was created; the fake's submit latency "
                  f"{submit_s * 1000:.1f} ms.\n")


if __name__ == "__main__":
    main()
