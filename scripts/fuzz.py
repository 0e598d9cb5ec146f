"""Fuzz every API operation with schemathesis against a live studio on the fake providers.

    .venv/bin/python scripts/fuzz.py [--examples 300] [--workers 2]

Starts the fake fal and Tenstorrent servers (tests/fakes) and ``manage.py runstudio`` on
free loopback ports in a throw-away data directory (embedded mode), makes a user with an
API token, and runs ``schemathesis run /api/schema/`` with that token and the
``not_a_server_error`` check. Limits are raised for the run so requests reach the code
behind them instead of a 429. Prints the number of requests sent and exits non-zero on
any 5xx. Needs the dev tools (``bash scripts/bootstrap --dev``).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.fakes.fal import FakeFal  # noqa: E402
from tests.fakes.tenstorrent import FakeTenstorrent  # noqa: E402
from tests.support.processes import free_port, stop, wait_http  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=300, help="examples per operation (default 300)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="studio-fuzz-") as data, FakeFal() as fal:
        tt = FakeTenstorrent(mode="media").start()
        tt.delay = 0.05
        fal.processing_time = 0.05
        port = free_port()
        env = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "DATABASE_URL")}
        env.update(fal.settings())
        env.update(tt.settings())
        env.update({"STUDIO_ENV_FILE": "", "STUDIO_DATA_DIR": data, "STUDIO_ADMIN_PASSWORD": "fuzz-admin-pw-1",
                    "STUDIO_THROTTLE_GENERATION": "100000/hour", "STUDIO_THROTTLE_FAL_TOKEN": "100000/hour",
                    "STUDIO_MAX_UNFINISHED_GENERATIONS": "1000", "VIDEO_GENERATION_TIMEOUT": "20",
                    "VIDEO_POLL_INTERVAL": "0.05", "LOG_LEVEL": "WARNING"})
        token = subprocess.run(
            [sys.executable, "-c", "import django; django.setup()\n"
             "from django.core.management import call_command; call_command('migrate', verbosity=0)\n"
             "from django.contrib.auth.models import User\n"
             "from rest_framework.authtoken.models import Token\n"
             "u = User.objects.create_user('fuzz', password='fuzz-user-pw-1')\n"
             "print(Token.objects.create(user=u).key)"],
            cwd=ROOT, env={**env, "DJANGO_SETTINGS_MODULE": "studio.settings"}, capture_output=True, text=True,
            check=True).stdout.strip()
        studio = subprocess.Popen([sys.executable, "manage.py", "runstudio", "--port", str(port)], cwd=ROOT,
                                  env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        base = f"http://127.0.0.1:{port}"
        try:
            wait_http(f"{base}/health", timeout=90)
            report = Path(data) / "report.ndjson"
            started = time.monotonic()
            result = subprocess.run(
                [str(Path(sys.executable).with_name("schemathesis")), "run", f"{base}/api/schema/",
                 "-H", f"Authorization: Token {token}", "--checks", "not_a_server_error",
                 "--max-examples", str(args.examples), "--workers", str(args.workers),
                 "--seed", str(args.seed), "--request-timeout", "60", "--report", "ndjson",
                 "--report-ndjson-path", str(report), "--no-color"],
                cwd=data, capture_output=True, text=True)  # its example database stays in the temp dir
            elapsed = time.monotonic() - started
        finally:
            stop(studio)
            tt.stop()
        print(result.stdout[-4000:])
        if result.returncode not in (0, 1):
            print(result.stderr[-2000:], file=sys.stderr)
        sent, statuses = count_requests(report)
        print(f"requests sent: {sent} in {elapsed:.0f} s; statuses: {json.dumps(statuses, sort_keys=True)}")
        server_errors = sum(n for code, n in statuses.items() if code.startswith("5") and code not in
                            ("502", "503", "504"))
        print(f"server errors (500, 501, 505+): {server_errors}")
        return 0 if result.returncode == 0 and server_errors == 0 else 1


def count_requests(report: Path) -> tuple[int, dict[str, int]]:
    """Requests and their status codes, from schemathesis's ndjson event log."""
    statuses: dict[str, int] = {}
    if not report.exists():
        return 0, statuses
    text = report.read_text()
    for code in re.findall(r'"status_code":\s*(\d{3})', text):
        statuses[code] = statuses.get(code, 0) + 1
    return sum(statuses.values()), statuses


if __name__ == "__main__":
    sys.exit(main())
