"""The GPU device check (scripts/device_check.py) on a real GPU: ingest on the GPU stores the vectors ingest on the
CPU stores (cosine >= 0.999 per chunk, same ids, texts, fields and records) and composes the same prompts.
Skipped where torch sees no CUDA device."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import ROOT

torch = pytest.importorskip("torch")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device (the device check needs a GPU)")
def test_ingest_on_the_gpu_agrees_with_ingest_on_the_cpu(tmp_path: Path) -> None:
    report = tmp_path / "device.json"
    command = [sys.executable, str(ROOT / "scripts" / "device_check.py"), "--json", str(report)]
    done = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, timeout=1800)
    assert done.returncode == 0, done.stdout + done.stderr[-3000:]
    result = json.loads(report.read_text("utf-8"))
    figures = result["figures"]
    assert result["failures"] == []
    assert figures["gpu"]["embedder_device"].startswith("cuda") and figures["gpu"]["backend"] == "torch"
    assert figures["chunks"] > 1000 and figures["cosine_min"] >= 0.999
    assert figures["tasks"] > 50 and figures["tasks_same_chunks"] >= 0.9 * figures["tasks"]
