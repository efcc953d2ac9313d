"""rag-prompts: minimal, budgeted system messages built from only the policy passages each task needs.

The front door is `Pipeline`, `build_agent` (and its `rag_prompts.classic` / `rag_prompts.agent_framework` faces),
`load_settings` and `token_counter`; `__all__` is those, the types they take and return, and the exception tree.
The rest lives in named submodules: `rag_prompts.payload` (the payload guard: `Item`, `Summariser`, `HistoryGuard`
...), `rag_prompts.store` (`open_store`), `rag_prompts.chunking`, `rag_prompts.compose`, `rag_prompts.loaders` ...
"""

from .agents import build_agent as build_agent
from .config import AgentProfile as AgentProfile
from .config import ResolvedProfile as ResolvedProfile
from .config import Settings as Settings
from .config import load_settings as load_settings
from .embed import Embedder as Embedder
from .embed import SentenceTransformerEmbedder as SentenceTransformerEmbedder
from .errors import AuditError as AuditError
from .errors import BudgetError as BudgetError
from .errors import ConfigError as ConfigError
from .errors import EmbeddingError as EmbeddingError
from .errors import EmptyStoreError as EmptyStoreError
from .errors import LoadError as LoadError
from .errors import RagPromptsError as RagPromptsError
from .errors import StoreBusyError as StoreBusyError
from .errors import StoreError as StoreError
from .ingest import IngestReport as IngestReport
from .payload.record import ModelCall as ModelCall
from .pipeline import Pipeline as Pipeline
from .records import Chunk as Chunk
from .records import ComposedPrompt as ComposedPrompt
from .records import DroppedChunk as DroppedChunk
from .records import Hit as Hit
from .records import IncludedChunk as IncludedChunk
from .retrieve import Retriever as Retriever
from .store import ChunkStore as ChunkStore
from .store import StoreStats as StoreStats
from .tokens import TokenCounter as TokenCounter
from .tokens import token_counter as token_counter

__version__ = "0.1.0"

__all__ = [
    "AgentProfile",
    "AuditError",
    "BudgetError",
    "Chunk",
    "ChunkStore",
    "ComposedPrompt",
    "ConfigError",
    "DroppedChunk",
    "Embedder",
    "EmbeddingError",
    "EmptyStoreError",
    "Hit",
    "IncludedChunk",
    "IngestReport",
    "LoadError",
    "ModelCall",
    "Pipeline",
    "RagPromptsError",
    "ResolvedProfile",
    "Retriever",
    "SentenceTransformerEmbedder",
    "Settings",
    "StoreBusyError",
    "StoreError",
    "StoreStats",
    "TokenCounter",
    "build_agent",
    "load_settings",
    "token_counter",
]
