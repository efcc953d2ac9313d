"""The per-call token log: one record per agent before every model call, to the `rag_prompts.payload` logger
and, optionally, appended as a JSON line to a file that `rag-prompts log FILE` summarises."""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from ..errors import RagPromptsError
from .record import ModelCall

logger = logging.getLogger("rag_prompts.payload")


class PayloadLog:
    """Emits records to the `rag_prompts.payload` logger and appends them to `path` when one is set."""

    def __init__(self, path: str | Path | None = None) -> None:
        self.path = Path(path) if path else None
        self._lock = threading.Lock()

    def emit(self, record: ModelCall) -> None:
        row = record.row()
        logger.info(
            "%s call %d: %d tokens of %d (%s)",
            record.agent,
            record.call,
            record.tokens,
            record.budget,
            ", ".join(f"{role} {count}" for role, count in record.role_tokens.items()),
            extra={"payload": row},
        )
        if self.path is not None:
            line = json.dumps(row, ensure_ascii=False) + "\n"
            with self._lock:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                with self.path.open("a", encoding="utf-8") as handle:
                    handle.write(line)


_LOGS: dict[str, PayloadLog] = {}
_LOGS_LOCK = threading.Lock()


def payload_log(path: str | Path | None) -> PayloadLog:
    """One PayloadLog per file, shared by every agent writing to it (so lines never interleave)."""
    key = str(Path(path).resolve()) if path else ""
    with _LOGS_LOCK:
        return _LOGS.setdefault(key, PayloadLog(key or None))


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
