"""How much time Studio adds to a synchronous generation, against the loopback fake fal.

N requests go through ``POST /api/videos/generate`` (Django test client, embedded mode, no
webhooks: polling alone) to a fake whose jobs take ``--processing`` seconds; the table shows
wall time per request and the overhead above the job's own time, for the shipped
``VIDEO_POLL_INTERVAL`` and two others. Appends to docs/benchmarks.md (not with
``--no-append``); the last line is ``overhead_p50_s=X`` for the shipped setting.

    .venv/bin/python bench/generate_overhead.py [--requests 20] [--processing 0.5] [--no-append]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "studio.settings")
os.environ["STUDIO_ENV_FILE"] = ""
os.environ.pop("REDIS_URL", None)
os.environ.pop("DATABASE_URL", None)
os.environ["STUDIO_DATA_DIR"] = tempfile.mkdtemp(prefix="studio-bench-")
os.environ["LOG_LEVEL"] = "WARNING"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=20)
    parser.add_argument("--processing", type=float, default=0.5, help="seconds each fake job runs")
    parser.add_argument("--no-append", action="store_true", help="do not append to docs/benchmarks.md")
    args = parser.parse_args()

    import django

    django.setup()
    from django.conf import settings
    from django.core.management import call_command
    from django.test.utils import setup_test_environment
    from rest_framework.test import APIClient

    from tests.fakes.fal import FakeFal

    setup_test_environment()
    settings.ALLOWED_HOSTS = ["testserver"]
    call_command("migrate", verbosity=0)
    from django.contrib.auth import get_user_model

    user = get_user_model().objects.create_user("bench", password="bench-password-1")
    client = APIClient()
    client.force_authenticate(user)

    rows = []
    with FakeFal() as fal:
        for name, value in fal.settings().items():
            setattr(settings, name, value)
        fal.queue_time = 0.0
        fal.processing_time = args.processing
        shipped = settings.VIDEO_POLL_INTERVAL
        for interval in dict.fromkeys((shipped, 0.25, 1.0)):
            settings.VIDEO_POLL_INTERVAL = interval
            times = []
            for _ in range(args.requests):
                started = time.perf_counter()
                response = client.post("/api/videos/generate",
                                       {"model": "fal-ai/fast-animatediff/text-to-video", "prompt": "bench"},
                                       format="json")
                times.append(time.perf_counter() - started)
                assert response.status_code == 200, response.content[:200]
            times.sort()
            p50 = statistics.median(times)
            p95 = times[min(len(times) - 1, round(0.95 * (len(times) - 1)))]
            rows.append((interval, p50, p95, p50 - args.processing))

    header = "| VIDEO_POLL_INTERVAL (s) | p50 per request (s) | p95 (s) | overhead at p50 (s) |"
    lines = [header, "| --- | --- | --- | --- |"]
    lines += [f"| {i:g}{' (shipped)' if i == shipped else ''} | {p50:.3f} | {p95:.3f} | {over:.3f} |"
              for i, p50, p95, over in rows]
    table = "\n".join(lines)
    print(table)
    if not args.no_append:
        stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
        with open(ROOT / "docs" / "benchmarks.md", "a") as out:
            out.write(f"\n## Synchronous generation overhead ({stamp}, {platform.node() or 'host'}, "
                      f"{os.cpu_count()} cores)\n\n`bench/generate_overhead.py --requests {args.requests} "
                      f"--processing {args.processing}`: fake fal jobs of {args.processing} s, "
                      f"submit -> poll -> result -> download -> gallery copy, embedded mode.\n\n{table}\n")
    print(f"overhead_p50_s={rows[0][3]:.3f}")


if __name__ == "__main__":
    main()
