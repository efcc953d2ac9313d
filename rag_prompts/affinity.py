"""Keeping a process's threads on one CPU core, for work that is a chain of hand-offs between threads.

Chroma's embedded write path passes every SQLite statement from a tokio worker thread to an sqlx worker thread
and back. Spread over two cores, each hand-off is a cross-core wake-up, and those cost more than the statements:
in a copying `rag-prompts compact` of 1,712 chunks about 40% of the CPU samples were the kernel waking threads. On one
core the same hand-offs are cheap. Threads inherit the affinity of the thread that starts them, so this must run
before Chroma starts its threads (before the first client of the process is made).
"""

from __future__ import annotations

import contextlib
import os


def current_cpu() -> int | None:
    """The core this thread is running on now (Linux; None where the system does not say)."""
    with contextlib.suppress(OSError, IndexError, ValueError):
        with open("/proc/thread-self/stat", encoding="ascii") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
        return int(fields[36])  # field 39 of proc(5), counted after the command name's closing parenthesis
    return None


def stay_on_one_core() -> bool:
    """Pin the calling thread (and every thread it starts from now on) to the core it runs on, or to the first it
    may use. Returns whether it pinned; False where the system has no affinity call or allows one core only."""
    if not hasattr(os, "sched_setaffinity"):
        return False
    try:
        allowed = os.sched_getaffinity(0)
        if len(allowed) < 2:
            return False
        cpu = current_cpu()
        os.sched_setaffinity(0, {cpu if cpu in allowed else min(allowed)})
    except OSError:
        return False
    return True
