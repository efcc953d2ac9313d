"""The history guard on hand-made conversations, and a property over random ones: always within budget, and
never a tool result without its call (or a call without its results)."""

from __future__ import annotations

from collections.abc import Sequence

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rag_prompts import TokenCounter
from rag_prompts.payload.guard import by_role
from rag_prompts.payload.history import CUT_MARK, Fitted, HistoryGuard, HistoryPolicy, Item, summary_item, units

from .agent_helpers import assert_no_orphans

SYSTEM = "You answer claims questions from the policy excerpts."


def sent(system: str, items: Sequence[Item], fitted: Fitted) -> list[Item]:
    """The payload as a model would receive it: system, then the kept items with the summary after the task."""
    kept = [Item(items[i].role, text, items[i].calls, items[i].answers) for i, text in fitted.keep]
    if fitted.summary:
        first_user = next((n for n, item in enumerate(kept) if item.role == "user"), -1)
        kept.insert(first_user + 1, summary_item(fitted.summary))
    return [Item("system", system), *kept]


def assert_whole_units(items: Sequence[Item], fitted: Fitted) -> None:
    """Every kept result answers a kept call before it, and every kept call has all its results kept."""
    assert_no_orphans([items[index] for index, _ in fitted.keep])


def exchange(n: int, words: int = 40) -> list[Item]:
    return [Item("user", f"question {n} " + "detail " * words), Item("assistant", f"answer {n} " + "because " * words)]


def test_tool_calls_and_results_form_units_and_orphans_are_left_out() -> None:
    items = [
        Item("user", "task"),
        Item("tool", "a result whose call is gone", answers="lost"),
        Item("assistant", "lookup{}", calls=("c1", "c2")),
        Item("tool", "one", answers="c1"),
        Item("tool", "two", answers="c2"),
        Item("assistant", "lookup{}", calls=("c3",)),  # its result never came
        Item("assistant", "done"),
    ]
    grouped, orphans = units(items)
    assert grouped == [[0], [2, 3, 4], [6]]
    assert orphans == 2


def test_within_budget_the_task_and_the_newest_turns_are_kept_and_the_rest_summarised(counter: TokenCounter) -> None:
    items = [Item("user", "Triage claim CLM-9 for late notification.")]
    for n in range(1, 30):
        items += exchange(n)
    guard = HistoryGuard(900, counter, HistoryPolicy(summary_tokens=120))
    fitted = guard.fit(SYSTEM, items)
    payload = sent(SYSTEM, items, fitted)
    assert by_role(payload, counter)[2] == fitted.tokens <= 900
    kept = [index for index, _ in fitted.keep]
    assert kept[0] == 0  # the original task
    assert kept[-1] == len(items) - 1 and kept[1:] == list(range(kept[1], len(items)))  # newest, contiguous
    assert fitted.dropped == len(items) - len(kept) > 0
    assert fitted.summary.startswith("Summary of earlier messages")
    assert f"question {(kept[1] - 1) // 2}" in fitted.summary  # the newest dropped ones are in the summary
    assert counter.count(fitted.summary) <= 120


def test_turn_limit_keeps_the_last_turns_only(counter: TokenCounter) -> None:
    items = [Item("user", "the task")] + [item for n in range(1, 10) for item in exchange(n, 3)]
    fitted = HistoryGuard(100_000, counter, HistoryPolicy(max_turns=2, summary_tokens=0)).fit(SYSTEM, items)
    assert [items[i].text.split()[:2] for i, _ in fitted.keep] == [
        ["the", "task"],
        ["question", "8"],
        ["answer", "8"],
        ["question", "9"],
        ["answer", "9"],
    ]
    assert fitted.summary == ""


def test_a_newest_message_too_large_for_the_budget_is_cut_head_and_tail(counter: TokenCounter) -> None:
    huge = "BEGIN " + "row of data " * 4000 + " END"
    items = [Item("user", "the task"), Item("user", huge)]
    fitted = HistoryGuard(600, counter, HistoryPolicy(summary_tokens=0)).fit(SYSTEM, items)
    text = dict(fitted.keep)[1]
    assert text.startswith("BEGIN") and text.endswith("END") and CUT_MARK in text
    assert fitted.cut == 1 and fitted.tokens <= 600
    assert by_role(sent(SYSTEM, items, fitted), counter)[2] == fitted.tokens


