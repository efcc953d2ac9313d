"""What users would otherwise do, composed under the same budget and scored the same way.

- `WholeDocument`: the query's document pasted into the system message and cut at the budget.
- `FixedChunksDense`: fixed 500-character chunks, dense top-k packed greedily (the LegalBench-RAG setup).
- `RecursiveSplitterDense`: LangChain's `RecursiveCharacterTextSplitter` (500 characters, no overlap), dense top-k,
  the chunk texts alone packed greedily after the base message and header: the pipeline a LangChain tutorial gives
  (needs `langchain-text-splitters`: pip install 'rag-prompts[eval]').
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from ..compose import BLOCK_SEPARATOR, compose_message, neutralise, render_block
from ..embed import Embedder
from ..errors import ConfigError
from ..records import Chunk, Document, Hit
from ..templates import packaged_prompt
from ..tokens import TokenCounter
from .dataset import Query, doc_id_of
from .metrics import Span

FIXED_CHUNK_CHARS = 500
RECURSIVE_CHUNK_CHARS = 500


def _documents_for(query: Query, documents: Mapping[str, Document]) -> list[Document]:
    """The query's document (its `doc_id`, else the dataset's `target_doc_id`), else every document."""
    wanted = query.doc_id or query.target_doc_id
    if wanted is not None and wanted in documents:
        return [documents[wanted]]
    return list(documents.values())


class WholeDocument:
    name = "whole document, cut at the budget"

    def __init__(self, documents: Mapping[str, Document], counter: TokenCounter, header: str) -> None:
        self.documents = documents
        self.counter = counter
        self.header = header

    def compose(self, query: Query, base_message: str, budget: int) -> tuple[str, list[Span]]:
        """The message and the document spans it carries."""
        message = base_message.strip()
        spans: list[Span] = []
        template = packaged_prompt("chunk")
        for position, document in enumerate(_documents_for(query, self.documents)):
            prefix = message + (BLOCK_SEPARATOR + self.header.strip() if position == 0 else "") + BLOCK_SEPARATOR
            room = budget - self.counter.count(prefix + render_block([_whole(document, 0)], template))
            end = 0
            while room > 0:  # the longest prefix whose block fits; shrink if the whole counts above its parts
                end = len(self.counter.truncate(document.text, room))
                if self.counter.count(prefix + render_block([_whole(document, end)], template)) <= budget:
                    break
                room -= 1
            if room <= 0 or end == 0:
                break
            message = prefix + render_block([_whole(document, end)], template)
            spans.append((doc_id_of(document.source), 0, end))
        return message, spans


def _whole(document: Document, end: int) -> Hit:
    chunk = Chunk("whole", document.source, document.root, document.title, document.title, 0, end,
                  document.text[:end], 0, "", "")  # fmt: skip
    return Hit(chunk, 1.0)


class FixedChunksDense:
    name = f"{FIXED_CHUNK_CHARS}-char chunks, dense top-k"

    def __init__(self, documents: Mapping[str, Document], embedder: Embedder, counter: TokenCounter) -> None:
        self.counter = counter
        self.embedder = embedder
        self.chunks: list[Chunk] = []
        for doc_id, document in documents.items():
            for number, start in enumerate(range(0, len(document.text), FIXED_CHUNK_CHARS)):
                text = document.text[start : start + FIXED_CHUNK_CHARS]
                self.chunks.append(
                    Chunk(
                        f"{doc_id}:{number}",
                        document.source,
                        document.root,
                        document.title,
                        document.title,
                        start,
                        start + len(text),
                        text,
                        0,
                        "",
                        "",
                    )  # fmt: skip
                )
        self.doc_ids = np.array([doc_id_of(chunk.source) for chunk in self.chunks])
        self.vectors = embedder.embed([chunk.text for chunk in self.chunks])

    def compose(self, query: Query, base_message: str, budget: int, header: str) -> tuple[str, list[Span]]:
        scores = self.vectors @ self.embedder.embed_query(query.query)
        if query.doc_id is not None:
            scores = np.where(self.doc_ids == query.doc_id, scores, -np.inf)
        order = [int(i) for i in np.argsort(-scores)[:200] if np.isfinite(scores[i])]
        hits = [Hit(self.chunks[i], float(scores[i])) for i in order]
        prompt = compose_message(
            base_message, hits, k=len(hits) or 1, budget=budget, counter=self.counter, header=header, merge=False
        )
        return prompt.system_message, [(doc_id_of(chunk.source), chunk.start, chunk.end) for chunk in prompt.chunks]


class RecursiveSplitterDense:
    name = f"{RECURSIVE_CHUNK_CHARS}-char recursive splitter, dense top-k"

    def __init__(self, documents: Mapping[str, Document], embedder: Embedder, counter: TokenCounter) -> None:
        try:
            from langchain_text_splitters import RecursiveCharacterTextSplitter
        except ImportError as error:
            raise ConfigError(
                "the recursive-splitter baseline needs langchain-text-splitters:"
                " pip install 'rag-prompts[eval]' (or run the eval without baselines)"
            ) from error

        splitter = RecursiveCharacterTextSplitter(
            chunk_size=RECURSIVE_CHUNK_CHARS, chunk_overlap=0, add_start_index=True
        )
        self.counter = counter
        self.embedder = embedder
        self.spans: list[Span] = []
        self.texts: list[str] = []
        for doc_id, document in documents.items():
            for piece in splitter.create_documents([document.text]):
                start = int(piece.metadata["start_index"])
                self.spans.append((doc_id, start, start + len(piece.page_content)))
                self.texts.append(piece.page_content)
        self.doc_ids = np.array([doc_id for doc_id, _, _ in self.spans])
        self.tokens = [counter.count(BLOCK_SEPARATOR + text) for text in self.texts]
        self.vectors = embedder.embed(self.texts)

    def compose(self, query: Query, base_message: str, budget: int, header: str) -> tuple[str, list[Span]]:
        """Best chunks first, each that fits after the base message and header, as plain text."""
        scores = self.vectors @ self.embedder.embed_query(query.query)
        if query.doc_id is not None:
            scores = np.where(self.doc_ids == query.doc_id, scores, -np.inf)
        prefix = base_message.strip() + BLOCK_SEPARATOR + header.strip()
        used, picked = self.counter.count(prefix), []
        for index in (int(i) for i in np.argsort(-scores)):
            if not np.isfinite(scores[index]) or used >= budget:
                break
            if used + self.tokens[index] <= budget:
                picked.append(index)
                used += self.tokens[index]
        while True:  # should the whole count above its parts, drop the last chunk and recount
            message = prefix + "".join(BLOCK_SEPARATOR + self.texts[index] for index in picked)
            if not picked or self.counter.count(message) <= budget:
                break
            picked.pop()
        return message, [self.spans[index] for index in picked]


def injected_text_matches(message: str, documents: Mapping[str, Document], spans: Sequence[Span]) -> bool:
    """Whether every claimed span's text (neutralised as composed) appears in the message."""
    return all(neutralise(documents[doc_id].text[start:end]) in message for doc_id, start, end in spans)
