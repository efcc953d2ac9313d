"""Pinned clauses: first in every message, inside the budget, never twice; bad pins fail when the agent is built."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rag_prompts import ComposedPrompt, ConfigError, Pipeline, load_settings
from rag_prompts.agents.prompter import TaskPrompter
from rag_prompts.compose import neutralise

from .conftest import CONFIG, write

REFERRAL = "claims/special-investigations-referral.md#When a Referral Must Be Made"
DEADLINES = "claims/special-investigations-referral.md#Referral Criteria and Deadlines > Referral Deadlines"
PINS = (REFERRAL, DEADLINES)


def _check(prompt: ComposedPrompt, budget: int, pipeline: Pipeline) -> None:
    """Every pinned chunk is in, ahead of every retrieved one, once; the whole message is within budget."""
    assert prompt.tokens <= budget == prompt.budget
    pinned = [chunk for chunk in prompt.chunks if chunk.pinned]
    sections = {chunk.section.split(" > ")[-1] for chunk in pinned}
    assert sections == {"When a Referral Must Be Made", "Referral Deadlines"}
    assert prompt.chunks[: len(pinned)] == tuple(pinned)  # placed first
    ids = [chunk.id for chunk in prompt.chunks]
    assert len(ids) == len(set(ids))  # a retrieved duplicate is not sent again
    blocks = prompt.system_message.split("\n\n<policy source=")[1:]
    groups = len({chunk.source for chunk in pinned})  # the pinned sources' blocks come first
    head, rest = "".join(blocks[:groups]), "".join(blocks[groups:])
    texts = {chunk.id: neutralise(chunk.text) for chunk in pipeline.store.chunks(ids)}
    assert all(texts[chunk.id] in head for chunk in pinned)
    assert all(texts[chunk.id] in rest for chunk in prompt.chunks if not chunk.pinned)
    assert all(prompt.system_message.count(texts[chunk.id]) == 1 for chunk in pinned)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_pins_are_first_within_budget_and_never_twice(
    data: st.DataObject, tasks: list[dict[str, Any]], corpus_pipeline: Pipeline
) -> None:
    task = data.draw(st.sampled_from(tasks))
    words = data.draw(st.lists(st.sampled_from(task["task"].split()), min_size=0, max_size=30))
    text = data.draw(st.sampled_from([task["task"], " ".join(words)]))
    budget = data.draw(st.integers(min_value=700, max_value=2500))
    k = data.draw(st.integers(min_value=1, max_value=24))
    profile = corpus_pipeline.settings.profile("claims_triage", pinned=PINS, budget=budget, k=k)
    _check(corpus_pipeline.compose_for(text, profile), budget, corpus_pipeline)


def test_a_task_that_retrieves_the_pinned_section_gets_it_once(corpus_pipeline: Pipeline) -> None:
    task = "When must a handler make a referral to the SIU: how many red flags, and above what total incurred?"
    plain = corpus_pipeline.compose(task, agent="claims_triage")
    assert any(chunk.section.endswith("When a Referral Must Be Made") for chunk in plain.chunks)
    profile = corpus_pipeline.settings.profile("claims_triage", pinned=PINS)
    _check(corpus_pipeline.compose_for(task, profile), profile.budget, corpus_pipeline)


def _config(tmp_path: Path, corpus_pipeline: Pipeline, pins: str, budget: int = 1200) -> Path:
    text = CONFIG.read_text("utf-8").replace('".rag_prompts/chroma"', f'"{corpus_pipeline.settings.store_location}"')
    text = text.replace('tags = ["claims"]', f'tags = ["claims"]\npinned = {pins}', 1)
    text = text.replace("budget = 1200", f"budget = {budget}", 1)
    return write(tmp_path / "rag_prompts.toml", text)


def test_pins_from_the_config_reach_every_message(tmp_path: Path, corpus_pipeline: Pipeline) -> None:
    config = _config(tmp_path, corpus_pipeline, f'["{REFERRAL}", "{DEADLINES}"]')
    pipeline = Pipeline(load_settings(config, environ={}), embedder=corpus_pipeline.embedder)
    prompter = TaskPrompter.for_agent("claims_triage", pipeline=pipeline)
    for task in ("", "How fast must a new claim be acknowledged?"):
        _check(prompter.prompt_for(task), 1200, pipeline)


@pytest.mark.parametrize(
    ("pins", "budget", "message"),
    [
        (
            '["claims/special-investigations-referral.md#No Such Heading"]', 1200,
            "agent 'claims_triage': pin 'claims/special-investigations-referral.md#No Such Heading':"
            " claims/special-investigations-referral.md has no section 'No Such Heading'; its sections: ",
        ),
        (
            '["claims/missing.md#Anything"]', 1200,
            "agent 'claims_triage': pin 'claims/missing.md#Anything': no document 'claims/missing.md' in the store",
        ),
        (
            '["compliance/complaints-handling.md#Definition"]', 1200,
            "agent 'claims_triage': pin 'compliance/complaints-handling.md#Definition':"
            " compliance/complaints-handling.md carries tags",
        ),
        (
            f'["{REFERRAL}", "{DEADLINES}"]', 120,
            f"agent 'claims_triage': pinned '{REFERRAL}', '{DEADLINES}' with the base message exceed the budget of 120",
        ),
    ],
)  # fmt: skip
def test_a_bad_pin_fails_when_the_agent_is_built(
    tmp_path: Path, corpus_pipeline: Pipeline, pins: str, budget: int, message: str
) -> None:
    config = _config(tmp_path, corpus_pipeline, pins, budget)
    pipeline = Pipeline(load_settings(config, environ={}), embedder=corpus_pipeline.embedder)
    with pytest.raises(ConfigError) as error:
        TaskPrompter.for_agent("claims_triage", pipeline=pipeline)
    assert str(error.value).startswith(message) and "\n" not in str(error.value)


def test_a_pin_without_a_section_is_refused_at_load(tmp_path: Path, corpus_pipeline: Pipeline) -> None:
    config = _config(tmp_path, corpus_pipeline, '["claims/special-investigations-referral.md"]')
    with pytest.raises(ConfigError) as error:
        load_settings(config, environ={})
    assert str(error.value) == (
        f"{config}: agents.claims_triage.pinned: Value error, pin 'claims/special-investigations-referral.md':"
        " write it as 'folder/file.md#Section heading'"
    )
