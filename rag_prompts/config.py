"""Settings: one validated model read from `rag_prompts.toml` and `RAG_PROMPTS_*` environment variables."""

from __future__ import annotations

import os
import tomllib
import warnings
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from .defaults import CACHED_CHUNKS, DEFAULT_EMBEDDING_MODEL
from .errors import ConfigError
from .payload.history import SUMMARY_TOKENS
from .payload.limits import DEFAULT_REPLY_RESERVE, context_limit
from .templates import packaged_prompt

CONFIG_FILE_NAME = "rag_prompts.toml"
ENV_PREFIX = "RAG_PROMPTS_"


class AgentProfile(BaseModel):
    """Per-agent overrides; anything left unset falls back to the top-level setting."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    base_message: str | None = None
    k: int | None = Field(default=None, ge=1, le=200)
    budget: int | None = Field(default=None, ge=1)
    tags: tuple[str, ...] = ()
    model: str | None = None
    context_limit: int | None = Field(default=None, ge=256)
    reply_reserve: int | None = Field(default=None, ge=0)
    history_turns: int | None = Field(default=None, ge=0)
    summary_tokens: int | None = Field(default=None, ge=0)
    tool_output_tokens: int | None = Field(default=None, ge=64)
    pinned: tuple[str, ...] = ()  # "source#Section": sent first in every message (see `pins`)

    @field_validator("pinned")
    @classmethod
    def _pin_shape(cls, pins: tuple[str, ...]) -> tuple[str, ...]:
        for pin in pins:
            source, mark, section = pin.partition("#")
            if not mark or not source.strip() or not section.strip():
                raise ValueError(f"pin {pin!r}: write it as 'folder/file.md#Section heading'")
        return pins


class ResolvedProfile(BaseModel):
    """An agent profile with every value filled in."""

    model_config = ConfigDict(frozen=True)

    name: str
    base_message: str
    k: int = Field(ge=1, le=200)
    budget: int = Field(ge=1)
    tags: tuple[str, ...]
    model: str = Field(min_length=1)
    payload_budget: int = Field(ge=1)  # context limit - reply reserve
    history_turns: int = Field(ge=0)  # 0: as many turns as fit
    summary_tokens: int = Field(ge=0)  # 0: dropped history is not summarised
    tool_output_tokens: int = Field(ge=64)
    pinned: tuple[str, ...] = ()

    @model_validator(mode="after")
    def _room_for_the_conversation(self) -> ResolvedProfile:
        if self.budget + self.tool_output_tokens > self.payload_budget:
            raise ValueError(
                f"budget ({self.budget}) + tool_output_tokens ({self.tool_output_tokens}) must fit the payload budget"
                f" ({self.payload_budget} = context_limit - reply_reserve); raise context_limit or lower the others"
            )
        return self


class Settings(BaseModel):
    """Everything rag-prompts can be configured with. Paths are relative to the config file's folder."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    store: str = ".rag_prompts/chroma"
    collection: str = "policies"
    corpus: tuple[str, ...] = ("corpus",)
    embedding_model: str = DEFAULT_EMBEDDING_MODEL
    embedding_device: str = "auto"
    embedding_batch_size: int = Field(default=64, ge=1, le=4096)
    embedding_backend: Literal["auto", "onnx", "torch"] = "auto"
    embedding_precision: Literal["fp32", "int8", "bf16"] = "fp32"  # int8: quantised ONNX; bf16: torch autocast
    chunk_tokens: int = Field(default=40, ge=16, le=8192)
    neighbour_window: int = Field(default=2, ge=0, le=16)  # neighbours on each side mixed into a chunk's vector
    neighbour_weight: float = Field(default=0.5, ge=0.0, le=10.0)
    block_weight: float = Field(default=0.3, ge=0.0, le=1.0)
    lexical_weight: float = Field(default=0.05, ge=0.0, le=1.0)
    region_weight: float = Field(default=0.02, ge=0.0, le=1.0)
    document_weight: float = Field(default=0.2, ge=0.0, le=1.0)
    centring_weight: float = Field(default=0.5, ge=0.0, le=1.0)
    focus_weight: float = Field(default=1.2, ge=0.0, le=4.0)
    cached_chunks: int = Field(default=CACHED_CHUNKS, ge=0)
    ingest_group_chunks: int = Field(default=1024, ge=8, le=100_000)  # chunks embedded and written together
    merge_sections: bool = True
    expand_context: bool = True
    model: str = "gpt-4"
    context_limit: int | None = Field(default=None, ge=256)  # None: the model's known context window
    reply_reserve: int = Field(default=DEFAULT_REPLY_RESERVE, ge=0)
    history_turns: int = Field(default=0, ge=0)
    summary_tokens: int = Field(default=SUMMARY_TOKENS, ge=0)
    tool_output_tokens: int = Field(default=1000, ge=64)
    keep_versions_days: int | None = Field(default=None, ge=0)  # archived document versions (None: keep all)
    payload_log: str = ""  # a JSONL file every agent's per-call token record is appended to ("": logger only)
    artifacts: str = ""  # where large tool outputs are stored ("": beside the store)
    k: int = Field(default=20, ge=1, le=200)
    budget: int = Field(default=1500, ge=1)
    base_message: str = Field(default_factory=lambda: packaged_prompt("base_message"))
    header: str = Field(default_factory=lambda: packaged_prompt("header"))
    agents: dict[str, AgentProfile] = Field(default_factory=dict)
    base_dir: Path = Field(default_factory=Path.cwd, exclude=True)

    @field_validator("collection")
    @classmethod
    def _collection_name(cls, value: str) -> str:
        if not (3 <= len(value) <= 512) or not value[0].isalnum() or not value[-1].isalnum():
            raise ValueError(
                "must be 3-512 characters of letters, digits, '.', '_' or '-', starting and ending alphanumeric"
            )
        return value

    def resolve_path(self, value: str) -> Path:
        path = Path(value).expanduser()
        return path if path.is_absolute() else self.base_dir / path

    @property
    def store_location(self) -> str:
        """The store as the store factory takes it: a URL, ':memory:', or an absolute folder path."""
        if self.store.startswith(("http://", "https://")) or self.store == ":memory:":
            return self.store
        return str(self.resolve_path(self.store))

    @property
    def payload_log_path(self) -> Path | None:
        """The JSONL token log, resolved like every path in the settings; None when not set."""
        return self.resolve_path(self.payload_log) if self.payload_log else None

    @property
    def artifacts_folder(self) -> Path:
        """Where large tool outputs are stored: `artifacts`, else an `artifacts` folder beside a folder store."""
        if self.artifacts:
            return self.resolve_path(self.artifacts)
        location = self.store_location
        if location.startswith(("http://", "https://")) or location == ":memory:":
            return self.resolve_path(".rag_prompts/artifacts")
        return Path(location).parent / "artifacts"

    @property
    def corpus_paths(self) -> list[Path]:
        return [self.resolve_path(path) for path in self.corpus]

    def profile(self, agent: str | None = None, **overrides: Any) -> ResolvedProfile:
        """The settings one agent composes with; `None` gives the top-level defaults.

        Keyword overrides (`base_message`, `k`, `budget`, `tags`, `model`) replace the profile's values where not
        None; `tags=()` lifts the profile's tag filter."""
        if agent is None:
            profile = AgentProfile()
        elif agent in self.agents:
            profile = self.agents[agent]
        else:
            known = ", ".join(sorted(self.agents)) or "none configured"
            raise ConfigError(f"unknown agent {agent!r}; known agents: {known} (add [agents.{agent}] to the config)")
        unknown = sorted(set(overrides) - set(AgentProfile.model_fields))
        if unknown:
            allowed = ", ".join(AgentProfile.model_fields)
            raise ConfigError(f"unknown profile override(s) {', '.join(unknown)}; allowed: {allowed}")
        values: dict[str, Any] = {
            "name": agent or "default",
            "base_message": profile.base_message if profile.base_message is not None else self.base_message,
            "k": profile.k or self.k,
            "budget": profile.budget or self.budget,
            "tags": profile.tags,
            "model": profile.model or self.model,
            "pinned": profile.pinned,
        }
        for key in ("context_limit", "reply_reserve", "history_turns", "summary_tokens", "tool_output_tokens"):
            chosen = overrides.pop(key, None)
            values[key] = chosen if chosen is not None else _first_set(getattr(profile, key), getattr(self, key))
        values.update({key: value for key, value in overrides.items() if value is not None})
        limit = values.pop("context_limit") or context_limit(values["model"])
        values["payload_budget"] = limit - values.pop("reply_reserve")
        try:
            return ResolvedProfile(**values)
        except ValidationError as error:
            where = f"agent {agent!r}" if agent else "default profile"
            raise ConfigError(f"{where}: {_describe(error, {})}") from error


