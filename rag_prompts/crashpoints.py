"""Kill points for crash tests: `RAG_PROMPTS_CRASH_AFTER=KIND:N` stops the process (SIGKILL) right after the Nth
step of KIND. Kinds: "embed" (a batch embedded), "write" (a batch of chunks written), "commit" (a manifest
write), "delete" (a batch of chunks deleted), "copy" (a page copied by compact), "switch" (compact switched
readers to the copy), "fenced" (a writer found its lock still held: an ingest just before a manifest write or
a deletion batch, compact before each page it copies, its switch and its drop).
`KIND:N:stop` stops the process (SIGSTOP, as if it stalled) instead of killing it. The value "trace" prints
every step to stderr instead. Inert when the variable is unset."""

from __future__ import annotations

import os
import signal
import sys
from collections import Counter

ENV = "RAG_PROMPTS_CRASH_AFTER"
_steps: Counter[str] = Counter()


def step(kind: str) -> None:
    """Count one step of `kind`; kill this process without cleanup when it is the chosen one."""
    spec = os.environ.get(ENV)
    if not spec:
        return
    wanted, _, rest = spec.partition(":")
    count, _, action = rest.partition(":")
    if wanted == "trace":
        _steps[kind] += 1
        print(f"crashpoint {kind}:{_steps[kind]}", file=sys.stderr, flush=True)
        return
    if wanted != kind:
        return
    _steps[kind] += 1
    if _steps[kind] == int(count or 1) and action == "stop":
        os.kill(os.getpid(), signal.SIGSTOP)
    elif _steps[kind] >= int(count or 1) and action != "stop":
        os.kill(os.getpid(), signal.SIGKILL)
