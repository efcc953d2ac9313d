"""rag-prompts: minimal, budgeted system messages built from only the policy passages each task needs."""

from .agents import build_agent as build_agent
from .chunking import chunk_document as chunk_document
from .compose import compose_message as compose_message
from .config import AgentProfile as AgentProfile
from .config import Settings as Settings
from .config import load_settings as load_settings
from .embed import Embedder as Embedder
from .embed import SentenceTransformerEmbedder as SentenceTransformerEmbedder
from .errors import BudgetError as BudgetError
from .errors import ConfigError as ConfigError
from .errors import EmbeddingError as EmbeddingError
from .errors import EmptyStoreError as EmptyStoreError
from .errors import LoadError as LoadError
from .errors import RagPromptsError as RagPromptsError
from .errors import StoreBusyError as StoreBusyError
from .errors import StoreError as StoreError
from .ingest import IngestReport as IngestReport
from .ingest import ingest as ingest
from .loaders import load_document as load_document
from .payload.history import HistoryGuard as HistoryGuard
from .payload.history import HistoryPolicy as HistoryPolicy
from .payload.history import Item as Item
from .payload.history import Summariser as Summariser
from .payload.history import extractive_summary as extractive_summary
from .payload.record import ModelCall as ModelCall
from .pipeline import Pipeline as Pipeline
from .records import Chunk as Chunk
from .records import ComposedPrompt as ComposedPrompt
from .records import Document as Document
from .records import DroppedChunk as DroppedChunk
from .records import Hit as Hit
from .records import IncludedChunk as IncludedChunk
from .store import ChunkStore as ChunkStore
from .store import open_store as open_store
from .tokens import TokenCounter as TokenCounter
from .tokens import token_counter as token_counter

__version__ = "0.1.0"

__all__ = [
    "AgentProfile",
    "BudgetError",
    "Chunk",
    "ChunkStore",
    "ComposedPrompt",
    "ConfigError",
    "Document",
    "DroppedChunk",
    "Embedder",
    "EmbeddingError",
    "EmptyStoreError",
    "HistoryGuard",
    "HistoryPolicy",
    "Hit",
    "IncludedChunk",
    "IngestReport",
    "Item",
    "LoadError",
    "ModelCall",
    "Pipeline",
    "RagPromptsError",
    "SentenceTransformerEmbedder",
    "Settings",
    "StoreBusyError",
    "StoreError",
    "Summariser",
    "TokenCounter",
    "build_agent",
    "chunk_document",
    "compose_message",
    "extractive_summary",
    "ingest",
    "load_document",
    "load_settings",
    "open_store",
    "token_counter",
]
