"""The three agent faces are one builder: the same keywords, the same description rule, the same on_call."""

from __future__ import annotations

import asyncio
import inspect
from typing import Any

from autogen_agentchat.messages import TextMessage
from autogen_ext.models.replay import ReplayChatCompletionClient

from rag_prompts import Pipeline, build_agent
from rag_prompts.agent_framework import build_agent as build_af_agent
from rag_prompts.agents import AgentBuilder
from rag_prompts.agents.agent_framework import ReplayChatClient
from rag_prompts.classic import build_agent as build_classic_agent

from .test_classic import LLM_CONFIG

FACES = {"agentchat": build_agent, "classic": build_classic_agent, "agent_framework": build_af_agent}


def test_every_face_is_the_shared_builder_with_the_same_keywords() -> None:
    assert all(isinstance(face, AgentBuilder) for face in FACES.values())
    signatures = {name: inspect.signature(face) for name, face in FACES.items()}
    assert len(set(signatures.values())) == 1
    keywords = list(signatures["agentchat"].parameters)
    assert keywords[:2] == ["name", "client"] and {"on_call", "summariser", "task", "agent_kwargs"} <= set(keywords)
    assert all(face.__doc__ and face.__doc__.startswith("`build_agent(name, ") for face in FACES.values())


def test_every_face_describes_the_agent_by_its_base_messages_first_sentence(corpus_pipeline: Pipeline) -> None:
    base = "Check the case against policy. Cite every rule."
    clients: dict[str, Any] = {
        "agentchat": ReplayChatCompletionClient(["ok"]),
        "classic": LLM_CONFIG,
        "agent_framework": ReplayChatClient(["ok"]),
    }
    for name, face in FACES.items():
        agent = face("compliance_reviewer", clients[name], pipeline=corpus_pipeline, base_message=base)
        assert agent.description == "Check the case against policy.", name
        chosen = face("compliance_reviewer", clients[name], pipeline=corpus_pipeline, description="Reviewer.")
        assert chosen.description == "Reviewer.", name


def test_the_agentchat_face_hands_on_call_the_record_the_log_writes(corpus_pipeline: Pipeline) -> None:
    records: list[Any] = []
    agent = build_agent("claims_triage", ReplayChatCompletionClient(["ok"]), pipeline=corpus_pipeline,
                        on_call=records.append)  # fmt: skip
    asyncio.run(agent.run(task=TextMessage(content="Who approves a $26,400 claim?", source="user")))
    (record,) = records
    row = record.row()
    assert row["agent"] == "claims_triage" and row["total"] == record.tokens and row["call"] == 1
    assert sum(row["tokens"].values()) + 3 == record.tokens and row["messages"] == {"system": 1, "user": 1}
