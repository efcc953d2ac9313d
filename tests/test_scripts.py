"""The example scripts run end to end offline on the sample corpus."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from .conftest import CONFIG, CORPUS, ROOT, write


def test_team_example_prints_tokens_and_sections_per_call(tmp_path: Path) -> None:
    text = CONFIG.read_text("utf-8").replace('".rag_prompts/chroma"', f'"{tmp_path / "store"}"')
    config = write(tmp_path / "rag_prompts.toml", text.replace('corpus = ["corpus"]', f'corpus = ["{CORPUS}"]'))
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "team_example.py"), "--config", str(config), "--cases", "2"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    calls = re.findall(
        r"^  (\w+) +(\d+) tokens sent in (\d+) messages \(system message (\d+)/(\d+)\)$", result.stdout, re.M
    )
    assert [name for name, *_ in calls] == ["claims_triage", "compliance_reviewer", "customer_reply"] * 2
    for _, sent, _, system, budget in calls:
        assert int(system) <= int(budget) and int(sent) > int(system)  # the payload adds the conversation
    sections = re.findall(r"^ {23}\d\.\d{3}  (\S+) > ", result.stdout, re.M)
    assert "claims/claims-handling-manual.md" in sections
