"""The eval harness: compose one system message per labelled query and budget, score the injected characters.

Our pipeline and the baselines share the base message, the header, the token counter and the scorer, so the only
difference between them is which text they put in the budget.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from ..loaders import load_document
from ..pipeline import Pipeline
from ..templates import packaged_prompt
from .baselines import FixedChunksDense, RecursiveSplitterDense, WholeDocument
from .dataset import Dataset, Query, doc_id_of, restriction, sources_by_doc_id
from .metrics import QueryScore, Span, score_query

DEFAULT_BUDGETS = (256, 512, 1024, 2048)
OURS = "rag-prompts"

Progress = Callable[[str, int, int], None]


@dataclass
class MethodResult:
    """Averages over the queries for one method at one budget."""

    method: str
    budget: int
    recall: float
    precision: float
    hit: float
    tokens_mean: float
    tokens_max: int
    within_budget: float  # share of messages at or under the budget
    latency_p50_ms: float | None = None  # warm compose: the query vector is cached (embedding is timed apart)
    latency_p95_ms: float | None = None


@dataclass
class EvalReport:
    dataset: str
    queries: int
    settings: dict[str, Any]
    results: list[MethodResult] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def rows(self) -> list[tuple[Any, ...]]:
        return [
            (r.method, r.budget, f"{r.recall:.3f}", f"{r.precision:.3f}", f"{r.hit:.3f}", f"{r.tokens_mean:.0f}",
             r.tokens_max, f"{r.within_budget:.0%}",
             "" if r.latency_p50_ms is None else f"{r.latency_p50_ms:.1f} / {r.latency_p95_ms:.1f}")
            for r in self.results
        ]  # fmt: skip

    HEADERS = ("method", "budget", "recall", "precision", "hit", "tokens", "max", "in budget", "ms p50 / p95")


class _Tally:
    def __init__(self) -> None:
        self.scores: list[QueryScore] = []
        self.tokens: list[int] = []
        self.seconds: list[float] = []

    def add(self, score: QueryScore, tokens: int, seconds: float | None = None) -> None:
        self.scores.append(score)
        self.tokens.append(tokens)
        if seconds is not None:
            self.seconds.append(seconds)

    def result(self, method: str, budget: int) -> MethodResult:
        count = max(len(self.scores), 1)
        milliseconds = sorted(second * 1000 for second in self.seconds)
        return MethodResult(
            method=method,
            budget=budget,
            recall=sum(s.recall for s in self.scores) / count,
            precision=sum(s.precision for s in self.scores) / count,
            hit=sum(s.hit for s in self.scores) / count,
            tokens_mean=sum(self.tokens) / max(len(self.tokens), 1),
            tokens_max=max(self.tokens, default=0),
            within_budget=sum(t <= budget for t in self.tokens) / max(len(self.tokens), 1),
            latency_p50_ms=statistics.median(milliseconds) if milliseconds else None,
            latency_p95_ms=milliseconds[int(0.95 * (len(milliseconds) - 1))] if milliseconds else None,
        )


def evaluate(
    dataset: Dataset,
    pipeline: Pipeline,
    budgets: Sequence[int] = DEFAULT_BUDGETS,
    *,
    base_message: str | None = None,
    k: int | None = None,
    baselines: bool = True,
    progress: Progress | None = None,
) -> EvalReport:
    """Ingest the dataset's documents into the pipeline's store, then score every query at every budget.

    Ours composes with the settings' `k` (or `k`): k passages, grown into their context while budget is left."""
    base = packaged_prompt("eval_base_message") if base_message is None else base_message
    report = pipeline.ingest([dataset.docs])
    if not report.ok:
        failed = "; ".join(f"{failure.path}: {failure.reason}" for failure in report.failed)
        raise ConfigError(f"{dataset.name}: some documents could not be ingested: {failed}")
    sources = sources_by_doc_id(pipeline.store.documents())
    counter = pipeline.counter
    tallies = {(OURS, budget): _Tally() for budget in budgets}
    embedding_ms: list[float] = []
    for number, query in enumerate(dataset.queries):
        restrict = restriction(query.doc_id, sources)
        started = time.perf_counter()
        pipeline.embedder.embed_query(query.query)  # timed apart: per-budget latencies below are warm composes
        embedding_ms.append((time.perf_counter() - started) * 1000)
        for budget in budgets:
            profile = pipeline.settings.profile(None, base_message=base, budget=budget, k=k)
            started = time.perf_counter()
            prompt = pipeline.compose_for(query.query, profile, restrict)
            seconds = time.perf_counter() - started
            spans: list[Span] = [(doc_id_of(chunk.source), chunk.start, chunk.end) for chunk in prompt.chunks]
            tallies[OURS, budget].add(score_query(query.gold, spans), counter.count(prompt.system_message), seconds)
        if progress is not None:
            progress(OURS, number + 1, len(dataset.queries))
    if baselines:
        _run_baselines(dataset, pipeline, budgets, base, tallies, progress)
    settings = pipeline.settings
    result = EvalReport(
        dataset=dataset.name,
        queries=len(dataset.queries),
        settings={
            "embedding_model": settings.embedding_model,
            "chunk_tokens": settings.chunk_tokens,
            "neighbour_window": settings.neighbour_window,
            "neighbour_weight": settings.neighbour_weight,
            "block_weight": settings.block_weight,
            "lexical_weight": settings.lexical_weight,
            "region_weight": settings.region_weight,
            "document_weight": settings.document_weight,
            "centring_weight": settings.centring_weight,
            "focus_weight": settings.focus_weight,
            "merge_sections": settings.merge_sections,
            "expand_context": settings.expand_context,
            "k": k or settings.k,
            "model": settings.model,
            "encoding": counter.encoding_name,
            "base_message_tokens": counter.count(base),
            "query_embedding_ms_p50": round(statistics.median(embedding_ms), 1) if embedding_ms else None,
        },
    )
    result.results = [tally.result(method, budget) for (method, budget), tally in tallies.items()]
    return result


