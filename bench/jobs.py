"""Durable jobs at scale: N jobs created over HTTP on a real daphne, run on real Celery workers
against the fake fal, with a PostgreSQL and a Redis of the benchmark's own.

    .venv/bin/python bench/jobs.py [--jobs 1000] [--run-time 5] [--workers 2] [--concurrency 4]
                                   [--clients 8] [--no-webhooks] [--no-append]

Each fake job runs ``--run-time`` seconds on "fal" once submitted; with webhooks (the
default, as a studio with ``STUDIO_PUBLIC_URL`` runs) fal says when it is done and polling
is only the safety net. The studio's CPU per job is read from /proc: the web process, the
workers, PostgreSQL (the postmaster, its backends, those that exited) and Redis, from just
before the first create to the last job's completion, divided by the jobs. Those servers
are the benchmark's own, so nothing else on the machine is counted. The table is printed
and appended to docs/benchmarks.md (not with ``--no-append``); the last line is
``jobs=N cpu_ms_per_job=X wall_s=Y``.
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.support.processes import free_port, wait_for, wait_http  # noqa: E402
from tests.support.servers import cpu_seconds, own_services  # noqa: E402

MODEL = "fal-ai/fast-animatediff/text-to-video"


def studio_env(postgres_url: str, redis_url: str, data_dir: str, public_url: str | None, fal_settings: dict) -> dict:
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "studio.settings", "STUDIO_ENV_FILE": "",
           "STUDIO_DATA_DIR": data_dir, "REDIS_URL": redis_url, "DATABASE_URL": postgres_url,
           "REDIS_KEY_PREFIX": "bench", "LOG_LEVEL": "WARNING", "STUDIO_MAX_UNFINISHED_GENERATIONS": "100000",
           "STUDIO_THROTTLE_GENERATION": "1000000/hour", "DJANGO_SECRET_KEY": "bench-" + "x" * 50, **fal_settings}
    if public_url:
        env["STUDIO_PUBLIC_URL"] = public_url
    return env


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=1000)
    parser.add_argument("--run-time", type=float, default=5.0, help="seconds fal takes for each job")
    parser.add_argument("--workers", type=int, default=2, help="celery worker processes")
    parser.add_argument("--concurrency", type=int, default=4, help="processes (or threads) per worker")
    parser.add_argument("--pool", default="threads", choices=("threads", "prefork"),
                        help="the workers' pool: threads (the job tasks wait on the network), or prefork")
    parser.add_argument("--clients", type=int, default=8, help="HTTP clients creating jobs at once")
    parser.add_argument("--no-webhooks", action="store_true", help="no STUDIO_PUBLIC_URL: polling alone")
    parser.add_argument("--no-append", action="store_true", help="do not append to docs/benchmarks.md")
    args = parser.parse_args()

    import requests

    from tests.fakes.fal import FakeFal

    processes: list[subprocess.Popen] = []
    data_dir = tempfile.mkdtemp(prefix="studio-bench-jobs-")
    with own_services(max_connections=200) as (postgres, redis_server):
        postgres.sql('CREATE DATABASE "studio"')
        fal = FakeFal().start()
        try:
            port = free_port()
            base = f"http://127.0.0.1:{port}"
            env = studio_env(postgres.url("studio"), redis_server.url(), data_dir,
                             None if args.no_webhooks else base, fal.settings())
            manage = [sys.executable, str(ROOT / "manage.py")]
            subprocess.run([*manage, "migrate", "-v", "0"], env=env, cwd=ROOT, check=True)
            token = subprocess.run(
                [*manage, "shell", "-c", "from django.contrib.auth import get_user_model as u; "
                 "from rest_framework.authtoken.models import Token; "
                 "user = u().objects.create_user('bench', password='bench-password-1'); "
                 "print(Token.objects.create(user=user).key)"],
                env=env, cwd=ROOT, check=True, capture_output=True, text=True).stdout.strip().splitlines()[-1]
            web = subprocess.Popen([sys.executable, "-m", "studio.serve", "-b", "127.0.0.1", "-p", str(port),
                                    "studio.asgi:application"], env=env, cwd=ROOT,
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            processes.append(web)
            workers = [subprocess.Popen(
                [sys.executable, "-m", "celery", "-A", "studio", "worker", "-Q", "default", "--pool", args.pool,
                 "-c", str(args.concurrency), "-n", f"bench{n}@%h", "--without-gossip", "--without-mingle",
                 "--loglevel", "WARNING"], env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                for n in range(args.workers)]
            processes += workers
            wait_http(f"{base}/health", timeout=60)
            wait_for(lambda: requests.get(f"{base}/health", timeout=5).status_code == 200, 60, "the workers")
            fal.queue_time, fal.processing_time = 0.0, args.run_time
            calls_before = len(fal.calls)

            def studio_cpu() -> dict[str, float]:
                return {"web": cpu_seconds(web.pid), "workers": sum(cpu_seconds(w.pid) for w in workers),
                        "postgres": cpu_seconds(postgres.pid()), "redis": cpu_seconds(redis_server.pid())}

            local = threading.local()

            def create(n: int) -> int:
                session = getattr(local, "session", None)
                if session is None:
                    session = local.session = requests.Session()
                    session.headers["Authorization"] = f"Token {token}"
                response = session.post(f"{base}/api/jobs/", json={"model": MODEL, "prompt": f"bench {n}"},
                                        timeout=60)
                return response.status_code

            before = studio_cpu()
            started = time.perf_counter()
            with ThreadPoolExecutor(args.clients) as pool:
                answers = list(pool.map(create, range(args.jobs)))
            created_s = time.perf_counter() - started
            refused = sum(1 for code in answers if code != 202)
            done, completed = 0, 0
            while done < args.jobs - refused and time.perf_counter() - started < 120 + args.jobs:
                time.sleep(0.5)
                rows = postgres.sql("SELECT status, count(*) FROM videogen_job GROUP BY status", "studio")
                counts = dict(rows)
                completed = counts.get("completed", 0)
                done = completed + counts.get("failed", 0) + counts.get("cancelled", 0)
            wall = time.perf_counter() - started
            after = studio_cpu()
            polls = postgres.sql("SELECT coalesce(sum(polls), 0) FROM videogen_job", "studio")[0][0]
            connections = postgres.sql("SELECT count(*) FROM pg_stat_activity WHERE datname = 'studio'")[0][0]
            provider_calls = len(fal.calls) - calls_before - fal.count("GET", "/cdn/")
        finally:
            for process in processes:
                process.terminate()
            for process in processes:
                try:
                    process.wait(20)
                except subprocess.TimeoutExpired:
                    process.kill()
            fal.stop()

    jobs = args.jobs
    cpu = {part: (after[part] - before[part]) * 1000 / jobs for part in before}
    total = sum(cpu.values())
    mode = "polling only" if args.no_webhooks else "webhooks + polling"
    header = ("| jobs | fal run time (s) | workers x pool | mode | wall (s) | completed | refused | "
              "CPU ms / job: web | workers | PostgreSQL | Redis | total | polls / job | fal requests / job |")
    row = (f"| {jobs} | {args.run_time:g} | {args.workers} x {args.concurrency} {args.pool} | {mode} | {wall:.1f} | "
           f"{completed} | {refused} | {cpu['web']:.1f} | {cpu['workers']:.1f} | {cpu['postgres']:.1f} | "
           f"{cpu['redis']:.1f} | **{total:.1f}** | {polls / jobs:.1f} | {provider_calls / jobs:.1f} |")
    table = "\n".join([header, "|" + " --- |" * 15, row])
    print(table)
    print(f"(creating the jobs over HTTP took {created_s:.1f} s with {args.clients} clients; "
          f"{connections} database connections open at the end)")
    if not args.no_append:
        stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
        with (ROOT / "docs" / "benchmarks.md").open("a") as out:
            out.write(f"\n### bench/jobs.py, {stamp}, {platform.machine()} {os.cpu_count()} cores\n\n{table}\n\n"
                      f"Creating the jobs over HTTP took {created_s:.1f} s ({args.clients} clients).\n")
    print(f"jobs={jobs} cpu_ms_per_job={total:.1f} wall_s={wall:.1f}")


if __name__ == "__main__":
    main()
