"""``manage.py runstudio``: migrate, make sure an admin exists, serve with daphne.

In the services mode ``--with-workers`` also starts Celery workers for the ``default`` and
``gpu`` queues and ``celery beat`` (the periodic job sweep). A worker or beat that dies is
started again (after a pause that doubles while it keeps dying, up to ``RESTART_MAX_S``);
daphne dying stops the studio (a port in use, a bad setting: starting it again would not
help). Ctrl-C (or SIGTERM) stops everything this command started. On Linux the children also
get SIGTERM from the kernel when this process dies without cleaning up (SIGKILL, OOM killer),
so no orphaned daphne keeps the port.
"""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Callable

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError
from django.db import connections

PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>
# A child that is not daphne is started again when it exits: after RESTART_FIRST_S, doubling
# while it keeps dying, at most RESTART_MAX_S; one that ran STABLE_AFTER_S starts from the first.
RESTART_FIRST_S = 1.0
RESTART_MAX_S = 30.0
STABLE_AFTER_S = 60.0


def die_with_parent() -> Callable[[], None] | None:
    """A ``preexec_fn`` that makes the child get SIGTERM when this process dies (Linux only).

    Everything is looked up here, in the parent: the hook runs between fork and exec, where
    loading a library is not safe. The kernel sends the signal when the *thread* that forked
    exits, so call Popen from the main thread. Returns None where prctl is not available.
    """
    if not sys.platform.startswith("linux"):
        return None
    try:
        import ctypes

        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]
    prctl.restype = ctypes.c_int
    parent, sigterm = os.getpid(), int(signal.SIGTERM)

    def preexec() -> None:
        prctl(PR_SET_PDEATHSIG, sigterm, 0, 0, 0)
        # The parent may have died between fork and prctl: then no signal will ever come.
        if os.getppid() != parent:
            os._exit(1)

    return preexec


class Command(BaseCommand):
    help = "Start the studio: migrate, create the first admin, serve on daphne (and workers)."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--host", default=settings.STUDIO_HOST, help="address to bind (STUDIO_HOST)")
        parser.add_argument("--port", type=int, default=settings.STUDIO_PORT, help="port (STUDIO_PORT)")
        parser.add_argument("--with-workers", action="store_true",
                            help="also start Celery workers for the default and gpu queues and celery beat "
                                 "(Redis mode); a worker that dies is started again")
        parser.add_argument("--no-migrate", action="store_true", help="skip applying migrations")

    def handle(self, *args, host: str, port: int, with_workers: bool, no_migrate: bool, **options) -> None:
        if not 0 < port < 65536:
            raise CommandError(f"--port must be between 1 and 65535, got {port}")
        if with_workers and settings.STUDIO_EMBEDDED:
            raise CommandError("--with-workers needs REDIS_URL: in the embedded mode jobs already run "
                               "inside the web process.")
        if not no_migrate:
            call_command("migrate", interactive=False, verbosity=0)
        self.ensure_admin()

        # daphne, plus write backpressure for WebSockets (studio/serve.py).
        commands = [("web", [sys.executable, "-m", "studio.serve", "-b", host, "-p", str(port),
                             "studio.asgi:application"])]
        if with_workers:
            celery = [sys.executable, "-m", "celery", "-A", "studio"]
            worker = [*celery, "worker", "--loglevel", settings.LOG_LEVEL]
            commands += [
                # -c from STUDIO_WORKER_CONCURRENCY (CELERY_WORKER_CONCURRENCY): each counts
                # against PostgreSQL's max_connections (docs/deployment.md).
                ("worker", [*worker, "-Q", "default", "-n", "default@%h"]),
                ("gpu-worker", [*worker, "-Q", "gpu", "-c", "1", "-n", "gpu@%h"]),
                ("beat", [*celery, "beat", "--loglevel", settings.LOG_LEVEL]),
            ]
        self.stdout.write(f"Studio ({settings.STUDIO_MODE} mode) on http://{host}:{port}/  (Ctrl-C stops it)")
        # This process only watches from now on: its database connection (and pool) goes.
        for connection in connections.all():
            connection.close()
            if hasattr(connection, "close_pool"):
                connection.close_pool()
        self.supervise(commands)

    def ensure_admin(self) -> None:
        """Create the first superuser; its password is printed once unless set in the env."""
        User = get_user_model()
        if User.objects.filter(is_superuser=True).exists():
            return
        username = settings.STUDIO_ADMIN_USERNAME
        password = settings.STUDIO_ADMIN_PASSWORD or secrets.token_urlsafe(12)
        User.objects.create_superuser(username=username, email=settings.STUDIO_ADMIN_EMAIL, password=password)
        if settings.STUDIO_ADMIN_PASSWORD:
            self.stdout.write(f"Created admin user {username!r} with the password from STUDIO_ADMIN_PASSWORD.")
        else:
            self.stdout.write(self.style.WARNING(
                f"Created admin user {username!r} with password: {password}\n"
                "This is the only time it is shown. Change it with: python manage.py changepassword "
                f"{username}"))

    def supervise(self, commands: list[tuple[str, list[str]]]) -> None:
        """Run the children until daphne exits or we are told to stop, then stop them all; any
        other child that exits is started again (see the module docstring)."""
        children: dict[str, subprocess.Popen] = {}
        started: dict[str, float] = {}
        restart_at: dict[str, float] = {}
        pauses: dict[str, float] = {}
        argvs = dict(commands)
        stopping = False
        failed: str | None = None

        def stop(signum, frame) -> None:
            nonlocal stopping
            stopping = True

        previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGINT, signal.SIGTERM)}
        preexec = die_with_parent()

        def start(name: str) -> None:
            env = os.environ.copy()
            if name == "web" and settings.STUDIO_EMBEDDED:
                env["STUDIO_EMBEDDED_BEAT"] = "1"  # the web process is the embedded mode's worker and beat
            children[name] = subprocess.Popen(argvs[name], env=env, preexec_fn=preexec)
            started[name] = time.monotonic()

        try:
            for name, _ in commands:
                start(name)
            while not stopping:
                now = time.monotonic()
                for name, process in list(children.items()):
                    code = process.poll()
                    if code is None or name in restart_at:
                        continue
                    if name == "web":
                        failed = f"{name} exited with code {code}"
                        break
                    ran = now - started[name]
                    pause = RESTART_FIRST_S if ran >= STABLE_AFTER_S else min(
                        pauses.get(name, RESTART_FIRST_S / 2) * 2, RESTART_MAX_S)
                    pauses[name], restart_at[name] = pause, now + pause
                    self.stderr.write(f"{name} exited with code {code}; starting it again in {pause:.0f} s.")
                if failed:
                    self.stderr.write(f"{failed}; stopping the studio.")
                    break
                for name, when in list(restart_at.items()):
                    if now >= when:
                        del restart_at[name]
                        start(name)
                time.sleep(0.2)
        finally:
            for process in children.values():
                if process.poll() is None:
                    process.terminate()
            deadline = time.monotonic() + 10
            for name, process in children.items():
                try:
                    process.wait(timeout=max(deadline - time.monotonic(), 0.1))
                except subprocess.TimeoutExpired:
                    self.stderr.write(f"{name} did not stop in 10 s; killing it.")
                    process.kill()
                    process.wait()
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        if failed:
            raise CommandError(f"{failed}: the studio stopped (is port in use or a setting wrong? see above).")
        self.stdout.write("Studio stopped.")
