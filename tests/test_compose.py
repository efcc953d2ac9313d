"""The whole composed message never exceeds the budget, for any input."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rag_prompts import BudgetError, Chunk, Hit, TokenCounter
from rag_prompts.compose import Growth, compose_message, neutralise
from rag_prompts.tokens import token_counter


def hit(text: str, score: float = 0.5, section: str = "Doc > Part", source: str = "doc.md", n: int = 0) -> Hit:
    start = 1000 * n  # chunk n sits after chunk n - 1, as in a document
    chunk = Chunk(f"id{n}", source, "/", "Doc", section, start, start + len(text), text, 0, f"c{n}", "d", ordinal=n)
    return Hit(chunk, score)


_hostile = st.sampled_from(
    [
        "<|endoftext|>",
        "<|im_start|>system\n",
        "<|im_end|>",
        "[INST]",
        "<</SYS>>",
        "</policy>",
        "<policy>",
        "<|eot_id|>",
        "\n\nassistant:",
        '"',
        "漢字",
        "🙂",
        "\u200b",
        " ",
        "\n",
        "$7,500",
    ]
)
_chunk_text = st.lists(st.one_of(_hostile, st.text(max_size=30)), min_size=1, max_size=80).map("".join)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    base=st.text(max_size=400),
    texts=st.lists(_chunk_text, max_size=12),
    sections=st.lists(st.text(max_size=40), min_size=12, max_size=12),
    budget=st.one_of(st.integers(min_value=1, max_value=64), st.integers(min_value=64, max_value=4000)),
    k=st.integers(min_value=1, max_value=12),
    merge=st.booleans(),
    expand=st.booleans(),
)
def test_property_message_never_exceeds_budget(
    counter: TokenCounter,
    base: str,
    texts: list[str],
    sections: list[str],
    budget: int,
    k: int,
    merge: bool,
    expand: bool,
) -> None:
    hits = [hit(text, 1.0 - n / 20, sections[n % 3], n=n) for n, text in enumerate(texts)]
    neighbours = (lambda packed: hits) if expand else None
    try:
        prompt = compose_message(base, hits, k=k, budget=budget, counter=counter, merge=merge, neighbours=neighbours)
    except BudgetError:
        assert counter.count(base.strip()) > budget
        return
    assert prompt.tokens == counter.count(prompt.system_message)
    assert prompt.tokens <= budget
    assert sum(not chunk.context for chunk in prompt.chunks) <= k
    assert sorted(item.id for item in [*prompt.chunks, *prompt.dropped]) == sorted(item.chunk.id for item in hits)
    for special in ("<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|eot_id|>", "[INST]", "<</SYS>>"):
        assert special not in prompt.system_message.replace(base.strip(), "", 1)
    blocks = {chunk.source for chunk in prompt.chunks} if merge else prompt.chunks
    assert prompt.system_message.count("</policy>") == len(blocks)
    for included in prompt.chunks:
        assert neutralise(texts[int(included.id[2:])]) in prompt.system_message


def test_base_message_over_budget_is_a_clear_error(counter: TokenCounter) -> None:
    with pytest.raises(BudgetError, match=r"base message alone is \d+ tokens, over the budget of 5"):
        compose_message("You are a very helpful assistant for claims.", [], k=3, budget=5, counter=counter)


def test_chunk_that_does_not_fit_is_skipped_and_the_next_one_tried(counter: TokenCounter) -> None:
    big, small = hit("word " * 400, 0.9, n=1), hit("Handlers approve up to $7,500.", 0.8, n=2)
    prompt = compose_message("Base.", [big, small], k=5, budget=150, counter=counter)
    assert [chunk.id for chunk in prompt.chunks] == ["id2"]
    assert prompt.dropped[0].id == "id1" and prompt.dropped[0].reason.startswith("does not fit")
    assert "$7,500" in prompt.system_message and prompt.tokens <= 150


def test_k_limits_the_number_of_chunks_and_reports_the_rest(counter: TokenCounter) -> None:
    hits = [hit(f"Rule {n}.", 1 - n / 10, n=n) for n in range(5)]
    prompt = compose_message("Base.", hits, k=2, budget=1000, counter=counter)
    assert [chunk.id for chunk in prompt.chunks] == ["id0", "id1"]
    assert [d.reason for d in prompt.dropped] == ["k=2 passages already included"] * 3


def test_message_layout_labels_and_fences_each_chunk(counter: TokenCounter) -> None:
    prompt = compose_message(
        "  Base message.  ",
        [hit("Body <|endoftext|> text", section='A > "B"', source="x/y.md")],
        k=1,
        budget=500,
        counter=counter,
    )
    message = prompt.system_message
    assert message.startswith("Base message.\n\n# Policy excerpts\n")
    assert "<policy source=\"x/y.md\">\n§ A > 'B'\nBody ‹¦endoftext¦› text\n</policy>" in message
    assert prompt.chunks[0].tokens > 0 and prompt.encoding == "cl100k_base"


def test_no_chunks_means_no_header(counter: TokenCounter) -> None:
    prompt = compose_message("Base.", [], k=3, budget=100, counter=counter)
    assert prompt.system_message == "Base." and prompt.chunks == ()


def test_neutralise_keeps_length_so_offsets_stay_valid() -> None:
    text = "a <|im_start|> b [INST] c </s> d </policy> e"
    cleaned = neutralise(text)
    assert len(cleaned) == len(text)
    assert "<|" not in cleaned and "[INST]" not in cleaned and "</policy" not in cleaned


_document_text = st.lists(
    st.one_of(_hostile, st.text(max_size=60), st.sampled_from(["\n\n## Limits\n\n", "\n\n### Deadlines\n\n", ". "])),
    max_size=300,
).map("".join)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    texts=st.lists(_document_text, min_size=1, max_size=4),
    chunk_tokens=st.integers(min_value=16, max_value=300),
    budget=st.integers(min_value=20, max_value=3000),
    k=st.integers(min_value=1, max_value=20),
)
def test_property_random_documents_chunked_and_composed_stay_within_budget(
    counter: TokenCounter, texts: list[str], chunk_tokens: int, budget: int, k: int
) -> None:
    from rag_prompts.chunking import chunk_document
    from rag_prompts.records import Document, Heading

    hits = []
    for number, text in enumerate(texts):
        headings = tuple(
            Heading(2, "Limits", index + 2, index + 13)
            for index in range(len(text))
            if text.startswith("\n\n## Limits\n\n", index)
        )
        document = Document(f"doc{number}.md", "/", f"Doc {number}", text, headings)
        hits += [Hit(chunk, 0.9 - len(hits) / 1000) for chunk in chunk_document(document, counter, chunk_tokens, "h")]
    prompt = compose_message("You are a claims assistant.", hits, k=k, budget=budget, counter=counter)
    assert prompt.tokens == counter.count(prompt.system_message) <= budget
    assert len(prompt.chunks) == min(k, len(prompt.chunks)) and len(prompt.chunks) + len(prompt.dropped) == len(hits)
    assert "<|endoftext|>" not in prompt.system_message and "<|im_start|>" not in prompt.system_message


def test_chunks_of_one_section_share_one_block_in_document_order(counter: TokenCounter) -> None:
    def piece(text: str, start: int, ordinal: int, score: float) -> Hit:
        chunk = Chunk(f"id{ordinal}", "doc.md", "/", "Doc", "Doc > Limits", start, start + len(text), text, 0,
                      f"c{ordinal}", "d", ordinal=ordinal)  # fmt: skip
        return Hit(chunk, score)

    first, second, far = (
        piece("Limit A is $10.", 0, 0, 0.5),
        piece("Limit B is $20.", 16, 1, 0.9),
        piece("Limit Z is $99.", 400, 7, 0.7),
    )
    merged = compose_message("Base.", [second, far, first], k=5, budget=500, counter=counter)
    assert merged.system_message.count("<policy ") == 1
    assert '<policy source="doc.md">\n§ Limits\nLimit A is $10.\nLimit B is $20.\n[…]\nLimit Z is $99.' in (
        merged.system_message
    )
    separate = compose_message("Base.", [second, far, first], k=5, budget=500, counter=counter, merge=False)
    assert separate.system_message.count("<policy ") == 3
    assert merged.tokens < separate.tokens  # the label is paid once


def _paragraphs(scores: list[list[float]]) -> list[Hit]:
    """One document of paragraphs (blocks) of sentences (chunks) with the given scores, in reading order."""
    hits, start = [], 0
    for block, sentence_scores in enumerate(scores):
        for score in sentence_scores:
            n = len(hits)
            text = f"Sentence {n} of paragraph {block} sets one rule."
            chunk = Chunk(f"id{n}", "doc.md", "/", "Doc", "Doc", start, start + len(text), text, 0, f"c{n}", "d",
                          ordinal=n, block=block)  # fmt: skip
            hits.append(Hit(chunk, score))
            start += len(text) + 1
    by_id = {hit.chunk.id: hit for hit in hits}
    for index, hit in enumerate(hits):
        nearby = tuple(other.chunk.id for other in hits if other is not hit and abs(other.chunk.ordinal - index) <= 3)
        by_id[hit.chunk.id] = Hit(replace(hit.chunk, nearby=nearby), hit.score)
    return list(by_id.values())


def _compose_document(document: list[Hit], budget: int, k: int = 20, ranked: int = 6) -> list[str]:
    def neighbours(packed: Sequence[Hit]) -> list[Hit]:
        wanted = {chunk_id for hit in packed for chunk_id in hit.chunk.nearby}
        return [hit for hit in document if hit.chunk.id in wanted]

    best = sorted(document, key=lambda hit: -hit.score)[:ranked]
    prompt = compose_message("Base.", best, k=k, budget=budget, counter=COUNTER, neighbours=neighbours)
    assert prompt.tokens <= budget
    return [chunk.id for chunk in prompt.chunks]


COUNTER = token_counter("gpt-4")


def test_a_paragraph_that_matches_throughout_is_sent_whole_before_the_next_passage() -> None:
    """The search ranked one sentence of paragraph 0 (and one elsewhere); its paragraph mates match as well as the
    next passage does, so the budget buys the whole paragraph first, then the next passage."""
    document = _paragraphs([[0.66, 0.7, 0.65], [0.1, 0.1], [0.1, 0.6, 0.1]])
    ranked = [document[1], document[6]]
    prompt = compose_message("Base.", ranked, k=2, budget=75, counter=COUNTER, neighbours=lambda packed: document)
    assert [chunk.id for chunk in prompt.chunks] == ["id1", "id0", "id2"]  # the paragraph, whole; id6 did not fit
    assert [chunk.context for chunk in prompt.chunks] == [False, True, True]
    roomy = compose_message("Base.", ranked, k=2, budget=105, counter=COUNTER, neighbours=lambda packed: document)
    assert [chunk.id for chunk in roomy.chunks][:4] == ["id1", "id0", "id2", "id6"]  # then growth by score


def test_scattered_matches_get_their_sentences_not_their_paragraphs() -> None:
    """Only one sentence of each paragraph matches: the budget goes to the other matching sentences instead."""
    document = _paragraphs([[0.2, 0.7, 0.2], [0.1, 0.1, 0.68], [0.66, 0.1, 0.1], [0.1, 0.65, 0.1]])
    packed = _compose_document(document, budget=120, ranked=4)
    assert packed[:4] == ["id1", "id5", "id6", "id10"]
    assert not {"id0", "id2", "id3", "id4"} & set(packed[:4])


def test_passages_grow_beyond_their_block_once_the_ranking_is_used_up() -> None:
    document = _paragraphs([[0.2, 0.1], [0.9], [0.3, 0.0]])
    packed = _compose_document(document, budget=4000, k=1)
    assert packed[0] == "id2" and set(packed) == {hit.chunk.id for hit in document}  # grown until whole


def _clause(texts: list[str], scores: list[float], new_line: bool = False) -> list[Hit]:
    """Chunks of one document: the first two one block (a clause), the rest a block each."""
    hits, start = [], 0
    for n, (text, score) in enumerate(zip(texts, scores, strict=True)):
        chunk = Chunk(f"id{n}", "doc.md", "/", "Doc", "Doc", start, start + len(text), text, 0, f"c{n}", "d",
                      ordinal=n, block=max(0, n - 1), new_line=new_line and n == 1)  # fmt: skip
        hits.append(Hit(chunk, score))
        start += len(text) + 1
    return hits


def test_a_sentence_cut_by_a_chunk_boundary_is_completed_before_the_next_passage() -> None:
    """The ranked chunk ends mid-sentence: the rest of its sentence scores low alone but comes before the next
    passage; a block mate after a full stop, or on a new line, waits for its own score."""
    texts = ["Supplier grants Buyer the exclusive right", "to sell the Products in the Territory.", "Fees are due."]

    def placed(document: list[Hit], growth: Growth | None = None, first: int = 0) -> list[str]:
        prompt = compose_message("Base.", [document[first], document[2]], k=2, budget=4000, counter=COUNTER,
                                 neighbours=lambda packed: document, growth=growth or Growth())  # fmt: skip
        return [chunk.id for chunk in prompt.chunks]

    assert placed(_clause(texts, [0.8, 0.1, 0.6])) == ["id0", "id1", "id2"]
    assert placed(_clause(texts, [0.8, 0.1, 0.6]), Growth(continuation=0.0)) == ["id0", "id2", "id1"]
    whole = ["Supplier grants Buyer the exclusive right.", *texts[1:]]
    assert placed(_clause(whole, [0.8, 0.1, 0.6])) == ["id0", "id2", "id1"]
    assert placed(_clause(texts, [0.8, 0.1, 0.6], new_line=True)) == ["id0", "id2", "id1"]
    assert placed(_clause(texts, [0.1, 0.8, 0.6]), first=1) == ["id1", "id0", "id2"]  # the sentence's first part


def test_a_long_numbered_clause_cut_into_pieces_is_completed_before_the_next_passage() -> None:
    """Two pieces of one long clause (each its own block, full stops at the cut): the placed piece's clause mate
    scores low alone but comes before the next passage when the pieces record their clause, not otherwise."""
    texts = ["7. Confidentiality. Recipient keeps the Information secret.", "It returns every copy on request.",
             "Fees are due."]  # fmt: skip

    def placed(clause_blocks: list[int]) -> list[str]:
        document = [Hit(replace(hit.chunk, block=n, clause_block=clause_blocks[n]), hit.score)
                    for n, hit in enumerate(_clause(texts, [0.8, 0.1, 0.6]))]  # fmt: skip
        prompt = compose_message("Base.", [document[0], document[2]], k=2, budget=4000, counter=COUNTER,
                                 neighbours=lambda packed: document)  # fmt: skip
        return [chunk.id for chunk in prompt.chunks]

    assert placed([0, 0, -1]) == ["id0", "id1", "id2"]  # the clause whole, then the next passage
    assert placed([-1, -1, -1]) == ["id0", "id2", "id1"]  # two paragraphs: the next passage first
    assert placed([0, 1, -1]) == ["id0", "id2", "id1"]  # two clauses


def test_without_neighbours_only_ranked_chunks_are_sent() -> None:
    document = _paragraphs([[0.1, 0.9, 0.1], [0.8]])
    prompt = compose_message("Base.", [document[1], document[3]], k=5, budget=4000, counter=COUNTER)
    assert [chunk.id for chunk in prompt.chunks] == ["id1", "id3"]


def test_a_passage_grows_past_the_neighbours_fetched_with_it() -> None:
    """Each chunk lists only 3 neighbours a side; growth fetches the next ones as it reaches them."""
    document = _paragraphs([[0.9]] + [[0.3]] * 11)
    packed = _compose_document(document, budget=4000, k=1, ranked=1)
    assert packed[0] == "id0" and set(packed) == {hit.chunk.id for hit in document}


def test_the_budget_the_parts_overstate_is_packed_too() -> None:
    """Each chunk's cost is an upper bound (joined by a space, a chunk costs less than counted alone), so after
    the pass the whole message is counted and the packing goes on into what it leaves."""
    document = _paragraphs([[0.9 - n / 100 for n in range(12)]])
    whole = compose_message("Base.", document[:1], k=1, budget=4000, counter=COUNTER, neighbours=lambda p: document)
    assert len(whole.chunks) == 12
    budget = whole.tokens + 3  # a few tokens of slack for the last chunk's upper bound
    exact = compose_message("Base.", document[:1], k=1, budget=budget, counter=COUNTER, neighbours=lambda p: document)
    assert len(exact.chunks) == 12 and exact.tokens == whole.tokens
    assert sum(chunk.tokens for chunk in exact.chunks) > budget  # the upper bound alone would have stopped short


def test_adjacent_chunks_carry_the_whitespace_between_them_and_claim_it() -> None:
    """Chunks that follow each other in one section are joined by the document's own whitespace (a paragraph
    break, a double space): the message holds the span from the first to the last verbatim, and the claimed
    offsets cover that whitespace. A chunk after a gap claims only its own text."""
    from rag_prompts.chunking import chunk_document
    from rag_prompts.records import Document

    text = (
        "Claims over 5,000 need a second approver.  Refunds are paid within 10 days.\n\n"
        "Appeals go to the review board.\n   \nThe board answers within 30 days.\n\n"
        + "Filler sentence number one here. " * 12
        + "\n\nLast paragraph about retention of records for seven years."
    )
    chunks = chunk_document(Document("p.txt", "/", "P", text), COUNTER, 12, "d")
    assert [chunk.lead for chunk in chunks][:4] == ["", "  ", "\n\n", "\n   \n"]
    for before, chunk in zip(chunks, chunks[1:], strict=False):
        between = text[before.end : chunk.start]
        assert chunk.lead == (between if not between.strip() else "")
    picked = [*chunks[:4], chunks[-1]]
    prompt = compose_message("Base.", [Hit(chunk, 0.9 - n / 100) for n, chunk in enumerate(picked)], k=5,
                             budget=4000, counter=COUNTER)  # fmt: skip
    assert text[chunks[0].start : chunks[3].end] in prompt.system_message
    claims = {included.id: included for included in prompt.chunks}
    assert [claims[chunk.id].start for chunk in chunks[1:4]] == [chunk.end for chunk in chunks[:3]]
    assert claims[chunks[-1].id].start == chunks[-1].start  # after a gap: its own text only
    for included in prompt.chunks:
        assert neutralise(text[included.start : included.end]) in prompt.system_message
