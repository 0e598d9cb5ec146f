"""The studio's runtime: what every app stands on and nothing of the studio's own features.

- ``runtime.celery``: the Celery app, the task class that runs on the embedded executor when
  there is no broker, and ``dispatch`` (a task by name, so callers need not import it);
- ``runtime.embedded``: thread pools and timers that stand in for workers and beat in the
  embedded mode;
- ``runtime.events``: events to a user's open pages (``/ws/events/``), sent on commit;
- ``runtime.consumers``: the ``/ws/events/`` consumer and the WebSocket close codes;
- ``runtime.channel_layers``: the in-process channel layer threads can use;
- ``runtime.workers``: the census of live Celery workers, pushed by the workers themselves;
- ``runtime.parsers``: JSON parsing that answers bad input with a 400.

It imports Django, Celery and Channels, never ``studio``, ``videogen`` or ``model_control``
(an import-linter contract in pyproject.toml checks it).
"""
