"""A request thread's database connection while it waits on something else.

Each process has a small pool of PostgreSQL connections (``DATABASE_POOL_SIZE``, shared by its
threads; docs/deployment.md). A thread keeps the connection it borrowed until it closes it,
normally at the end of its request; a request that then waits minutes on a provider (TT
Studio's door, a proxied fal call, the synchronous door's wait) would hold one for nothing,
and a few of them would leave every other request waiting for a connection.
"""

from __future__ import annotations

from django.db import connections


def give_back_connection(alias: str = "default") -> None:
    """Return this thread's connection (to the pool, or closed without one) before a long wait
    on something other than the database; the next query borrows one again. Inside a
    transaction it is kept: the transaction needs it."""
    connection = connections[alias]
    if not connection.in_atomic_block:
        connection.close()
