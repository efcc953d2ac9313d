"""The per-call token log: one record per agent before every model call, to the `rag_prompts.payload` logger
and, optionally, appended as a JSON line to a file that `rag-prompts log FILE` summarises."""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ..config import ResolvedProfile
from ..errors import RagPromptsError
from ..tokens import REPLY_PRIMING, TokenCounter, token_counter
from .history import Fitted, HistoryGuard, HistoryPolicy, Item, Summariser, item_tokens, summary_item

logger = logging.getLogger("rag_prompts.payload")


@dataclass(frozen=True)
class PayloadRecord:
    """What one agent is about to send on one model call, and what was trimmed or offloaded to keep it in budget."""

    agent: str
    call: int
    messages: dict[str, int]  # by role
    tokens: dict[str, int]  # by role, message overhead included
    total: int  # the whole payload, reply priming included
    budget: int
    dropped: int = 0  # history messages left out
    orphans: int = 0  # tool calls or results left out for lack of their other half
    cut: int = 0  # messages sent shortened
    summary_tokens: int = 0
    offloaded: tuple[str, ...] = ()  # stored output ids, this call
    time: str = field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="milliseconds"))


def by_role(items: Iterable[Item], counter: TokenCounter, tools: int = 0) -> tuple[dict[str, int], dict[str, int], int]:
    """Messages and tokens per role for `items` as sent (plus `tools`: the tool definitions), and the total."""
    messages: dict[str, int] = {}
    tokens: dict[str, int] = {"tools": tools} if tools else {}
    for item in items:
        messages[item.role] = messages.get(item.role, 0) + 1
        tokens[item.role] = tokens.get(item.role, 0) + item_tokens(item, counter)
    return messages, tokens, REPLY_PRIMING + sum(tokens.values())


class PayloadLog:
    """Emits records to the `rag_prompts.payload` logger and appends them to `path` when one is set."""

    def __init__(self, path: str | Path | None = None) -> None:
        self.path = Path(path) if path else None
        self._lock = threading.Lock()

    def emit(self, record: PayloadRecord) -> None:
        row = asdict(record)
        logger.info(
            "%s call %d: %d tokens of %d (%s)",
            record.agent,
            record.call,
            record.total,
            record.budget,
            ", ".join(f"{role} {count}" for role, count in record.tokens.items()),
            extra={"payload": row},
        )
        if self.path is not None:
            line = json.dumps(row, ensure_ascii=False) + "\n"
            with self._lock:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                with self.path.open("a", encoding="utf-8") as handle:
                    handle.write(line)


class AgentPayload:
    """One agent's payload: the history guard built from its profile, and the record logged before each call.
    The AgentChat context and the AG2 transform both go through it."""

    def __init__(self, profile: ResolvedProfile, log: PayloadLog, summariser: Summariser | None = None) -> None:
        self.name = profile.name
        self.counter = token_counter(profile.model)
        policy = HistoryPolicy(max_turns=profile.history_turns or None, summary_tokens=profile.summary_tokens)
        self.guard = HistoryGuard(profile.payload_budget, self.counter, policy)
        if summariser is not None:
            self.guard.summariser = summariser
        self.log = log
        self.calls = 0

    def fit(self, system: str, items: Sequence[Item], tools: int = 0, offloaded: Sequence[str] = ()) -> Fitted:
        """What of `items` to send after `system` (see `HistoryGuard.fit`), logged as this agent's next call."""
        fitted = self.guard.fit(system, items, tools)
        self.calls += 1
        sent = [Item("system", system), *(replace(items[i], text=text) for i, text in fitted.keep)]
        if fitted.summary:
            sent.append(summary_item(fitted.summary))
        per_role, tokens, total = by_role(sent, self.counter, tools)
        summary_tokens = self.counter.count(fitted.summary) if fitted.summary else 0
        self.log.emit(
            PayloadRecord(
                self.name,
                self.calls,
                per_role,
                tokens,
                total,
                self.guard.budget,
                fitted.dropped,
                fitted.orphans,
                fitted.cut,
                summary_tokens,
                tuple(offloaded),
            )  # fmt: skip
        )
        return fitted


_LOGS: dict[str, PayloadLog] = {}
_LOGS_LOCK = threading.Lock()


def payload_log(path: str | Path | None) -> PayloadLog:
    """One PayloadLog per file, shared by every agent writing to it (so lines never interleave)."""
    key = str(Path(path).resolve()) if path else ""
    with _LOGS_LOCK:
        return _LOGS.setdefault(key, PayloadLog(key or None))


def tool_definition_tokens(schemas: Sequence[Mapping[str, Any]], counter: TokenCounter) -> int:
    """Tokens the tool definitions sent with every call take (their JSON; providers' own framing differs a little)."""
    return counter.count(json.dumps(list(schemas), separators=(",", ":"))) if schemas else 0


def read_log(path: str | Path) -> list[dict[str, Any]]:
    """The records of a JSONL payload log; a malformed line is an error naming it."""
    rows = []
    for number, line in enumerate(Path(path).read_text("utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            if not isinstance(row, dict) or "agent" not in row or "total" not in row or "budget" not in row:
                raise ValueError("not a payload record (needs agent, total and budget)")
        except ValueError as error:
            raise RagPromptsError(f"{path}:{number}: {error}") from error
        rows.append(row)
    return rows


def summarise_log(rows: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Per agent: calls, peak and mean payload, budget, the share of budget at the peak, and what was trimmed."""
    agents: dict[str, dict[str, Any]] = {}
    for row in rows:
        entry = agents.setdefault(
            str(row["agent"]),
            {"agent": row["agent"], "calls": 0, "peak": 0, "sum": 0, "budget": row["budget"], "over": 0,
             "dropped": 0, "cut": 0, "offloaded": 0},
        )  # fmt: skip
        entry["calls"] += 1
        entry["peak"] = max(entry["peak"], int(row["total"]))
        entry["sum"] += int(row["total"])
        entry["budget"] = min(int(entry["budget"]), int(row["budget"]))
        entry["over"] += int(row["total"]) > int(row["budget"])
        entry["dropped"] += int(row.get("dropped", 0))
        entry["cut"] += int(row.get("cut", 0))
        entry["offloaded"] += len(row.get("offloaded", ()))
    summary = []
    for entry in agents.values():
        mean = entry.pop("sum") / entry["calls"]
        summary.append({**entry, "mean": round(mean, 1), "peak_share": round(entry["peak"] / entry["budget"], 3)})
    return summary
