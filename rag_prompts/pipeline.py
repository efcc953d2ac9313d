"""The library's front door: one object that ingests, searches and composes with one set of settings."""

from __future__ import annotations

import hashlib
import threading
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import replace
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np

from .compose import compose_message
from .config import ResolvedProfile, Settings, load_settings
from .dating import Dating, current_as_of, out_of_force, parse_day, today
from .embed import Embedder, SentenceTransformerEmbedder, embedder_name
from .errors import BudgetError, ConfigError
from .ingest import IngestReport, NeighbourMix, ProgressFn, ingest
from .pins import resolve_pins
from .records import ComposedPrompt, Hit
from .retrieve import Retriever
from .store import ChunkStore, StoreStats, open_store
from .tokens import TokenCounter, token_counter


def candidate_count(k: int, budget: int | None = None) -> int:
    """How many candidates to rank for `k` slots, so chunks that do not fit can be replaced by the next ones.

    A large k is bounded by what the budget can hold (a chunk block costs well over 16 tokens): fetching
    hundreds of candidates for a 2,048-token message costs 30 ms and adds nothing."""
    wanted = k + max(k, 10)
    return wanted if budget is None else min(wanted, budget // 16 + 10)


class Pipeline:
    """Ingest, search and compose. The embedder and store are built lazily from the settings unless passed in."""

    def __init__(
        self,
        settings: Settings | None = None,
        *,
        embedder: Embedder | None = None,
        store: ChunkStore | None = None,
    ) -> None:
        self.settings = settings or load_settings()
        self._embedder = embedder
        self._store = store
        self._lock = threading.RLock()  # agents compose from worker threads; build the model and store once
        self._pins: dict[tuple[Any, ...], tuple[tuple[str, ...], list[Hit]]] = {}  # profile -> (versions, pins)
        self._in_force: tuple[object, date, frozenset[str]] | None = None  # the last answer of `out_of_force`

    @classmethod
    def from_config(cls, path: str | Path | None = None, **overrides: Any) -> Pipeline:
        return cls(load_settings(path, **overrides))

    @property
    def embedder(self) -> Embedder:
        with self._lock:
            if self._embedder is None:
                self._embedder = SentenceTransformerEmbedder(
                    self.settings.embedding_model,
                    self.settings.embedding_device,
                    self.settings.embedding_batch_size,
                    backend=self.settings.embedding_backend,
                    precision=self.settings.embedding_precision,
                )
            return self._embedder

    @property
    def store(self) -> ChunkStore:
        with self._lock:
            if self._store is None:
                model, settings = self._embedder, self.settings  # commands that need no model do not load it
                self._store = open_store(
                    settings.store_location,
                    settings.collection,
                    model.name if model else embedder_name(settings.embedding_model, settings.embedding_precision),
                    model.dimension if model else None,
                    self.settings.cached_chunks,
                )
            return self._store

    @property
    def retriever(self) -> Retriever:
        weights = self.settings
        return Retriever(
            self.store, self.embedder, weights.lexical_weight, weights.region_weight, weights.document_weight,
            weights.centring_weight, weights.focus_weight,
        )  # fmt: skip

    @property
    def counter(self) -> TokenCounter:
        """The counter chunks are sized with (the top-level `model`)."""
        return token_counter(self.settings.model)

    def ingest(
        self,
        paths: Iterable[str | Path] | None = None,
        progress: ProgressFn | None = None,
        on_event: Any = None,
        wait: bool = False,
    ) -> IngestReport:
        """Ingest `paths` (default: the configured corpus folders); `wait` waits for another ingest of the store."""
        targets = list(paths) if paths else self.settings.corpus_paths
        return ingest(
            targets,
            store=self.store,
            embedder=lambda: self.embedder,  # loaded only when something is to be embedded
            counter=self.counter,
            chunk_tokens=self.settings.chunk_tokens,
            neighbours=NeighbourMix(
                self.settings.neighbour_window, self.settings.neighbour_weight, self.settings.block_weight
            ),
            group_chunks=self.settings.ingest_group_chunks,
            progress=progress,
            on_event=on_event,
            wait=wait,
            keep_versions_days=self.settings.keep_versions_days,
        )

    def search(
        self, query: str, k: int | None = None, agent: str | None = None, sources: Sequence[str] = ()
    ) -> list[Hit]:
        profile = self.settings.profile(agent)
        with self.store.one_look():
            return self.retriever.search(query, k or profile.k, profile.tags, sources)

    def compose(
        self,
        task: str,
        agent: str | None = None,
        *,
        k: int | None = None,
        budget: int | None = None,
        base_message: str | None = None,
        tags: Sequence[str] | None = None,
        sources: Sequence[str] = (),
        as_of: str | date | None = None,
    ) -> ComposedPrompt:
        """The system message for `task`: the agent's base message, its pinned sections, then the chunks that fit
        its budget from the documents in force on `as_of` (default: today)."""
        profile = self.settings.profile(
            agent, k=k, budget=budget, base_message=base_message, tags=None if tags is None else tuple(tags)
        )
        return self.compose_for(task, profile, sources, as_of=as_of)

    def compose_for(
        self, task: str, profile: ResolvedProfile, sources: Sequence[str] = (), *, as_of: str | date | None = None
    ) -> ComposedPrompt:
        """The system message for `task` under a resolved profile. A blank task gets the base message and pins.
        `as_of` (else an enclosing `policies_as_of` block, else today) picks the documents in force. Everything
        it reads follows one look at the store's manifest."""
        with self.store.one_look():
            return self._compose_for(task, profile, sources, as_of)

    def _compose_for(
        self, task: str, profile: ResolvedProfile, sources: Sequence[str], as_of: str | date | None
    ) -> ComposedPrompt:
        day = parse_day(as_of) or current_as_of() or today()
        excluded = self.out_of_force(day)
        retriever = self.retriever
        vector = retriever.query_vector(task) if task.strip() else None
        n = candidate_count(profile.k, profile.budget)
        hits = (
            retriever.search(task, n, profile.tags, sources, exclude=excluded, vector=vector)
            if vector is not None
            else []
        )
        pinned = self.pinned(profile)
        try:
            prompt = compose_message(
                profile.base_message,
                hits,
                k=profile.k,
                budget=profile.budget,
                counter=token_counter(profile.model),
                header=self.settings.header,
                merge=self.settings.merge_sections,
                neighbours=self._context_of(vector, hits)
                if self.settings.expand_context and vector is not None
                else None,
                pinned=pinned,
            )
        except BudgetError as error:
            if not pinned:
                raise
            raise ConfigError(
                f"agent {profile.name!r}: pinned {', '.join(map(repr, profile.pinned))} with the base message"
                f" exceed the budget of {profile.budget} tokens ({error}); pin less or raise `budget`"
            ) from error
        task_hash = hashlib.sha256(task.encode("utf-8")).hexdigest()
        return replace(prompt, id=uuid.uuid4().hex, as_of=day.isoformat(), task_sha256=task_hash)

    def out_of_force(self, day: date) -> frozenset[str]:
        """The stored sources not in force on `day` (see `dating`); recomputed only when the store or day changes."""
        records = self.store.committed()
        cached = self._in_force
        if cached is not None and cached[0] is records and cached[1] == day:
            return cached[2]
        datings = (Dating(item.source, item.effective, item.expires, item.superseded_by) for item in records.values())
        excluded = out_of_force(datings, day)
        self._in_force = (records, day, excluded)
        return excluded

    def pinned(self, profile: ResolvedProfile) -> list[Hit]:
        """The profile's pinned chunks (ConfigError naming the agent and pin when one does not resolve)."""
        if not profile.pinned:
            return []
        committed = self.store.committed()
        versions = tuple(
            (record.doc_hash if record else "")
            for record in (committed.get(pin.partition("#")[0].strip()) for pin in profile.pinned)
        )
        key = (profile.name, profile.pinned, profile.tags)
        with self._lock:
            cached = self._pins.get(key)
        if cached is not None and cached[0] == versions:
            return cached[1]
        hits = resolve_pins(self.store, profile.name, profile.pinned, profile.tags)
        with self._lock:
            self._pins[key] = (versions, hits)  # the pinned documents' versions it was resolved at
        return hits

    def check_pins(self, profile: ResolvedProfile) -> None:
        """Resolve the profile's pins and fit them with its base message now: a bad pin fails at load."""
        if profile.pinned:
            self.compose_for("", profile)

    def _context_of(self, vector: np.ndarray, candidates: Sequence[Hit]) -> Callable[[Sequence[Hit]], list[Hit]]:
        """The chunks near packed ones, scored with the task's search `vector`: what a passage can grow into when
        budget is left. Candidates of the search are reused; only the others are fetched (one get by id)."""
        known = {hit.chunk.id: hit for hit in candidates}

        def nearby(packed: Sequence[Hit]) -> list[Hit]:
            wanted = dict.fromkeys(chunk_id for hit in packed for chunk_id in hit.chunk.nearby)
            missing = [chunk_id for chunk_id in wanted if chunk_id not in known]
            fetched = self.store.scored(missing, vector) if missing else []
            return [known[chunk_id] for chunk_id in wanted if chunk_id in known] + fetched

        return nearby

    def stats(self) -> StoreStats:
        return self.store.stats()
