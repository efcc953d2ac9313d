"""The `rag-prompts` command: each subcommand parses options, calls one library function and prints the result."""

from __future__ import annotations

import argparse
import gc
import json
import sys
import warnings
from collections.abc import Callable, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from .affinity import stay_on_one_core
from .audit import audited_calls, find_call, list_calls, rebuild
from .config import load_settings
from .dating import parse_day
from .errors import ConfigError, RagPromptsError
from .evaluation.dataset import doc_id_of, load_dataset, read_queries, restriction, sources_by_doc_id
from .evaluation.evaluate import DEFAULT_BUDGETS, evaluate, plot
from .locking import writer_lock
from .payload.log import read_log, summarise_log
from .pipeline import Pipeline
from .store import compact_collection


def _pipeline(args: argparse.Namespace) -> Pipeline:
    return Pipeline.from_config(args.config)


def _print_json(value: Any) -> None:
    print(json.dumps(value, indent=2, ensure_ascii=False))


def _table(rows: Sequence[Sequence[Any]], headers: Sequence[str]) -> str:
    cells = [[str(value) for value in row] for row in [headers, *rows]]
    widths = [max(len(row[column]) for row in cells) for column in range(len(headers))]
    lines = ["  ".join(value.ljust(width) for value, width in zip(row, widths, strict=True)).rstrip() for row in cells]
    lines.insert(1, "  ".join("-" * width for width in widths))
    return "\n".join(lines)


_STAGES = {"check": ("checking", "chunk"), "read": ("reading", "file"), "embed": ("embedding", "chunk"),
           "write": ("writing", "chunk"), "delete": ("deleting", "chunk")}  # fmt: skip


