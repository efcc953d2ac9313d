"""The per-call record: what one agent sends its model on one call, and what was trimmed to keep it in budget.

`on_call` callbacks receive it, and the payload log writes it as one JSON line (`ModelCall.row`)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from ..records import ComposedPrompt


@dataclass(frozen=True)
class ModelCall:
    """One model call of one agent: the composed system message and the whole payload, counted as sent."""

    agent: str
    prompt: ComposedPrompt | None  # None only for an Agent Framework call made without the agent's context provider
    messages: int  # messages sent, the system message included
    tokens: int  # the whole payload in the model's encoding: message and tool-call overhead, reply priming
    call: int = 0  # the agent's calls so far, this one included
    budget: int = 0  # the payload budget: context_limit - reply_reserve
    role_messages: dict[str, int] = field(default_factory=dict)  # items sent, by role
    role_tokens: dict[str, int] = field(default_factory=dict)  # tokens by role (and "tools": the tool definitions)
    dropped: int = 0  # history messages left out
    orphans: int = 0  # tool calls or results left out for lack of their other half
    cut: int = 0  # messages sent shortened
    summary_tokens: int = 0
    offloaded: tuple[str, ...] = ()  # stored output ids, this call
    time: str = field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="milliseconds"))

    def row(self) -> dict[str, Any]:
        """The record as a payload-log line holds it (`rag-prompts log` reads these)."""
        return {
            "agent": self.agent,
            "call": self.call,
            "messages": dict(self.role_messages),
            "tokens": dict(self.role_tokens),
            "total": self.tokens,
            "budget": self.budget,
            "dropped": self.dropped,
            "orphans": self.orphans,
            "cut": self.cut,
            "summary_tokens": self.summary_tokens,
            "offloaded": self.offloaded,
            "time": self.time,
            "audit": audit_fields(self.prompt) if self.prompt is not None else None,
        }


def audit_fields(prompt: ComposedPrompt) -> dict[str, Any]:
    """What `rag-prompts audit show` needs to trace and rebuild the system message: the composition's id, the
    task's hash, the date its documents were in force, each injected chunk's provenance (source, document
    version, section, characters, score, pinned or retrieved) in placement order, and the message's own parts."""
    return {
        "id": prompt.id,
        "task_sha256": prompt.task_sha256,
        "as_of": prompt.as_of,
        "chunks": [
            {
                "id": chunk.id,
                "source": chunk.source,
                "doc_hash": chunk.doc_hash,
                "section": chunk.section,
                "start": chunk.start,
                "end": chunk.end,
                "score": chunk.score,
                "kind": "pinned" if chunk.pinned else "retrieved",
            }
            for chunk in prompt.chunks
        ],  # fmt: skip
        "message_sha256": hashlib.sha256(prompt.system_message.encode("utf-8")).hexdigest(),
        "tokens": prompt.tokens,
        "encoding": prompt.encoding,
        "base_message": prompt.base_message,
        "header": prompt.header,
        "block_template": prompt.block_template,
        "merge": prompt.merge,
    }
