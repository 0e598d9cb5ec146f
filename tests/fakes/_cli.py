"""Command-line runner shared by the fakes: switches become flags, settings become .env lines."""

from __future__ import annotations

import argparse
import importlib
import signal
import sys
import time
from collections.abc import Iterable
from typing import Any

# What the fakes import beyond the standard library: module -> (what it is, its pip name).
PACKAGES = {
    "av": ("PyAV (the 'av' package)", "av"),
    "PIL": ("Pillow (the 'pillow' package)", "pillow"),
    "msgpack": ("msgpack", "msgpack"),
    "websockets": ("websockets", "websockets"),
    "cryptography": ("cryptography", "cryptography"),
    "requests": ("requests", "requests"),
}


def missing_package(fake: str, modules: Iterable[str]) -> str | None:
    """One line naming the first of ``modules`` that cannot be imported, and how to install it."""
    for module in modules:
        try:
            importlib.import_module(module)
        except ImportError as error:
            what, pip_name = PACKAGES.get(module, (module, module))
            reason = " ".join(str(error).split()) or type(error).__name__
            return (f"the fake {fake} needs {what}, which cannot be imported ({reason}): "
                    f"run bash scripts/bootstrap (or .venv/bin/python -m pip install {pip_name}) "
                    f"and start it with .venv/bin/python")
    return None


def exit_if_missing(fake: str, modules: Iterable[str]) -> None:
    """Run by hand, stop at once with that line (exit status 1) instead of serving replies that
    fail later (a video the fake cannot encode shows up only as a 502 in the studio)."""
    problem = missing_package(fake, modules)
    if problem is not None:
        sys.exit(problem)


def add_switch_args(parser: argparse.ArgumentParser, fake: Any) -> None:
    """One flag per name in ``fake.SWITCHES`` (``reject_next`` -> ``--reject-next``)."""
    for name in fake.SWITCHES:
        default = getattr(fake, name)
        flag = "--" + name.replace("_", "-")
        if isinstance(default, bool):
            parser.add_argument(flag, action="store_true")
        elif default is None:
            parser.add_argument(flag, type=int, default=None)
        else:
            parser.add_argument(flag, type=type(default), default=default)


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def run_until_interrupt(fake: Any, args: argparse.Namespace, title: str) -> None:
    """Apply the switch flags, start the fake, print its .env lines and serve until Ctrl-C."""
    for name in fake.SWITCHES:
        setattr(fake, name, getattr(args, name))
    # Background shells start us with SIGINT ignored; TERM (docker, compose) also stops cleanly.
    signal.signal(signal.SIGINT, _interrupt)
    signal.signal(signal.SIGTERM, _interrupt)
    with fake:
        print(f"# {title} running; put these lines in .env (Ctrl-C to stop):", flush=True)
        for key, value in fake.settings().items():
            print(f"{key}={value}", flush=True)
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            print("\nstopping", flush=True)
