"""One agent's payload guard: the history guard built from the agent's limits, and the per-call record made,
logged and handed to `on_call` before each model call. Every agent adapter goes through it."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import replace
from typing import Any, Protocol

from ..records import ComposedPrompt
from ..tokens import REPLY_PRIMING, TokenCounter, token_counter
from .history import Fitted, HistoryGuard, HistoryPolicy, Item, Summariser, item_tokens, summary_item
from .log import PayloadLog
from .record import ModelCall


class PayloadLimits(Protocol):
    """What the guard needs of an agent's profile (a `ResolvedProfile` has it)."""

    @property
    def name(self) -> str: ...
    @property
    def model(self) -> str: ...
    @property
    def payload_budget(self) -> int: ...
    @property
    def history_turns(self) -> int: ...
    @property
    def summary_tokens(self) -> int: ...


def by_role(items: Iterable[Item], counter: TokenCounter, tools: int = 0) -> tuple[dict[str, int], dict[str, int], int]:
    """Messages and tokens per role for `items` as sent (plus `tools`: the tool definitions), and the total."""
    messages: dict[str, int] = {}
    tokens: dict[str, int] = {"tools": tools} if tools else {}
    for item in items:
        messages[item.role] = messages.get(item.role, 0) + 1
        tokens[item.role] = tokens.get(item.role, 0) + item_tokens(item, counter)
    return messages, tokens, REPLY_PRIMING + sum(tokens.values())


def tool_definition_tokens(schemas: Sequence[Mapping[str, Any]], counter: TokenCounter) -> int:
    """Tokens the tool definitions sent with every call take (their JSON; providers' own framing differs a little)."""
    return counter.count(json.dumps(list(schemas), separators=(",", ":"))) if schemas else 0


class AgentPayload:
    """One agent's payload: `fit` chooses what of the history is sent, `sent` records the call that goes out."""

    def __init__(
        self,
        profile: PayloadLimits,
        log: PayloadLog,
        summariser: Summariser | None = None,
        on_call: Callable[[ModelCall], None] | None = None,
    ) -> None:
        self.name = profile.name
        self.counter = token_counter(profile.model)
        policy = HistoryPolicy(max_turns=profile.history_turns or None, summary_tokens=profile.summary_tokens)
        self.guard = HistoryGuard(profile.payload_budget, self.counter, policy)
        if summariser is not None:
            self.guard.summariser = summariser
        self.log = log
        self.on_call = on_call  # told what is sent, before every model call
        self.calls = 0

    def fit(self, system: str, items: Sequence[Item], tools: int = 0) -> Fitted:
        """What of `items` to send after `system` (see `HistoryGuard.fit`); `tools`: the tool definitions' tokens."""
        return self.guard.fit(system, items, tools)

    def sent(
        self,
        system: str,
        items: Sequence[Item],
        fitted: Fitted,
        *,
        prompt: ComposedPrompt | None,
        messages: int,
        tools: int = 0,
        offloaded: Sequence[str] = (),
    ) -> ModelCall:
        """The record of the call about to go out with `fitted`: logged, then handed to `on_call`."""
        self.calls += 1
        kept = [Item("system", system), *(replace(items[i], text=text) for i, text in fitted.keep)]
        if fitted.summary:
            kept.append(summary_item(fitted.summary))
        per_role, tokens, total = by_role(kept, self.counter, tools)
        record = ModelCall(
            self.name,
            prompt,
            messages,
            total,
            call=self.calls,
            budget=self.guard.budget,
            role_messages=per_role,
            role_tokens=tokens,
            dropped=fitted.dropped,
            orphans=fitted.orphans,
            cut=fitted.cut,
            summary_tokens=self.counter.count(fitted.summary) if fitted.summary else 0,
            offloaded=tuple(offloaded),
        )
        self.log.emit(record)
        if self.on_call is not None and prompt is not None:
            self.on_call(record)
        return record
