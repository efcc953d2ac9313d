"""Composing for the sample tasks picks the sections they need, within each agent's budget and tags."""

from __future__ import annotations

from typing import Any

from rag_prompts import ComposedPrompt, Pipeline


def has_needed_section(prompt: ComposedPrompt, task: dict[str, Any]) -> bool:
    return any(
        chunk.source == need["source"]
        and (chunk.section == need["section"] or chunk.section.startswith(need["section"] + " > "))
        for chunk in prompt.chunks
        for need in task["needs"]
    )


def test_sample_tasks_cover_every_agent_and_are_well_formed(
    tasks: list[dict[str, Any]], corpus_pipeline: Pipeline
) -> None:
    assert len(tasks) >= 40
    assert {task["agent"] for task in tasks} <= set(corpus_pipeline.settings.agents)
    assert len({task["agent"] for task in tasks}) >= 3
    stored = corpus_pipeline.store.documents()
    sections = {c.section for entry in stored.values() for c in corpus_pipeline.store.chunks(entry.chunk_ids)}
    for task in tasks:
        for need in task["needs"]:
            assert need["source"] in stored, task["id"]
            assert any(s == need["section"] or s.startswith(need["section"] + " > ") for s in sections), task["id"]


def test_clear_cut_tasks_get_their_section_within_budget(
    tasks: list[dict[str, Any]], corpus_pipeline: Pipeline
) -> None:
    clear = [task for task in tasks if task["clear_cut"]]
    found = []
    for task in clear:
        prompt = corpus_pipeline.compose(task["task"], agent=task["agent"], as_of=task.get("as_of"))
        profile = corpus_pipeline.settings.profile(task["agent"])
        assert prompt.tokens <= profile.budget == prompt.budget
        assert sum(not chunk.context for chunk in prompt.chunks) <= profile.k
        found.append(has_needed_section(prompt, task))
    share = sum(found) / len(found)
    print(f"clear-cut tasks with their needed section: {sum(found)}/{len(found)} = {share:.2%}")
    assert share >= 0.85


def test_look_alike_limits_are_not_confused(corpus_pipeline: Pipeline) -> None:
    prompt = corpus_pipeline.compose(
        "A burst pipe claim was assessed at $42,000. As a Senior Claims Handler, can I approve the payment myself?",
        agent="claims_triage",
    )
    sections = [chunk.section for chunk in prompt.chunks]
    normal = "Claims Handling Manual > Payment Approval Authority > Payment Authority by Role"
    catastrophe = (
        "Catastrophe Response Procedure > 5. Temporary Increased Authority Limits > 5.1 Catastrophe Authority Table"
    )
    assert normal in sections
    assert catastrophe not in sections or sections.index(normal) < sections.index(catastrophe)


def test_agents_only_see_chunks_with_their_tags(tasks: list[dict[str, Any]], corpus_pipeline: Pipeline) -> None:
    for agent in corpus_pipeline.settings.agents:
        tags = set(corpus_pipeline.settings.profile(agent).tags)
        for task in tasks[::3]:  # every agent gets other agents' tasks too
            for hit in corpus_pipeline.search(task["task"], k=8, agent=agent):
                assert tags & set(hit.chunk.tags), (agent, hit.chunk.source)


def test_compose_reports_chunk_offsets_into_the_document(corpus_pipeline: Pipeline) -> None:
    from rag_prompts.compose import neutralise
    from rag_prompts.loaders import load_document

    prompt = corpus_pipeline.compose("How long are call recordings kept?", agent="compliance_reviewer")
    root = corpus_pipeline.settings.corpus_paths[0]
    assert any(chunk.source.endswith(".html") for chunk in prompt.chunks)  # the retention schedule is HTML
    for chunk in prompt.chunks:
        text = load_document(root / chunk.source, root).text  # for .md/.txt this is the file's own text
        assert 0 <= chunk.start < chunk.end <= len(text)
        assert neutralise(text[chunk.start : chunk.end]) in prompt.system_message
    assert {"id", "source", "section", "start", "end", "score", "tokens"} <= set(vars(prompt.chunks[0]))
