"""One writer per collection of a Chroma server: the lock is a record kept in the server itself.

A lock file cannot work across machines, so the writer's lock is a small, empty collection named
`COLLECTION.writer` whose metadata names its holder (pid, host, a random token) and when its lease ends.
Creating a collection whose name exists fails inside the server's catalogue (a unique name, checked and
written in one transaction), so of any number of processes creating it at once exactly one succeeds: that
create is the compare-and-set. The holder renews the lease from a background thread; a lock whose lease has
run out (its holder's machine died or lost the server), or whose holder is a dead process on this host, is
broken by renaming it by its id (which moves only that record, never a newer lock taken meanwhile) and
deleting it. Leases compare wall clocks, so the machines' clocks must agree to within a few seconds.

This module works on a client handle and never imports chromadb (see `store.server_lock`).
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

from .errors import StoreBusyError, StoreError

LEASE_SECONDS = 30.0  # a lock not renewed for this long is taken to be abandoned
RENEW_FRACTION = 1 / 6  # renewed this often, as a share of the lease
_KIND = "rag_prompts_writer_lock"


def lock_name(collection: str) -> str:
    return f"{collection[:480]}.writer"


def busy_message(holder: str, location: str) -> str:
    """The one line every kind of store says when another process holds its writer lock."""
    return f"another ingest is running (pid {holder}) on the store at {location}; wait for it to finish, or pass --wait"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: it exists
        return True
    return True


class ServerLock:
    """The writer lock of one collection on a Chroma server (see the module docstring)."""

    def __init__(
        self,
        client: Any,
        collection: str,
        location: str,
        missing: type[Exception],
        lease: float = LEASE_SECONDS,
        on_break: Callable[[str], None] = lambda token: None,
    ) -> None:
        self._client, self._location, self._missing, self._lease = client, location, missing, lease
        self.name = lock_name(collection)
        self._token = uuid.uuid4().hex
        self._on_break = on_break  # told the token of each abandoned lock broken (see `manifest.revoke`)
        self._held_until = 0.0  # when the lease last written by this holder runs out
        self._host = socket.gethostname()
        self._handle: Any = None
        self._stop = threading.Event()
        self._renewer: threading.Thread | None = None
        self._lost: str | None = None

    @property
    def token(self) -> str:
        """This holder's token: the manifest records it writes carry it."""
        return self._token

    def _metadata(self) -> dict[str, Any]:
        return {
            "kind": _KIND, "pid": os.getpid(), "host": self._host, "token": self._token,
            "expires": time.time() + self._lease,
        }  # fmt: skip

    def _fail(self, doing: str, error: Exception) -> StoreError:
        detail = " ".join(str(error).split())
        return StoreError(f"{doing} the writer lock at {self._location} failed: {type(error).__name__}: {detail}")

    def acquire(self, wait: bool = False, poll: float = 0.2) -> None:
        """Take the lock, or raise StoreBusyError naming its holder; with `wait`, wait for it."""
        while True:
            try:
                metadata = self._metadata()
                self._handle = self._client.create_collection(self.name, metadata=metadata, embedding_function=None)
                self._held_until = float(metadata["expires"])
            except Exception as error:  # noqa: BLE001 - the name exists, or the server failed: the read tells
                holder = self._holder(error)
                if holder is None:
                    continue  # released or broken meanwhile: try again at once
                if not wait:
                    raise StoreBusyError(busy_message(holder, self._location)) from None
                time.sleep(poll)
                continue
            self._renewer = threading.Thread(target=self._renew, name="rag-prompts-writer-lock", daemon=True)
            self._renewer.start()
            return

    def _holder(self, create_error: Exception) -> str | None:
        """Who holds the lock ("pid" or "pid on host"), or None once an abandoned lock has been broken."""
        try:
            handle = self._client.get_collection(self.name, embedding_function=None)
        except self._missing:
            return None
        except Exception as error:
            raise self._fail("taking", create_error) from error
        metadata = dict(handle.metadata or {})
        pid, host = int(metadata.get("pid", 0) or 0), str(metadata.get("host", ""))
        expired = float(metadata.get("expires", 0.0) or 0.0) < time.time()
        dead_here = host == self._host and pid > 0 and not _alive(pid)
        if expired or dead_here:
            if self._break(handle) and metadata.get("token"):
                try:
                    self._on_break(str(metadata["token"]))
                except Exception as error:
                    raise self._fail("revoking the writes of an abandoned", error) from error
            return None
        return str(pid or "unknown") + ("" if host == self._host else f" on {host}")

    def _break(self, handle: Any) -> bool:
        """Remove an abandoned lock: rename it by id (a newer lock is never touched), then delete the copy.
        False when another process broke it first."""
        aside = f"{self.name}-{uuid.uuid4().hex[:8]}"
        try:
            handle.modify(name=aside)
        except self._missing:
            return False
        except Exception as error:
            raise self._fail("breaking an abandoned", error) from error
        with contextlib.suppress(Exception):  # a leftover renamed record harms nothing
            self._client.delete_collection(aside)
        return True

    def _renew(self) -> None:
        interval = self._lease * RENEW_FRACTION
        while not self._stop.wait(interval):
            try:
                current = self._client.get_collection(self.name, embedding_function=None)
                if current.id != self._handle.id:
                    self._lost = str((current.metadata or {}).get("pid", "unknown"))
                    return
                metadata = self._metadata()
                self._handle.modify(metadata=metadata)
                self._held_until = float(metadata["expires"])
            except self._missing:
                self._lost = "unknown"
                return
            except Exception:  # noqa: BLE001 - the server is unreachable for now: the writes will say so
                continue

    def check(self) -> None:
        """Raise StoreBusyError if the lock is no longer ours (another writer took it) or may be taken any
        moment (its lease ran out: renewals failed, or this process stalled). One small read; the ingest calls
        it before each manifest write and each chunk deletion, compact before its switch."""
        if self._lost is None and self._handle is not None:
            try:
                current = self._client.get_collection(self.name, embedding_function=None)
            except self._missing:
                self._lost = "unknown"
            except Exception:  # noqa: BLE001 - the server is unreachable: the lease below, or the write, says so
                pass
            else:
                if current.id != self._handle.id:
                    self._lost = str((current.metadata or {}).get("pid", "unknown"))
        if self._lost is not None:
            raise StoreBusyError(
                f"the writer lock on the store at {self._location} was taken over (pid {self._lost}) after its"
                " lease ran out; this ingest stopped, and a rerun finishes it"
            )
        if self._handle is not None and time.time() >= self._held_until:
            raise StoreBusyError(
                f"the writer lock on the store at {self._location} ran out of lease (not renewed for"
                f" {self._lease:g} s), so another writer may take it; this ingest stopped, and a rerun finishes it"
            )

    def release(self) -> None:
        """Give the lock up: rename our record by id, then delete it, so a lock taken over is left alone."""
        self._stop.set()
        if self._renewer is not None:
            self._renewer.join()
        if self._handle is None or self._lost is not None:
            return
        with contextlib.suppress(StoreError):  # the server is gone: the lease runs out on its own
            self._break(self._handle)
        self._handle = None
