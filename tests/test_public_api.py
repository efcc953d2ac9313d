"""The public API is exactly what __all__ says, and importing it stays cheap."""

from __future__ import annotations

import subprocess
import sys

import rag_prompts


def test_all_lists_exactly_the_public_names() -> None:
    public = {name for name in vars(rag_prompts) if not name.startswith("_") and name not in {"annotations"}}
    modules = {name for name in public if type(getattr(rag_prompts, name)).__name__ == "module"}
    assert sorted(rag_prompts.__all__) == rag_prompts.__all__
    assert set(rag_prompts.__all__) == public - modules
    for name in rag_prompts.__all__:
        assert getattr(rag_prompts, name) is not None


def test_import_does_not_load_heavy_or_agent_packages() -> None:
    code = (
        "import sys, rag_prompts, rag_prompts.agents, rag_prompts.classic, rag_prompts.agent_framework; "
        "heavy = [m for m in ('sentence_transformers', 'torch', 'chromadb', 'autogen', 'autogen_agentchat',"
        " 'autogen_core', 'autogen_ext', 'agent_framework') if m in sys.modules]; print(heavy)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"
