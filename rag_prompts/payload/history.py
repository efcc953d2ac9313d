"""Bounding a chat payload: which history messages go to the model, within a token budget.

Framework-neutral: the AgentChat and AG2 adapters turn their messages into `Item`s, ask a `HistoryGuard` which to
keep, and rebuild their own messages from the answer. The rules, in order:

- the system message is always sent (the adapters compose it within its own, smaller budget);
- a tool call and its results are one unit: kept or dropped together, never one without the other; results whose
  call is not in the history, and calls whose results are missing, are dropped (providers reject both with 400);
- the original task (the conversation's first message: the task a team was given, or, for the agent that
  started a chat, its own opening message) is always kept, cut if it must be;
- at most `max_turns` turns are kept (a turn starts at a user message), newest first, and only while they fit;
- what is dropped can be replaced by a running summary (`Summariser`; the default needs no model);
- if the newest unit alone does not fit, its texts are cut (head and tail kept) so the payload still does.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from ..errors import BudgetError
from ..tokens import MESSAGE_OVERHEAD, REPLY_PRIMING, TokenCounter

TOOL_CALL_OVERHEAD = 8  # the call id, type and JSON structure around a tool call's name and arguments
CUT_MARK = "\n[… cut to fit the payload budget …]\n"
SUMMARY_TOKENS = 256  # the default cap on the running summary of dropped history


@dataclass(frozen=True)
class Item:
    """One message as the model receives it: its role, its text, and the tool calls it makes or answers."""

    role: str  # "system", "user", "assistant" or "tool"
    text: str
    calls: tuple[str, ...] = ()  # ids of the tool calls an assistant message makes (its text holds names + arguments)
    answers: str = ""  # for a tool result: the id of the call it answers


Summariser = Callable[[str, Sequence[Item], int, TokenCounter], str]
"""(previous summary, newly dropped items, max tokens, counter) -> the new summary, at most max tokens."""


@dataclass(frozen=True)
class HistoryPolicy:
    """How much history one agent sends. `max_turns=None` keeps every turn that fits."""

    max_turns: int | None = None
    summary_tokens: int = SUMMARY_TOKENS  # 0: dropped messages are not summarised
    keep_task: bool = True


@dataclass(frozen=True)
class Fitted:
    """What to send: `keep` (indices into the items, in order, each with the text to send) and the summary."""

    keep: tuple[tuple[int, str], ...]
    summary: str
    tokens: int  # the whole payload: system message, summary and kept items, overhead included
    dropped: int  # items left out this call (summarised or not)
    orphans: int  # tool results or calls left out because their other half is missing
    cut: int  # items sent shortened


def item_tokens(item: Item, counter: TokenCounter, text: str | None = None) -> int:
    """Tokens `item` adds to a payload (in the chat format's accounting), with `text` in place of its own."""
    body = item.text if text is None else text
    return MESSAGE_OVERHEAD + counter.count(item.role) + counter.count(body) + TOOL_CALL_OVERHEAD * len(item.calls)


def summary_item(summary: str) -> Item:
    return Item("user", summary)


def units(items: Sequence[Item]) -> tuple[list[list[int]], int]:
    """Items grouped into units that are kept or dropped whole (a tool call with all its results), in order,
    and how many items were left out as orphans."""
    grouped: list[list[int]] = []
    orphans = 0
    index = 0
    while index < len(items):
        item = items[index]
        if item.role == "tool":  # a result whose call is not right before it
            orphans += 1
            index += 1
            continue
        unit = [index]
        index += 1
        if item.calls:
            waiting = set(item.calls)
            while index < len(items) and items[index].role == "tool" and items[index].answers in waiting:
                waiting.discard(items[index].answers)
                unit.append(index)
                index += 1
            if waiting:  # a call without (all of) its results
                orphans += len(unit)
                continue
        grouped.append(unit)
    return grouped, orphans


def cut_text(text: str, max_tokens: int, counter: TokenCounter, *, over: bool = False) -> str:
    """`text` within `max_tokens`: its head and tail around a cut mark (or nothing, if even that cannot fit).
    `over`: the caller knows `text` is over, so it is not counted whole (a long text costs counts of the cap's size)."""
    if not over and counter.count(text) <= max_tokens:
        return text
    room = max_tokens - counter.count(CUT_MARK)
    if room <= 1:
        return counter.truncate(text, max_tokens)
    head = counter.truncate(text, room // 2)
    reach = 64 * room + 1024  # characters the tail is looked for in, so no copy of a huge text is made
    tail = counter.truncate_start(text[max(len(head), len(text) - reach) :], room - counter.count(head))
    candidate = head + CUT_MARK + tail
    return candidate if counter.count(candidate) <= max_tokens else counter.truncate(candidate, max_tokens)


def extractive_summary(previous: str, dropped: Sequence[Item], max_tokens: int, counter: TokenCounter) -> str:
    """A summary without a model: one line per dropped message (its start), newest lines kept when space runs out."""
    lines = [line for line in previous.splitlines()[1:] if line.strip()]
    for item in dropped:
        words = " ".join(item.text.split()[:24])
        what = f"called {words}" if item.calls else words
        lines.append(f"- {item.role}: {what}{' …' if len(item.text.split()) > 24 else ''}")
    title = "Summary of earlier messages no longer shown (their first words):"
    kept: list[str] = []
    for line in reversed(lines):
        if counter.count("\n".join([title, line, *kept])) > max_tokens:
            break
        kept.insert(0, line)
    return "\n".join([title, *kept]) if kept else ""


@dataclass
class HistoryGuard:
    """Chooses, before each model call, the history that fits `budget` tokens next to the system message.

    With a summary, what has been summarised stays summarised (a running summary): the boundary only moves on."""

    budget: int
    counter: TokenCounter
    policy: HistoryPolicy = field(default_factory=HistoryPolicy)
    summariser: Summariser = extractive_summary
    summary: str = ""
    summarised: int = 0  # items before this index are folded into the summary (or were dropped)
    anchor: Item | None = None  # the last item folded in: finds the boundary again if the history was trimmed

    def fit(self, system: str, items: Sequence[Item], tools: int = 0) -> Fitted:
        """What of `items` to send after `system`; `tools` is what the tool definitions sent with the call take."""
        grouped, orphans = units(items)
        system_cost = REPLY_PRIMING + item_tokens(Item("system", system), self.counter) + tools
        room = self.budget - system_cost
        if room < 0:
            raise BudgetError(
                f"the system message and tool definitions alone ({system_cost} tokens) are over the payload budget"
                f" of {self.budget};"
                " lower the agent's `budget` or raise its `context_limit`"
            )
        opening = grouped[0] if grouped and not items[grouped[0][0]].calls else None
        task = opening if self.policy.keep_task else None
        self.summarised = self._boundary(items)
        rest = [unit for unit in grouped if unit is not task and unit[0] >= self.summarised]
        texts: dict[int, str] = {}
        if task is not None:
            texts = self._fit_unit(items, task, room // 2 if rest else room) or {}
            room -= self._cost(items, texts)
        candidates = _turn_limited(items, rest, self.policy.max_turns)
        summarising = self.policy.summary_tokens > 0
        everything = self._newest_that_fit(items, candidates, room)
        overhead = item_tokens(summary_item(""), self.counter)
        reserve = overhead + self.policy.summary_tokens if summarising and (self.summary or everything != rest) else 0
        chosen = everything if not reserve else self._newest_that_fit(items, candidates, room - reserve)
        if chosen:
            texts |= {i: items[i].text for unit in chosen for i in unit}
        elif candidates:  # even the newest unit does not fit whole: send it cut
            last = candidates[-1]
            newest = self._fit_unit(items, last, room - reserve) or self._fit_unit(items, last, room)
            if newest:
                chosen, texts = [last], texts | newest
        first_kept = min((unit[0] for unit in chosen), default=len(items))
        if summarising:
            left = room - self._cost(items, {i: texts[i] for unit in chosen for i in unit}) - overhead
            self._summarise(items, rest, first_kept, min(self.policy.summary_tokens, left))
            self.summarised = max(self.summarised, first_kept)
            self.anchor = items[self.summarised - 1] if 0 < self.summarised <= len(items) else None
        keep = tuple(sorted(texts.items()))
        tokens = system_cost + self._cost(items, dict(keep))
        if self.summary:
            tokens += item_tokens(summary_item(self.summary), self.counter)
        cut = sum(1 for i, text in keep if text != items[i].text)
        return Fitted(keep, self.summary, tokens, len(items) - len(keep) - orphans, orphans, cut)

    def _cost(self, items: Sequence[Item], texts: dict[int, str]) -> int:
        return sum(item_tokens(items[i], self.counter, text) for i, text in texts.items())

    def _newest_that_fit(self, items: Sequence[Item], grouped: list[list[int]], room: int) -> list[list[int]]:
        chosen: list[list[int]] = []
        for unit in reversed(grouped):
            cost = sum(item_tokens(items[i], self.counter) for i in unit)
            if cost > room:
                break
            room -= cost
            chosen.insert(0, unit)
        return chosen

    def _fit_unit(self, items: Sequence[Item], unit: list[int], room: int) -> dict[int, str] | None:
        """The unit's texts, the largest cut first, until the unit fits `room`; None if it cannot. Tool calls are
        never cut (their arguments must stay valid JSON), only message texts and tool results."""
        texts = {i: items[i].text for i in unit}
        cuttable = [i for i in unit if not items[i].calls]
        if self._cost(items, {i: "" if i in cuttable else texts[i] for i in unit}) > room:
            return None
        while (over := self._cost(items, texts) - room) > 0:
            sizes = {i: self.counter.count(texts[i]) for i in cuttable}
            largest = max(sizes, key=lambda i: sizes[i])
            texts[largest] = cut_text(texts[largest], max(0, sizes[largest] - over), self.counter)
        return texts

    def _summarise(self, items: Sequence[Item], rest: list[list[int]], first_kept: int, limit: int) -> None:
        """Fold the items dropped since the last call (those before `first_kept`) into the running summary, which
        must stay within `limit` tokens (less than `summary_tokens` when the budget is that tight)."""
        newly = [items[i] for unit in rest for i in unit if i < first_kept]
        if limit <= 0:
            self.summary = ""
        elif newly or self.counter.count(self.summary) > limit:
            summary = self.summariser(self.summary, newly, limit, self.counter)
            self.summary = self.counter.truncate(summary, limit)  # a summariser may overrun

    def reset(self) -> None:
        self.summary, self.summarised, self.anchor = "", 0, None

    def _boundary(self, items: Sequence[Item]) -> int:
        """Where the summarised part ends in `items`. A history that only grows keeps the index; one trimmed by
        its store (a buffered context) has shifted, so the last summarised item is looked for (none: all is new)."""
        if self.anchor is None or (0 < self.summarised <= len(items) and items[self.summarised - 1] == self.anchor):
            return min(self.summarised, len(items))
        found = next((i for i in range(len(items) - 1, -1, -1) if items[i] == self.anchor), None)
        return 0 if found is None else found + 1


def _turn_limited(items: Sequence[Item], grouped: list[list[int]], max_turns: int | None) -> list[list[int]]:
    """The units of the last `max_turns` turns (a turn starts at a user message)."""
    if max_turns is None:
        return grouped
    starts = [position for position, unit in enumerate(grouped) if items[unit[0]].role == "user"]
    if len(starts) <= max_turns:
        return grouped
    return grouped[starts[-max_turns] :]


__all__ = [
    "Fitted",
    "HistoryGuard",
    "HistoryPolicy",
    "Item",
    "Summariser",
    "cut_text",
    "extractive_summary",
    "units",
]
