"""The payload guard agents use, framework-neutral: what history fits the payload budget (`history.py`), large
tool outputs stored outside the prompt (`artifacts.py`), models' context windows (`limits.py`), the per-call
record (`record.py`), its log (`log.py`) and the glue every adapter goes through (`guard.py`).

A `summariser=` for `build_agent` is a `Summariser`: it receives the dropped history as `Item`s."""

from .history import HistoryGuard as HistoryGuard
from .history import HistoryPolicy as HistoryPolicy
from .history import Item as Item
from .history import Summariser as Summariser
from .history import extractive_summary as extractive_summary
from .record import ModelCall as ModelCall

__all__ = ["HistoryGuard", "HistoryPolicy", "Item", "ModelCall", "Summariser", "extractive_summary"]
