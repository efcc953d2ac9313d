"""The fence around retrieved text: what a document or a file name may not bring into a system message.

Retrieved text goes into `<policy source="..." section="...">` ... `</policy>` blocks. No document text and no
file name or section title may produce a line that closes that fence, opens another one, or opens a new role in a
chat template (the special tokens of Llama 3, Qwen/ChatML, Mistral, DeepSeek, Gemma, Phi and the like).

Matching is done on a folded copy of the text: each character NFKC-normalised and lower-cased, invisible
characters (zero-width, bidi controls, variation selectors, combining marks) left out and a few Cyrillic and Greek
look-alike letters read as Latin, so `＜/policy＞`, `</pol\u200bicy>` or `<｜User｜>` are found like their plain
spellings. What is sent keeps the text as it was, except that

- the markup characters of every match (`<`, `>`, `|`, `[`, `]` and their full-width forms) become look-alikes
  that no tokenizer or parser reads as markup (‹ › ¦ ⟦ ⟧);
- invisible format characters are removed (zero-width spaces, bidi overrides and isolates, tag characters, the
  byte-order mark; the zero-width joiners that scripts and emoji need are kept);
- NUL and the other control characters are removed, except tab and line breaks (vertical tab, form feed, the
  separators and NEL become a plain line break).

The result can be shorter than the input, so offsets always refer to the original document; the same text always
gives the same result, so `neutralise(document.text[start:end])` is what a message carries for a chunk.
"""

from __future__ import annotations

import re
import unicodedata
from functools import lru_cache

# Format characters (category Cf, Unicode 15) removed from what is sent; U+200C/U+200D are kept (see above).
_FORMAT = (
    "\u00ad\u0600-\u0605\u061c\u06dd\u070f\u0890\u0891\u08e2\u180e\u200b\u200e\u200f\u202a-\u202e\u2060-\u2064"
    "\u2066-\u206f\ufeff\ufff9-\ufffb\U000110bd\U000110cd\U00013430-\U0001343f\U0001bca0-\U0001bca3"
    "\U0001d173-\U0001d17a\U000e0001\U000e0020-\U000e007f"
)
_CONTROL = "\x00-\x08\x0e-\x1b\x1f\x7f-\x84\x86-\x9f"  # C0 and C1 controls that are neither whitespace nor a break
_REMOVED = re.compile(f"[{_FORMAT}{_CONTROL}]+")
_BREAKS = re.compile("[\x0b\x0c\x1c-\x1e\x85]")  # line breaks of str.splitlines that few readers expect
# Every character str.splitlines breaks a line at, and tab: an attribute has spaces instead.
_NOT_IN_ATTRIBUTE = re.compile("[\t\n\r\x0b\x0c\x1c-\x1e\x85\u2028\u2029]+")
# Invisible when read, so left out of the folded copy only (they are kept in what is sent).
_IGNORED = frozenset(
    "\u034f\u115f\u1160\u17b4\u17b5\u180b\u180c\u180d\u180f\u200c\u200d\u3164\uffa0"
    + "".join(map(chr, range(0xFE00, 0xFE10)))
    + "".join(map(chr, range(0xFFF0, 0xFFF9)))
    + "".join(map(chr, range(0xE0100, 0xE01F0)))
)
_LATIN_LOOKALIKES = str.maketrans(
    "аеорсухіјѕӏАВЕКМНОРСТХУІЈЅοριναεκτυχΑΒΕΖΗΙΚΜΝΟΡΤΥΧı",
    "aeopcyxijslabekmhopctxyijsopivaektyxabezhikmnoptyxi",
)
_MARKUP = {"<": "‹", ">": "›", "|": "¦", "[": "⟦", "]": "⟧"}
_LOOKALIKE = str.maketrans(_MARKUP)
_OPENING = re.compile("[<\\[\ufe64\uff1c\ufe47\uff3b]")  # "<" or "[", or a character NFKC makes one of them

_SPECIAL = re.compile(
    r"<\s*/?\s*policy\b"  # our own fence, opening or closing, however spaced
    r"|<\|[^|<>\n]{1,64}\|>"  # <|im_start|> <|eot_id|> <|user|> <|end|> ..., DeepSeek's <｜User｜> once folded
    r"|<\s*/?\s*(?:s|unk|pad|bos|eos|sep|cls|mask|im_start|im_end|im_sep|start_of_turn|end_of_turn|start_of_image"
    r"|end_of_image|think|tool_call|tool_response|tools|function_call)\s*>"  # Gemma, Llama 2, Qwen, Phi ...
    r"|<<\s*/?\s*sys\s*>>"  # Llama 2
    r"|\[\s*/?\s*(?:inst|system_prompt|available_tools|tool_calls|tool_results|tool_content|call_id|think|img"
    r"|img_break|img_end|prefix|middle|suffix|args)\s*\]",  # Mistral
    re.IGNORECASE,
)


@lru_cache(maxsize=8192)
def _fold(character: str) -> str:
    """What `character` reads as, for matching: NFKC, lower case, Latin for look-alikes; "" when invisible."""
    if character in _IGNORED or unicodedata.category(character) in ("Mn", "Me", "Cf"):
        return ""
    folded = unicodedata.normalize("NFKC", character)
    folded = "".join(part for part in folded if unicodedata.category(part) not in ("Mn", "Me", "Cf"))
    return folded.lower().translate(_LATIN_LOOKALIKES)


def _folded(text: str) -> tuple[str, list[int]]:
    """The folded copy of `text`, and for each of its characters the index of the character it came from."""
    parts = [_fold(character) for character in text]
    origin = [index for index, part in enumerate(parts) for _ in part]
    return "".join(parts), origin


def _defang(text: str) -> str:
    """`text` with the markup characters of every special sequence replaced, until none is left."""
    while True:
        if not _OPENING.search(text):
            return text  # every special sequence starts with one of these
        if text.isascii():
            matches = [(m.start(), m.end()) for m in _SPECIAL.finditer(text)]
            origin: list[int] | None = None
        else:
            folded, origin = _folded(text)
            matches = [(m.start(), m.end()) for m in _SPECIAL.finditer(folded)]
        if not matches:
            return text
        characters = list(text)
        for start, end in matches:
            first, last = (start, end) if origin is None else (origin[start], origin[end - 1] + 1)
            for index in range(first, last):
                folded_character = _fold(characters[index])
                if any(mark in folded_character for mark in _MARKUP):
                    characters[index] = folded_character.translate(_LOOKALIKE)
        text = "".join(characters)  # a match can hide another that overlaps it: look again


@lru_cache(maxsize=16_384)
def _neutralise(text: str) -> str:
    return _defang(_BREAKS.sub("\n", _REMOVED.sub("", text)))


def neutralise(text: str) -> str:
    """`text` as it may appear inside the fence (see the module docstring); the same text, the same result."""
    return _neutralise(text) if len(text) <= 2048 else _defang(_BREAKS.sub("\n", _REMOVED.sub("", text)))


def attribute(value: str) -> str:
    """A file name or section title as a fence attribute: one line (every line break becomes a space), no
    double quote (nor its full-width form), no special sequence, no format or control character."""
    return neutralise(_NOT_IN_ATTRIBUTE.sub(" ", _REMOVED.sub("", value))).replace('"', "'").replace("\uff02", "'")


__all__ = ["attribute", "neutralise"]
