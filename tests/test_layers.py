"""The layering is a contract: `lint-imports` checks the contracts in pyproject.toml ([tool.importlinter])."""

from __future__ import annotations

import os
import subprocess
import sys
import tomllib
from pathlib import Path

from .conftest import ROOT


def test_import_contracts_are_kept() -> None:
    lint_imports = Path(sys.executable).parent / "lint-imports"
    environment = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    result = subprocess.run(
        [str(lint_imports), "--no-cache"], cwd=ROOT, env=environment, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    contracts = tomllib.loads((ROOT / "pyproject.toml").read_text("utf-8"))["tool"]["importlinter"]["contracts"]
    assert len(contracts) >= 7 and f"Contracts: {len(contracts)} kept, 0 broken." in result.stdout
