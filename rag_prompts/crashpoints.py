"""Kill points for crash tests: `RAG_PROMPTS_CRASH_AFTER=KIND:N` stops the process (SIGKILL) at the Nth step of
KIND ("write": a store write, "embed": an embedded batch). Inert when the variable is unset."""

from __future__ import annotations

import os
import signal
from collections import Counter

ENV = "RAG_PROMPTS_CRASH_AFTER"
_steps: Counter[str] = Counter()


def step(kind: str) -> None:
    """Count one step of `kind`; kill this process without cleanup when it is the chosen one."""
    spec = os.environ.get(ENV)
    if not spec:
        return
    wanted, _, count = spec.partition(":")
    if wanted != kind:
        return
    _steps[kind] += 1
    if _steps[kind] >= int(count or 1):
        os.kill(os.getpid(), signal.SIGKILL)
