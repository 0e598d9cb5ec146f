"""The realtime relay's cost: frames through producer -> Redis layer -> consumer -> client,
against the same frames over a direct WebSocket.

    .venv/bin/python bench/relay.py [--sessions 1,4,8] [--fps 30] [--seconds 10]

For each number of sessions it runs twice, one after the other:

- relay: ``python -m studio.serve`` (daphne, the Redis channel layer, RealtimeConsumer) and a
  Celery GPU worker (bench/relay_worker.py) whose producer publishes an 832x480 JPEG at
  ``--fps`` through the real ProducerLink; one client per session on /ws/realtime/;
- direct: a plain ``websockets`` server sending the same frames at the same rate.

Each frame carries its send time, so the clients (one asyncio process) measure latency.
Printed and appended to docs/benchmarks.md: latency p50/p99 of both, the relay's added
latency, sustained fps per session, frames lost or dropped, and CPU use of each process.
Needs PostgreSQL and Redis on 127.0.0.1 (bash scripts/services.sh); makes and drops a
database of its own and deletes its Redis keys.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench import MARKER, STAMP, delete_redis_keys, postgres  # noqa: E402

RUN = uuid.uuid4().hex[:8]
DATABASE = f"studio_bench_relay_{RUN}"
DATA_DIR = tempfile.mkdtemp(prefix="studio-bench-relay-")
REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/12")
ENV = {
    "DJANGO_SETTINGS_MODULE": "studio.settings", "STUDIO_ENV_FILE": "", "STUDIO_DATA_DIR": DATA_DIR,
    "REDIS_URL": REDIS_URL, "DATABASE_URL": f"postgres://postgres@127.0.0.1:5432/{DATABASE}",
    "REDIS_KEY_PREFIX": f"bench-relay-{RUN}", "LOG_LEVEL": "WARNING", "DATABASE_CONN_MAX_AGE": "60",
    "STUDIO_REALTIME_SESSIONS_PER_USER": "100", "STUDIO_REALTIME_MAX_QUEUED": "100",
}
os.environ.update(ENV)
CLK_TCK = os.sysconf("SC_CLK_TCK")


def test_frame(path: Path) -> int:
    """An 832x480 JPEG (quality 90) of smooth gradients and fine noise, like a video frame."""
    import numpy as np
    from PIL import Image

    y, x = np.mgrid[0:480, 0:832]
    rng = np.random.default_rng(0)
    rgb = np.stack([128 + 100 * np.sin(x / 60.0), 128 + 100 * np.cos(y / 45.0), 128 + 60 * np.sin((x + y) / 90.0)],
                   axis=-1)
    rgb = np.clip(rgb + rng.normal(0, 12, rgb.shape), 0, 255).astype(np.uint8)
    out = io.BytesIO()
    Image.fromarray(rgb).save(out, "JPEG", quality=90)
    path.write_bytes(out.getvalue())
    return len(out.getvalue())


def cpu_ticks(pid: int) -> int:
    """utime + stime of a process and its children still alive (clock ticks)."""
    total = 0
    for task in [pid, *_descendants(pid)]:
        try:
            fields = Path(f"/proc/{task}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
        except (OSError, IndexError):
            continue
    return total


def _descendants(pid: int) -> list[int]:
    out = []
    try:
        children = [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return out
    for child in children:
        out += [child, *_descendants(child)]
    return out


def redis_pid() -> int | None:
    import redis

    try:
        return int(redis.Redis.from_url(REDIS_URL).info("server")["process_id"])
    except Exception:
        return None


def wait_port(port: int, timeout: float = 60) -> None:
    import socket

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.2)
    raise TimeoutError(f"nothing listens on {port}")


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ---- the direct baseline: a plain websockets server sending stamped frames ----------------

async def serve_direct(port: int, frame_path: str, fps: float, seconds: float) -> None:
    from websockets.asyncio.server import serve

    frame = Path(frame_path).read_bytes()

    async def stream(ws) -> None:
        await ws.send(json.dumps({"status": "ready"}))
        await ws.recv()  # the parameters
        count, start = int(fps * seconds), time.perf_counter()
        for index in range(count):
            delay = start + index / fps - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            await ws.send(frame + STAMP.pack(time.time(), index, MARKER))
        await ws.send(json.dumps({"status": "completed"}))
        await ws.close(1000)

    async with serve(stream, "127.0.0.1", port, max_size=2**24, compression=None):
        await asyncio.Future()


# ---- the clients ---------------------------------------------------------------------

async def one_client(url: str) -> dict:
    import msgpack
    from websockets.asyncio.client import connect

    latencies, first, last, dropped, received = [], None, None, 0, 0
    async with connect(url, max_size=2**24, compression=None, open_timeout=60) as ws:
        await ws.recv()  # ready
        await ws.send(msgpack.packb({"prompt": "bench", "width": 832, "height": 480, "num_blocks": 50}))
        async for message in ws:
            now = time.time()
            if isinstance(message, bytes):
                sent_at, _, marker = STAMP.unpack(message[-STAMP.size:])
                if marker == MARKER:
                    latencies.append((now - sent_at) * 1000)
                    received += 1
                    first = first or now
                    last = now
                continue
            data = json.loads(message)
            if "error" in data:
                raise RuntimeError(data["error"])
            if data.get("status") == "completed":
                dropped = data.get("dropped", 0)
                break
    fps = (received - 1) / (last - first) if received > 1 and last > first else 0.0
    return {"latencies": latencies, "received": received, "dropped": dropped, "fps": fps}


async def warm_up(url: str) -> None:
    """One short session: the first one pays for imports and connections, not the table."""
    import msgpack
    from websockets.asyncio.client import connect

    async with connect(url, max_size=2**24, open_timeout=60) as ws:
        await ws.recv()
        await ws.send(msgpack.packb({"prompt": "warm-up", "width": 832, "height": 480, "num_blocks": 1}))
        async for message in ws:
            if isinstance(message, bytes):
                break


async def clients(url: str, n: int) -> list[dict]:
    return await asyncio.gather(*(one_client(url) for _ in range(n)))


def measure(url: str, n: int, pids: dict[str, int | None]) -> dict:
    before = {name: cpu_ticks(pid) for name, pid in pids.items() if pid}
    own = os.times()
    started = time.monotonic()
    results = asyncio.run(clients(url, n))
    wall = time.monotonic() - started
    own_after = os.times()
    cpu = {name: (cpu_ticks(pid) - before[name]) / CLK_TCK / wall * 100 for name, pid in pids.items() if pid}
    cpu["clients"] = ((own_after.user - own.user) + (own_after.system - own.system)) / wall * 100
    latencies = sorted(x for r in results for x in r["latencies"])

    def pct(q: float) -> float:
        return latencies[min(len(latencies) - 1, int(q * len(latencies)))] if latencies else float("nan")

    return {"p50": pct(0.50), "p99": pct(0.99), "fps": statistics.fmean(r["fps"] for r in results),
            "received": sum(r["received"] for r in results), "dropped": sum(r["dropped"] for r in results),
            "cpu": cpu, "wall": wall}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sessions", default="1,4,8")
    parser.add_argument("--fps", type=float, default=30.0)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--no-append", action="store_true")
    parser.add_argument("--serve-direct", nargs=2, metavar=("PORT", "FRAME"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_direct:
        asyncio.run(serve_direct(int(args.serve_direct[0]), args.serve_direct[1], args.fps, args.seconds))
        return

    counts = [int(n) for n in args.sessions.split(",")]
    frame_path = Path(DATA_DIR) / "frame.jpg"
    frame_bytes = test_frame(frame_path)
    postgres(f'CREATE DATABASE "{DATABASE}"')
    processes: list[subprocess.Popen] = []
    logs = Path(DATA_DIR)
    try:
        import django

        django.setup()
        from django.contrib.auth import get_user_model
        from django.core.management import call_command

        call_command("migrate", verbosity=0)
        user = get_user_model().objects.create_user("bench", password="bench-relay-42")
        from videogen.realtime.auth import mint_token

        token = mint_token(user)
        env = {**os.environ, **ENV, "BENCH_FRAME": str(frame_path), "BENCH_FPS": str(args.fps),
               "BENCH_SECONDS": str(args.seconds), "STUDIO_REALTIME_TOKEN_TTL": "86400", "PYTHONPATH": str(ROOT)}
        port, direct_port = free_port(), free_port()
        worker_log, daphne_log = open(logs / "worker.log", "w"), open(logs / "daphne.log", "w")  # noqa: SIM115
        worker = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "bench.relay_worker", "worker", "-Q", "gpu", "--pool", "threads",
             "-c", str(max(counts)), "-n", f"bench-gpu-{RUN}@%h", "--without-gossip", "--without-mingle",
             "--loglevel", "WARNING"], cwd=ROOT, env=env, stdout=worker_log,
            stderr=subprocess.STDOUT)
        daphne = subprocess.Popen([sys.executable, "-m", "studio.serve", "-b", "127.0.0.1", "-p", str(port),
                                   "studio.asgi:application"], cwd=ROOT, env=env,
                                  stdout=daphne_log, stderr=subprocess.STDOUT)
        direct = subprocess.Popen([sys.executable, str(Path(__file__)), "--serve-direct", str(direct_port),
                                   str(frame_path), "--fps", str(args.fps), "--seconds", str(args.seconds)],
                                  cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        processes += [worker, daphne, direct]
        if os.environ.get("BENCH_PIDS"):
            Path(os.environ["BENCH_PIDS"]).write_text(json.dumps({"daphne": daphne.pid, "worker": worker.pid}))
        wait_port(port)
        wait_port(direct_port)
        time.sleep(3)  # the worker connects to the broker
        relay_url = f"ws://127.0.0.1:{port}/ws/realtime/?backend=local&token={token}"
        direct_url = f"ws://127.0.0.1:{direct_port}/"
        asyncio.run(warm_up(relay_url))
        time.sleep(1)  # its producer notices the stop
        rows = []
        for n in counts:
            relay = measure(relay_url, n, {"daphne": daphne.pid, "worker": worker.pid, "redis": redis_pid()})
            base = measure(direct_url, n, {"server": direct.pid})
            rows.append((n, relay, base))
            print(f"{n} sessions: relay p50 {relay['p50']:.2f} ms p99 {relay['p99']:.2f} ms "
                  f"{relay['fps']:.1f} fps; direct p50 {base['p50']:.2f} ms p99 {base['p99']:.2f} ms", flush=True)
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
        from django.db import connections

        connections.close_all()
        postgres(f'DROP DATABASE IF EXISTS "{DATABASE}" WITH (FORCE)')
        delete_redis_keys(REDIS_URL, f"{ENV['REDIS_KEY_PREFIX']}:*")

    expected = int(args.fps * args.seconds)
    lines = ["| sessions | relay p50 / p99 (ms) | direct p50 / p99 (ms) | added p50 / p99 (ms) | fps per session "
             "(relay / direct) | frames lost or dropped (relay / direct) | CPU % (daphne, worker, redis; clients) |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    for n, relay, base in rows:
        lost_relay = n * expected - relay["received"]
        lost_direct = n * expected - base["received"]
        cpu = relay["cpu"]
        lines.append(
            f"| {n} | {relay['p50']:.2f} / {relay['p99']:.2f} | {base['p50']:.2f} / {base['p99']:.2f} | "
            f"{relay['p50'] - base['p50']:.2f} / {relay['p99'] - base['p99']:.2f} | "
            f"{relay['fps']:.1f} / {base['fps']:.1f} | {lost_relay} ({relay['dropped']} dropped) / {lost_direct} | "
            f"{cpu.get('daphne', 0):.0f}, {cpu.get('worker', 0):.0f}, {cpu.get('redis', 0):.0f}; "
            f"{cpu['clients']:.0f} (direct server {base['cpu'].get('server', 0):.0f}) |")
    table = "\n".join(lines)
    print(table)
    if not args.no_append:
        stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
        load = os.getloadavg()[0]
        with open(ROOT / "docs" / "benchmarks.md", "a") as out:
            out.write(f"\n## Realtime relay ({stamp}, {platform.node() or 'host'}, {os.cpu_count()} cores, "
                      f"load {load:.1f})\n\n`bench/relay.py --sessions {args.sessions} --fps {args.fps:g} "
                      f"--seconds {args.seconds:g}`: an 832x480 JPEG ({frame_bytes // 1024} KiB) at "
                      f"{args.fps:g} fps per session for {args.seconds:g} s, through the relay (producer -> "
                      f"Redis channel layer -> RealtimeConsumer on daphne -> client) and over a direct "
                      f"WebSocket; {expected} frames per session. CPU is % of one core over the run.\n\n"
                      f"{table}\n")


if __name__ == "__main__":
    main()
