"""Command-line runner shared by the fakes: switches become flags, settings become .env lines."""

from __future__ import annotations

import argparse
import signal
import time
from typing import Any


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
