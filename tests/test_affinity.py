"""`stay_on_one_core` pins the calling thread and the threads it starts afterwards to one allowed core."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from rag_prompts.affinity import current_cpu

PROBE = """
import json, os, threading
from rag_prompts.affinity import stay_on_one_core
before = os.sched_getaffinity(0)
pinned = stay_on_one_core()
seen = []
worker = threading.Thread(target=lambda: seen.append(os.sched_getaffinity(0)))
worker.start(); worker.join()
print(json.dumps([pinned, sorted(before), sorted(os.sched_getaffinity(0)), sorted(seen[0])]))
"""


@pytest.mark.skipif(not hasattr(os, "sched_getaffinity") or len(os.sched_getaffinity(0)) < 2, reason="one core")
def test_the_process_and_a_thread_it_starts_afterwards_stay_on_one_allowed_core() -> None:
    done = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, check=True)
    pinned, before, after, thread = json.loads(done.stdout)
    assert pinned is True
    assert len(after) == 1 and after[0] in before and thread == after


@pytest.mark.skipif(not os.path.exists("/proc/thread-self/stat"), reason="no /proc")
def test_the_current_cpu_is_one_this_process_may_use() -> None:
    assert current_cpu() in os.sched_getaffinity(0)
