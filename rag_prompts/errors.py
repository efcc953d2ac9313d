"""The exception tree: every error rag-prompts raises on purpose derives from RagPromptsError."""

from __future__ import annotations


class RagPromptsError(Exception):
    """Base class; the CLI turns these into a one-line message and a non-zero exit code."""


class ConfigError(RagPromptsError):
    """The configuration file or an environment variable is invalid; the message names the key."""


class LoadError(RagPromptsError):
    """A document could not be read or parsed; the message names the file and the reason."""

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = path
        self.reason = reason


class StoreError(RagPromptsError):
    """The vector store is unreachable, misconfigured or incompatible with the settings."""


class EmbeddingError(RagPromptsError):
    """The embedding model could not be loaded or produced unusable vectors."""


class BudgetError(RagPromptsError):
    """A system message cannot be composed within the token budget (e.g. the base message alone is too long)."""


class StoreBusyError(StoreError):
    """Another process is writing to the same store (ingest or compact); the message names its pid."""


class AuditError(RagPromptsError):
    """A logged call is not in the payload log, or its message cannot be rebuilt; the message says why."""


class EmptyStoreError(StoreError):
    """A search or compose on a store that holds no documents."""