def _run_baselines(
    dataset: Dataset,
    pipeline: Pipeline,
    budgets: Sequence[int],
    base: str,
    tallies: dict[tuple[str, int], _Tally],
    progress: Progress | None,
) -> None:
    documents = {}
    for path in sorted(p for p in dataset.docs.rglob("*") if p.is_file()):
        document = load_document(path, dataset.docs)
        documents[doc_id_of(document.source)] = document
    counter, header = pipeline.counter, pipeline.settings.header
    whole = WholeDocument(documents, counter, header)
    dense: list[FixedChunksDense | RecursiveSplitterDense] = [
        FixedChunksDense(documents, pipeline.embedder, counter),
        RecursiveSplitterDense(documents, pipeline.embedder, counter),
    ]
    for method in (whole.name, *(baseline.name for baseline in dense)):
        for budget in budgets:
            tallies[method, budget] = _Tally()
    for number, query in enumerate(dataset.queries):
        for budget in budgets:
            message, spans = whole.compose(query, base, budget)
            tallies[whole.name, budget].add(score_query(query.gold, spans), counter.count(message))
            for baseline in dense:
                message, spans = baseline.compose(query, base, budget, header)
                tallies[baseline.name, budget].add(score_query(query.gold, spans), counter.count(message))
        if progress is not None:
            progress("baselines", number + 1, len(dataset.queries))


def plot(report: EvalReport, path: str | Path) -> None:
    """Recall and hit against budget, one line per method (needs matplotlib: pip install 'rag-prompts[eval]')."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    methods = list(dict.fromkeys(result.method for result in report.results))
    for axis, metric in zip(axes, ("recall", "hit"), strict=True):
        for method in methods:
            rows = sorted((r for r in report.results if r.method == method), key=lambda r: r.budget)
            axis.plot([r.budget for r in rows], [getattr(r, metric) for r in rows], marker="o", label=method)
        axis.set_xscale("log", base=2)
        axis.set_xticks(sorted({r.budget for r in report.results}))
        axis.get_xaxis().set_major_formatter(matplotlib.ticker.ScalarFormatter())
        axis.set_xlabel("budget (tokens, whole system message)")
        axis.set_ylabel(metric)
        axis.set_ylim(0, 1)
        axis.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    figure.suptitle(f"{report.dataset}: {report.queries} queries")
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


__all__ = ["DEFAULT_BUDGETS", "EvalReport", "MethodResult", "Query", "evaluate", "plot"]
