"""The public API is exactly what __all__ says, and importing it stays cheap."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
import typing
from typing import Any

import pydantic

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


def _types_in(annotation: Any) -> set[type]:
    """The classes an annotation names, through unions, generics and callables."""
    found: set[type] = set()
    stack = [annotation]
    while stack:
        current = stack.pop()
        if isinstance(current, list):
            stack.extend(current)
            continue
        if isinstance(current, type):
            found.add(current)
        stack.extend(typing.get_args(current))
    return {kind for kind in found if kind.__module__.startswith("rag_prompts")}


def _signature_types(function: Any, leave_out: frozenset[str] = frozenset()) -> set[type]:
    hints = typing.get_type_hints(function)
    return set().union(*(_types_in(hint) for name, hint in hints.items() if name not in leave_out))


def _fields(kind: type) -> set[type]:
    if dataclasses.is_dataclass(kind):
        return set().union(set(), *(_types_in(hint) for hint in typing.get_type_hints(kind).values()))
    if isinstance(kind, type) and issubclass(kind, pydantic.BaseModel):
        return set().union(set(), *(_types_in(field.annotation) for field in kind.model_fields.values()))
    return set()


def test_all_is_the_front_door_the_types_it_takes_and_returns_and_the_errors() -> None:
    """What the front door (Pipeline, build_agent, load_settings, token_counter, Settings.profile) takes and
    returns is exported; every exported class is one of those, a record they hold, or an error. A summariser's
    `Item` is in `rag_prompts.payload`, with the rest of the payload guard."""
    pipeline = rag_prompts.Pipeline
    direct = _signature_types(type(rag_prompts.build_agent).__call__, frozenset({"summariser"}))
    direct |= _signature_types(rag_prompts.Settings.profile) | _signature_types(rag_prompts.load_settings)
    direct |= _signature_types(rag_prompts.token_counter) | _signature_types(pipeline.__init__)
    for name, member in vars(pipeline).items():
        if not name.startswith("_"):
            function = member.fget if isinstance(member, property) else getattr(member, "__func__", member)
            direct |= _signature_types(function)
    exported = {getattr(rag_prompts, name) for name in rag_prompts.__all__}
    assert direct - {type(rag_prompts.build_agent)} <= exported
    assert {rag_prompts.ResolvedProfile, rag_prompts.StoreStats, rag_prompts.IngestReport} <= direct
    reachable = direct | set().union(*(_fields(kind) for kind in direct))
    reachable |= set().union(*(_fields(kind) for kind in reachable))
    functions = {rag_prompts.build_agent, rag_prompts.load_settings, rag_prompts.token_counter}
    functions.add(rag_prompts.SentenceTransformerEmbedder)  # the `Embedder` a Pipeline builds unless given one
    errors = {kind for kind in exported if isinstance(kind, type) and issubclass(kind, rag_prompts.RagPromptsError)}
    assert exported - functions - errors <= reachable, exported - functions - errors - reachable
    for internal in ("Item", "HistoryGuard", "open_store", "chunk_document", "compose_message", "PayloadRecord"):
        assert not hasattr(rag_prompts, internal), internal
