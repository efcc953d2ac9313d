"""One writer per embedded store: a lock file beside the store folder holds the writing process's id."""

from __future__ import annotations

import contextlib
import fcntl
import os
import time
from collections.abc import Iterator
from pathlib import Path

from .errors import StoreBusyError


def lock_path(location: str) -> Path | None:
    """The lock file of an embedded store folder; None for a server or in-memory store (nothing to lock here)."""
    if location == ":memory:" or location.startswith(("http://", "https://")):
        return None
    folder = Path(location)
    return folder.parent / f"{folder.name}.lock"


@contextlib.contextmanager
def writer_lock(location: str, wait: bool = False, poll: float = 0.2) -> Iterator[None]:
    """Hold the store's writer lock for the block. Another holder raises StoreBusyError naming its pid, or,
    with `wait`, is waited for. The operating system releases the lock when a process dies, however it dies."""
    path = lock_path(location)
    if path is None:
        yield
        return
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
                    raise StoreBusyError(
                        f"another ingest is running (pid {holder}) on the store at {location};"
                        " wait for it to finish, or pass --wait"
                    ) from None
                time.sleep(poll)
        os.ftruncate(descriptor, 0)
        os.pwrite(descriptor, str(os.getpid()).encode(), 0)
        yield
    finally:
        os.close(descriptor)  # closing releases the lock