def _first_set(*values: Any) -> Any:
    return next((value for value in values if value is not None), None)


_NOT_FROM_ENVIRONMENT = frozenset({"agents", "base_dir"})  # a table of profiles; the config file's folder
_ENV_KEYS = {key: key.upper() for key in Settings.model_fields if key not in _NOT_FROM_ENVIRONMENT}
RENAMED = {"context_window": "neighbour_window", "context_weight": "neighbour_weight"}  # old key -> new key


def _renamed(values: dict[str, Any], where: str, spell: Callable[[str], str] = str) -> dict[str, Any]:
    """`values` with deprecated keys moved to their new names (a key set under both names keeps the new one),
    each with a one-line DeprecationWarning naming the new key."""
    for old, new in RENAMED.items():
        if old in values:
            warnings.warn(f"{where}{spell(old)} is deprecated: use {spell(new)}", DeprecationWarning, stacklevel=4)
            value = values.pop(old)
            values.setdefault(new, value)
    return values


def _from_environment(environ: Mapping[str, str]) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for key, suffix in [*_ENV_KEYS.items(), *((old, old.upper()) for old in RENAMED)]:
        raw = environ.get(ENV_PREFIX + suffix)
        if raw is not None:
            values[key] = [part for part in raw.split(os.pathsep) if part] if key == "corpus" else raw
    return _renamed(values, "", lambda key: ENV_PREFIX + key.upper())