def cmd_ingest(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    pipeline = _pipeline(args)
    interactive = sys.stderr.isatty() and not args.json
    bars: dict[str, Any] = {}

    def progress(stage: str, done: int, total: int) -> None:
        """A bar per stage on a terminal; piped output gets one line per document instead (on_event)."""
        if not interactive:
            return
        bar = bars.get(stage)
        if bar is None or (total and bar.total != total):
            if bar is not None:
                bar.close()
            desc, unit = _STAGES.get(stage, (stage, "item"))
            bar = bars[stage] = tqdm(total=total or None, unit=unit, desc=desc, file=sys.stderr, leave=False)
        bar.update(done - bar.n)

    def on_event(kind: str, what: str) -> None:
        if not args.json and not interactive:
            print(f"{kind:8} {what}", file=sys.stderr, flush=True)

    try:
        report = pipeline.ingest(args.paths or None, progress=progress, on_event=on_event, wait=args.wait)
    finally:
        for bar in bars.values():
            bar.close()
    if args.json:
        _print_json({
            **report.summary(), "failures": [asdict(failure) for failure in report.failed],
            "warnings": report.warnings,
        })  # fmt: skip
    else:
        for failure in report.failed:
            print(f"failed: {failure.path}: {failure.reason}", file=sys.stderr)
        for warning in report.warnings:
            print(f"warning: {warning}", file=sys.stderr)
        summary = report.summary()
        print(
            "documents: {added} added, {updated} updated, {unchanged} unchanged, {removed} removed, {failed} failed,"
            " {resumed} resumed, {repaired} repaired; chunks: {chunks_embedded} embedded, {chunks_reused} reused,"
            " {chunks_deleted} deleted in {seconds}s".format(**summary)
        )
    return 0 if report.ok else 1


def cmd_search(args: argparse.Namespace) -> int:
    hits = _pipeline(args).search(args.query, k=args.k, agent=args.agent)
    rows = [
        {
            "id": hit.chunk.id,
            "score": round(hit.score, 4),
            "source": hit.chunk.source,
            "section": hit.chunk.section,
            "start": hit.chunk.start,
            "end": hit.chunk.end,
            "tokens": hit.chunk.tokens,
            "text": hit.chunk.text,
        }
        for hit in hits
    ]
    if args.json:
        _print_json(rows)
    else:
        print(
            _table(
                [(n + 1, r["score"], r["tokens"], r["source"], r["section"]) for n, r in enumerate(rows)],
                ["#", "score", "tokens", "source", "section"],
            )
        )
    return 0


def cmd_compose(args: argparse.Namespace) -> int:
    if args.batch:
        return _compose_batch(args)
    if args.task is None:
        print("rag-prompts: error: give a TASK or --batch QUERIES.jsonl", file=sys.stderr)
        return 2
    prompt = _pipeline(args).compose(args.task, agent=args.agent, k=args.k, budget=args.budget, as_of=args.as_of)
    if args.json:
        _print_json(
            {
                "id": prompt.id,
                "as_of": prompt.as_of,
                "system_message": prompt.system_message,
                "tokens": prompt.tokens,
                "budget": prompt.budget,
                "encoding": prompt.encoding,
                "chunks": [asdict(chunk) for chunk in prompt.chunks],
                "dropped": [asdict(chunk) for chunk in prompt.dropped],
            }
        )
    else:
        print(prompt.system_message)
        print(
            f"\n--- {prompt.tokens}/{prompt.budget} tokens ({prompt.encoding}), {len(prompt.chunks)} chunks",
            file=sys.stderr,
        )
    return 0


def _compose_batch(args: argparse.Namespace) -> int:
    """One JSON line per query: the message and, per chunk, its document id and character offsets."""
    pipeline = _pipeline(args)
    sources = sources_by_doc_id(pipeline.store.documents())
    for query in read_queries(Path(args.batch)):
        restrict = restriction(query.doc_id, sources)
        profile = pipeline.settings.profile(args.agent, k=args.k, budget=args.budget)
        prompt = pipeline.compose_for(query.query, profile, restrict, as_of=args.as_of)
        chunks = [
            {"doc_id": doc_id_of(c.source), "source": c.source, "section": c.section, "start": c.start,
             "end": c.end, "score": c.score}
            for c in prompt.chunks
        ]  # fmt: skip
        line = {"qid": query.qid, "system_message": prompt.system_message, "tokens": prompt.tokens, "chunks": chunks}
        print(json.dumps(line, ensure_ascii=False), flush=True)
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    dataset = load_dataset(args.dataset)
    settings = load_settings(args.config, collection=f"eval-{_slug(dataset.name)}")
    budgets = _budgets(args.budgets)

    def progress(stage: str, done: int, total: int) -> None:
        if sys.stderr.isatty():
            print(f"\r{stage}: {done}/{total} queries", end="" if done < total else "\n", file=sys.stderr)

    report = evaluate(dataset, Pipeline(settings), budgets, baselines=not args.no_baselines,
                      base_message=args.base_message, k=args.k, progress=progress)  # fmt: skip
    if args.json:
        Path(args.json).write_text(json.dumps(report.as_dict(), indent=2), encoding="utf-8")
    if args.plot:
        plot(report, args.plot)
    print(f"{report.dataset}: {report.queries} queries; {json.dumps(report.settings)}")
    print(_table(report.rows(), report.HEADERS))
    return 0


def _slug(name: str) -> str:
    slug = "".join(c if c.isalnum() or c in "-_" else "-" for c in name).strip("-_")[:48] or "dataset"
    return slug if slug[-1].isalnum() else slug + "0"


def _budgets(text: str) -> list[int]:
    try:
        budgets = [int(part) for part in text.split(",") if part.strip()]
    except ValueError as error:
        raise ConfigError(f"--budgets: expected comma-separated token counts, got {text!r}") from error
    if not budgets or min(budgets) < 1:
        raise ConfigError(f"--budgets: expected positive token counts, got {text!r}")
    return budgets


def cmd_compact(args: argparse.Namespace) -> int:
    settings = load_settings(args.config)
    if args.own_process and not settings.store_location.startswith(("http://", "https://")):
        stay_on_one_core()  # an embedded store's writes are thread hand-offs, cheaper on one core (see `affinity`)
    gc.disable()  # importing chromadb and reading a page of records made cyclic collections cost ~0.2 s; none are
    try:  # needed: what the copy allocates is freed by reference counting
        with writer_lock(settings.store_location, wait=args.wait, collection=settings.collection) as lease:
            done = compact_collection(settings.store_location, settings.collection, fence=lease.check, force=args.force)
    finally:
        gc.enable()
    if args.json:
        _print_json({"collection": settings.collection, "chunks": done.chunks, "copied": done.copied})
    elif done.copied:
        print(f"compacted {settings.collection!r}: {done.chunks} chunks copied into a fresh index")
    else:
        print(f"nothing to compact: no chunk of {settings.collection!r} ({done.chunks} chunks) was deleted since it"
              " was compacted (--force copies it anyway)")  # fmt: skip
    return 0


def cmd_stats(args: argparse.Namespace) -> int:
    stats = _pipeline(args).stats()
    if args.json:
        _print_json(asdict(stats))
    else:
        print(_table([(key, value) for key, value in asdict(stats).items()], ["", "value"]))
    return 0


def cmd_log(args: argparse.Namespace) -> int:
    """Per agent: calls, peak and mean payload against the budget, and what was trimmed or offloaded."""
    path = Path(args.file)
    if not path.is_file():
        raise RagPromptsError(f"{path}: no such payload log (set `payload_log` in the settings to write one)")
    summary = summarise_log(read_log(path))
    if args.json:
        _print_json(summary)
        return 0
    headers = ["agent", "calls", "peak", "mean", "budget", "peak/budget", "over", "dropped", "cut", "offloaded"]
    rows = [
        (row["agent"], row["calls"], row["peak"], row["mean"], row["budget"], f"{row['peak_share']:.0%}", row["over"],
         row["dropped"], row["cut"], row["offloaded"])
        for row in summary
    ]  # fmt: skip
    print(_table(rows, headers))
    return 0


def _audit_log(args: argparse.Namespace) -> Path:
    path = Path(args.log) if args.log else load_settings(args.config).payload_log_path
    if path is None:
        raise RagPromptsError("no payload log: set `payload_log` in the settings (agents write it) or pass --log FILE")
    if not path.is_file():
        raise RagPromptsError(f"{path}: no such payload log")
    return path


def cmd_audit_list(args: argparse.Namespace) -> int:
    """The calls in the payload log: when, which agent, the composition id, the date in force, the sources."""
    rows = list_calls(audited_calls(_audit_log(args)), args.agent, parse_day(args.since, "--since"))
    if args.json:
        _print_json(rows)
        return 0
    table = [
        (row["id"], row["time"], row["agent"], row["call"], row["as_of"], row["tokens"], row["pinned"],
         row["retrieved"], ", ".join(row["sources"]))
        for row in rows
    ]  # fmt: skip
    print(_table(table, ["id", "time", "agent", "call", "as_of", "tokens", "pinned", "retrieved", "sources"]))
    return 0


def cmd_audit_show(args: argparse.Namespace) -> int:
    """The exact system message of one logged call, rebuilt from the document versions it was given."""
    row = find_call(audited_calls(_audit_log(args)), args.call_id)
    rebuilt = rebuild(_pipeline(args).store, row)
    if args.json:
        _print_json({**row["audit"], "system_message": rebuilt.system_message, "matches_log": rebuilt.matches_log})
    else:
        sys.stdout.write(rebuilt.system_message)
        sys.stdout.flush()
        state = "identical to the message sent" if rebuilt.matches_log else "DIFFERS from the message sent (hash)"
        print(f"\n--- call {rebuilt.call_id}: {rebuilt.tokens} tokens, {state}", file=sys.stderr)
    return 0 if rebuilt.matches_log else 1


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="rag-prompts", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    def command(
        name: str, handler: Callable[[argparse.Namespace], int], help_text: str, json_flag: bool = True
    ) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=help_text, description=help_text)
        sub.add_argument("--config", metavar="FILE", help="settings file (default: ./rag_prompts.toml if present)")
        if json_flag:
            sub.add_argument("--json", action="store_true", help="print machine-readable JSON")
        sub.set_defaults(handler=handler)
        return sub

    ingest = command("ingest", cmd_ingest, "ingest documents into the store (default: the configured corpus)")
    ingest.add_argument("paths", nargs="*", metavar="PATH", help="folders or files")
    ingest.add_argument("--wait", action="store_true", help="wait for another ingest of the store instead of failing")
    search = command("search", cmd_search, "show the chunks ranked for a query")
    search.add_argument("query")
    search.add_argument("--k", type=int, help="how many chunks")
    search.add_argument("--agent", help="restrict to this agent's tags")
    compose = command("compose", cmd_compose, "print the system message composed for a task")
    compose.add_argument("task", nargs="?")
    compose.add_argument("--batch", metavar="QUERIES.jsonl", help="compose for every query; one JSON line each")
    compose.add_argument("--agent", help="agent profile from the config")
    compose.add_argument("--k", type=int, help="at most this many chunks")
    compose.add_argument("--budget", type=int, help="token budget for the whole message")
    compose.add_argument("--as-of", metavar="YYYY-MM-DD", help="documents in force on this date (default: today)")
    command("stats", cmd_stats, "show documents, chunks and tokens in the store")
    compact = command(
        "compact", cmd_compact, "rewrite the collection into a fresh index (faster filtered searches after re-ingests)"
    )
    compact.add_argument("--wait", action="store_true", help="wait for an ingest of the store instead of failing")
    compact.add_argument("--force", action="store_true", help="copy the collection even when nothing was deleted")
    evaluation = command(
        "eval", cmd_eval, "score retrieval on a labelled dataset (docs/ + queries.jsonl)", json_flag=False
    )
    evaluation.add_argument("dataset", metavar="DATASET_DIR")
    evaluation.add_argument("--budgets", default=",".join(map(str, DEFAULT_BUDGETS)), help="comma-separated")
    evaluation.add_argument("--json", metavar="FILE", help="also write the full report as JSON to FILE")
    evaluation.add_argument("--plot", metavar="FILE.png", help="plot recall and hit against budget")
    evaluation.add_argument("--base-message", help="the base message every method starts with")
    evaluation.add_argument("--no-baselines", action="store_true", help="score rag-prompts only")
    evaluation.add_argument("--k", type=int, help="passages per message (default: the settings' k)")
    log = command("log", cmd_log, "summarise a payload log (JSON lines): peak tokens per agent")
    log.add_argument("file", metavar="FILE")
    audit = commands.add_parser("audit", help="what agents were told: list logged calls, rebuild one's message")
    audits = audit.add_subparsers(dest="audit_command", required=True)
    for name, handler, help_text in (
        ("list", cmd_audit_list, "list the calls in the payload log"),
        ("show", cmd_audit_show, "print a logged call's exact system message, rebuilt from the store"),
    ):
        sub = audits.add_parser(name, help=help_text, description=help_text)
        sub.add_argument("--config", metavar="FILE", help="settings file (default: ./rag_prompts.toml if present)")
        sub.add_argument("--log", metavar="FILE", help="payload log (default: the settings' payload_log)")
        sub.add_argument("--json", action="store_true", help="print machine-readable JSON")
        sub.set_defaults(handler=handler)
        if name == "list":
            sub.add_argument("--agent", help="only this agent's calls")
            sub.add_argument("--since", metavar="YYYY-MM-DD", help="only calls made on or after this day (UTC)")
        else:
            sub.add_argument("call_id", metavar="CALL_ID", help="the id `audit list` shows (a unique prefix will do)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """The command line; `argv` None means this process is the `rag-prompts` program and exits when this returns."""
    code = _run(argv)
    if argv is None:  # the process ends next: its objects need no last cyclic collection (~0.2 s once chromadb
        gc.freeze()  # is imported); a caller passing argv (tests) keeps collecting as usual
    return code


def _run(argv: Sequence[str] | None) -> int:
    warnings.filterwarnings("default", r".* is deprecated: use ", DeprecationWarning)  # renamed settings keys
    args = build_parser().parse_args(argv)
    args.own_process = argv is None  # the process is this command's alone (a caller passing argv keeps its settings)
    for name in ("k", "budget"):
        value = getattr(args, name, None)
        if value is not None and value < 1:
            print(f"rag-prompts: error: --{name} must be a positive integer, got {value}", file=sys.stderr)
            return 2
    try:
        return int(args.handler(args))
    except RagPromptsError as error:
        print(f"rag-prompts: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
