#!/usr/bin/env python
"""Django's command-line utility for Studio."""

import os
import sys


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "studio.settings")
    from django.core.exceptions import ImproperlyConfigured
    from django.core.management import execute_from_command_line

    try:
        execute_from_command_line(sys.argv)
    except ImproperlyConfigured as exc:
        # A bad setting (studio/env.py names the variable): one line, not a traceback.
        # ``--traceback`` still shows the whole story.
        if "--traceback" in sys.argv:
            raise
        message = " ".join(str(exc).split()) or type(exc).__name__
        sys.stderr.write(f"Configuration error: {message} (see .env.default)\n")
        sys.exit(2)


if __name__ == "__main__":
    main()
