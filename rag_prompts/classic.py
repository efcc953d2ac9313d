"""The classic AutoGen API (AG2): `rag_prompts.agents.classic`, re-exported so `from rag_prompts.classic import
build_agent` keeps working."""

from .agents.classic import build_agent as build_agent
from .agents.classic import register_stored_output_tool as register_stored_output_tool

__all__ = ["build_agent", "register_stored_output_tool"]