def test_the_summary_runs_on_and_summarised_messages_do_not_come_back(counter: TokenCounter) -> None:
    guard = HistoryGuard(700, counter, HistoryPolicy(summary_tokens=100))
    items = [Item("user", "the task")] + [item for n in range(1, 12) for item in exchange(n)]
    first = guard.fit(SYSTEM, items)
    items.append(Item("user", "short?"))  # a tiny message would leave room for older ones again
    second = guard.fit(SYSTEM, items)
    assert min(i for i, _ in second.keep if i > 0) >= min(i for i, _ in first.keep if i > 0)
    assert second.tokens <= 700


def test_a_system_message_over_the_payload_budget_is_a_clear_error(counter: TokenCounter) -> None:
    from rag_prompts import BudgetError

    with pytest.raises(BudgetError, match="over the payload budget of 10"):
        HistoryGuard(10, counter).fit(SYSTEM, [Item("user", "hi")])


WORDS = st.text(alphabet='abc xyz.\n{}"', min_size=0, max_size=400)


@st.composite
def conversations(draw: st.DrawFn) -> list[Item]:
    items: list[Item] = []
    for step in range(draw(st.integers(0, 40))):
        kind = draw(st.sampled_from(["user", "assistant", "calls", "orphan", "unanswered"]))
        if kind in ("user", "assistant"):
            items.append(Item(kind, draw(WORDS)))
        elif kind == "calls":
            ids = tuple(f"c{step}-{n}" for n in range(draw(st.integers(1, 3))))
            items.append(Item("assistant", "lookup" + draw(WORDS)[:40], calls=ids))
            items += [Item("tool", draw(WORDS) * draw(st.integers(1, 20)), answers=call) for call in ids]
        elif kind == "orphan":
            items.append(Item("tool", draw(WORDS), answers=f"gone{step}"))
        else:
            items.append(Item("assistant", "lookup{}", calls=(f"never{step}",)))
    return items


@settings(max_examples=150, deadline=None)
@given(
    items=conversations(),
    budget=st.integers(60, 3000),
    turns=st.one_of(st.none(), st.integers(1, 6)),
    summary=st.sampled_from([0, 40, 200]),
    calls=st.integers(1, 3),
)
def test_any_conversation_fits_its_budget_without_orphans(
    counter: TokenCounter, items: list[Item], budget: int, turns: int | None, summary: int, calls: int
) -> None:
    guard = HistoryGuard(budget, counter, HistoryPolicy(max_turns=turns, summary_tokens=summary))
    for end in range(len(items) - calls + 1 if len(items) >= calls else 1, len(items) + 1):  # a growing chat
        fitted = guard.fit(SYSTEM, items[:end])
        assert fitted.tokens <= budget
        assert by_role(sent(SYSTEM, items[:end], fitted), counter)[2] == fitted.tokens
        assert_whole_units(items[:end], fitted)
        first = units(items[:end])[0][:1]
        if first and not items[first[0][0]].calls and budget >= 400:  # the task is always sent (cut if it must be)
            assert first[0][0] in dict(fitted.keep)


def test_a_history_trimmed_by_its_store_sends_the_newest_and_summarises_the_rest(counter: TokenCounter) -> None:
    """A buffered store returns only its last messages, so positions shift: the summary boundary must follow."""
    guard = HistoryGuard(450, counter, HistoryPolicy(summary_tokens=60))
    everything = [Item("user", "the task")] + [item for n in range(1, 40) for item in exchange(n)]
    for end in range(2, len(everything) + 1):
        window = everything[max(0, end - 10) : end]  # what a buffer of 10 holds
        fitted = guard.fit(SYSTEM, window)
        assert fitted.tokens <= 450
        kept = [index for index, _ in fitted.keep]
        assert len(window) - 1 in kept, f"the newest message was not sent at {end}"
        first = min((index for index in kept if index > 0), default=0)  # index 0: the pinned opening message
        if first > 1:  # what was left out just before the kept messages is in the summary, not silently lost
            assert " ".join(window[first - 1].text.split()[:2]) in fitted.summary, f"lost at {end}"