def _describe(error: ValidationError, origin: Mapping[str, str]) -> str:
    problems = []
    for item in error.errors():
        key = ".".join(str(part) for part in item["loc"])
        where = origin.get(str(item["loc"][0]), "") if item["loc"] else ""
        if item["type"] == "extra_forbidden":
            problems.append(f"{where}{key}: unknown setting")
        else:
            problems.append(f"{where}{key}: {item['msg']}" if key else str(item["msg"]))
    return "; ".join(problems)


def load_settings(
    path: str | Path | None = None, environ: Mapping[str, str] | None = None, **overrides: Any
) -> Settings:
    """Read settings from `path` (default: ./rag_prompts.toml if present), then environment variables, then
    keyword overrides. Errors name the file or variable and the key at fault."""
    environ = os.environ if environ is None else environ
    explicit = path is not None
    config_path = Path(path) if path is not None else Path.cwd() / CONFIG_FILE_NAME
    values: dict[str, Any] = {}
    origin: dict[str, str] = {}
    if config_path.is_file():
        try:
            values = tomllib.loads(config_path.read_text("utf-8"))
        except tomllib.TOMLDecodeError as error:
            raise ConfigError(f"{config_path}: invalid TOML: {error}") from error
        except (OSError, UnicodeDecodeError) as error:
            raise ConfigError(f"{config_path}: cannot read: {error}") from error
        values = _renamed(values, f"{config_path}: ")
        origin = {key: f"{config_path}: " for key in values}
        base_dir = config_path.resolve().parent
    elif explicit:
        raise ConfigError(f"{config_path}: config file not found")
    else:
        base_dir = Path.cwd()
    environment = _from_environment(environ)
    origin.update({key: f"{ENV_PREFIX}{_ENV_KEYS[key]}: " for key in environment})
    values.update(environment)
    values.update(_renamed({key: value for key, value in overrides.items() if value is not None}, "load_settings: "))
    try:
        return Settings(**values, base_dir=base_dir)
    except ValidationError as error:
        raise ConfigError(_describe(error, origin)) from error
