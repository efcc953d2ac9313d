"""Context windows of known chat models, for the default payload budget (context window minus the reply reserve)."""

from __future__ import annotations

# Input + output tokens a model accepts (providers' published figures). The longest matching prefix wins, so
# "gpt-4o-2024-08-06" is "gpt-4o" and "gpt-4-0613" is "gpt-4".
CONTEXT_LIMITS = {
    "gpt-3.5-turbo": 16_385,
    "gpt-4": 8_192,
    "gpt-4-32k": 32_768,
    "gpt-4-turbo": 128_000,
    "gpt-4o": 128_000,
    "gpt-4o-mini": 128_000,
    "gpt-4.1": 1_047_576,
    "gpt-5": 400_000,
    "o1": 200_000,
    "o3": 200_000,
    "o4-mini": 200_000,
    "claude-3": 200_000,
    "claude-sonnet-4": 200_000,
    "claude-opus-4": 200_000,
    "gemini-1.5": 1_048_576,
    "gemini-2": 1_048_576,
    "llama3": 8_192,
    "llama-3.1": 131_072,
    "mistral": 32_768,
    "qwen2.5": 32_768,
}
UNKNOWN_MODEL_CONTEXT = 8_192  # a small, safe guess for a model this table does not know: set `context_limit`
DEFAULT_REPLY_RESERVE = 1_024


def context_limit(model: str) -> int:
    """The context window of `model`, or UNKNOWN_MODEL_CONTEXT when no known prefix matches."""
    name = model.lower().rsplit("/", 1)[-1]  # "openai/gpt-4o" -> "gpt-4o"
    matches = [prefix for prefix in CONTEXT_LIMITS if name.startswith(prefix)]
    return CONTEXT_LIMITS[max(matches, key=len)] if matches else UNKNOWN_MODEL_CONTEXT
