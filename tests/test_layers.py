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


def test_the_readme_layout_names_every_module_and_only_those() -> None:
    text = (ROOT / "README.md").read_text("utf-8")
    block = text[text.index("```\nrag_prompts/\n") :].split("```")[1]
    named: set[str] = set()
    folder = ""
    for line in block.splitlines()[2:]:  # after "rag_prompts/": one line per module, sub-packages indented
        name = line.split()[0]
        if not line.startswith("    "):
            folder = name if name.endswith("/") else ""
        if name.endswith(".py"):
            named.add(folder + name if line.startswith("    ") else name)
    package = ROOT / "rag_prompts"
    modules = {str(path.relative_to(package)) for path in package.rglob("*.py")}
    assert named == modules
