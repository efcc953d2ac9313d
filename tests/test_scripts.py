"""The example scripts run end to end offline on the sample corpus."""

from __future__ import annotations

import re
from pathlib import Path

from .conftest import run_team_example


def test_team_example_prints_tokens_and_sections_per_call(tmp_path: Path) -> None:
    stdout, calls = run_team_example(tmp_path, "team_example.py")
    assert [name for name, *_ in calls] == ["claims_triage", "compliance_reviewer", "customer_reply"] * 2
    for _, sent, _, system, budget in calls:
        assert int(system) <= int(budget) and int(sent) > int(system)  # the payload adds the conversation
    sections = re.findall(r"^ {23}\d\.\d{3}  (\S+) > ", stdout, re.M)
    assert "claims/claims-handling-manual.md" in sections
