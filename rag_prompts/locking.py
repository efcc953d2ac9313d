"""One writer per store: a lock file beside an embedded store folder, a lock record inside a Chroma server.

Both say the same when another process holds the lock ("another ingest is running (pid N) ..."), and both wait
for it with `wait=True`. An embedded store's lock file holds the writer's pid; the operating system releases
it when that process dies, however it dies. A server store's lock is a leased record in the server (see
`server_lock`); an in-memory store belongs to one process and needs none.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Protocol

from .errors import StoreBusyError
from .server_lock import LEASE_SECONDS, busy_message


class Lease(Protocol):
    @property
    def token(self) -> str:
        """What the holder's manifest writes carry ("" for a lock that cannot be lost)."""

    def check(self) -> None:
        """Raise StoreBusyError if the lock is no longer held (a server lease run out or taken over)."""


class _Held:
    """A lock that cannot be lost while its holder runs (a file lock, or no lock at all)."""

    token = ""

    def check(self) -> None:
        return None


def is_server(location: str) -> bool:
    return location.startswith(("http://", "https://"))


def lock_path(location: str) -> Path | None:
    """The lock file of an embedded store folder; None for a server or in-memory store (no file to lock)."""
    if location == ":memory:" or is_server(location):
        return None
    folder = Path(location)
    return folder.parent / f"{folder.name}.lock"


@contextlib.contextmanager
def writer_lock(
    location: str, wait: bool = False, poll: float = 0.2, collection: str = "", lease: float = LEASE_SECONDS
) -> Iterator[Lease]:
    """Hold the store's writer lock for the block. Another holder raises StoreBusyError naming its pid, or,
    with `wait`, is waited for. On a server the lock is per `collection`; `lease` is how long a server lock
    outlives a holder that stops renewing it."""
    if is_server(location):
        from .store import server_lock

        lock = server_lock(location, collection, lease)
        lock.acquire(wait, poll)
        try:
            yield lock
        finally:
            lock.release()
        return
    path = lock_path(location)
    if path is None:
        yield _Held()
        return
    with _file_lock(path, location, wait, poll):
        yield _Held()


@contextlib.contextmanager
def _file_lock(path: Path, location: str, wait: bool, poll: float) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        while True:
            try:
                fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if not wait:
                    holder = os.pread(descriptor, 32, 0).decode(errors="replace").strip() or "unknown"
                    raise StoreBusyError(busy_message(holder, location)) from None
                time.sleep(poll)
        os.ftruncate(descriptor, 0)
        os.pwrite(descriptor, str(os.getpid()).encode(), 0)
        yield
    finally:
        os.close(descriptor)  # closing releases the lock
