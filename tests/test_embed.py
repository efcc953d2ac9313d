"""The embedder: normalised vectors, and the onnxruntime query path agreeing with torch."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from rag_prompts import EmbeddingError, SentenceTransformerEmbedder
from rag_prompts.config import DEFAULT_EMBEDDING_MODEL
from rag_prompts.embed import _check_bf16, native_bf16

TEXTS = [
    "Who approves a claim payment of $42,000?",
    "How long are call recordings kept under the retention schedule?",
    "Report a lost laptop",
]


def test_vectors_are_normalised_and_of_the_model_dimension(embedder: SentenceTransformerEmbedder) -> None:
    vectors = embedder.embed(TEXTS)
    assert vectors.shape == (3, embedder.dimension) == (3, 384) and vectors.dtype == np.float32
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)


def torch_vectors(embedder: SentenceTransformerEmbedder, texts: list[str]) -> np.ndarray:
    return np.asarray(embedder._model.encode(texts, normalize_embeddings=True, convert_to_numpy=True))


def test_default_path_is_onnx_on_cpu_and_matches_torch(embedder: SentenceTransformerEmbedder) -> None:
    """Queries and batches (of very different lengths, padded per batch) give torch's vectors."""
    assert embedder.query_backend == embedder.backend == "onnx"  # the [onnx] extra is installed by the set-up
    queries = np.vstack([embedder.embed_query(text + " (fresh)") for text in TEXTS])
    assert np.abs(queries - torch_vectors(embedder, [text + " (fresh)" for text in TEXTS])).max() < 1e-5
    mixed = [*TEXTS, "word " * 300, "x", "A policy paragraph about claims. " * 12]
    assert np.abs(embedder.embed(mixed) - torch_vectors(embedder, mixed)).max() < 1e-5


def test_int8_precision_is_close_to_fp32_and_named_apart(embedder: SentenceTransformerEmbedder) -> None:
    quantised = SentenceTransformerEmbedder(precision="int8")
    assert quantised.name == "all-MiniLM-L6-v2@int8" and quantised.backend == "onnx"  # a store keeps them apart
    vectors = quantised.embed(TEXTS)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert (vectors * embedder.embed(TEXTS)).sum(axis=1).min() > 0.97  # one scale per channel (per tensor: ~0.93)
    assert quantised.embed_query(TEXTS[0]) @ embedder.embed_query(TEXTS[0]) > 0.97
    with pytest.raises(EmbeddingError, match="embedding_precision='int8' runs through onnxruntime"):
        SentenceTransformerEmbedder(backend="torch", precision="int8")


@pytest.mark.skipif(not native_bf16("cpu"), reason="this CPU has neither AMX nor AVX-512 BF16")
def test_bf16_precision_runs_torch_in_bfloat16_close_to_fp32_and_named_apart(
    embedder: SentenceTransformerEmbedder,
) -> None:
    half = SentenceTransformerEmbedder(precision="bf16")
    assert half.name == "all-MiniLM-L6-v2@bf16" and half.backend == "torch"  # a store keeps them apart
    mixed = [*TEXTS, "word " * 300, "A policy paragraph about claims. " * 12]
    vectors = half.embed(mixed)
    assert vectors.dtype == np.float32 and np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    agreement = (vectors * embedder.embed(mixed)).sum(axis=1)
    assert agreement.min() > 0.999 and np.abs(vectors - embedder.embed(mixed)).max() > 1e-5  # close, not fp32
    assert half.embed_query(TEXTS[0]) @ embedder.embed_query(TEXTS[0]) > 0.999


def test_bf16_is_refused_where_it_would_be_emulated_or_run_through_onnx() -> None:
    assert not native_bf16("mps") and not native_bf16("meta")
    with pytest.raises(EmbeddingError, match="embedding_precision='bf16' needs native bfloat16 on 'mps'"):
        _check_bf16("mps")
    with pytest.raises(EmbeddingError, match="embedding_precision='bf16' runs through torch"):
        SentenceTransformerEmbedder(backend="onnx", precision="bf16")
    with pytest.raises(EmbeddingError, match="embedding_precision must be 'fp32', 'int8' or 'bf16'"):
        SentenceTransformerEmbedder(precision="fp16")


def test_torch_backend_and_invalid_backend() -> None:
    assert SentenceTransformerEmbedder(backend="torch").query_backend == "torch"
    with pytest.raises(EmbeddingError, match="embedding_backend must be 'auto', 'onnx' or 'torch'"):
        SentenceTransformerEmbedder(backend="tensorrt")


def test_onnx_and_int8_stay_on_the_cpu_and_refuse_another_device() -> None:
    """onnxruntime runs on the CPU here: "auto" then means the CPU (even on a GPU machine), and a GPU asked for
    explicitly is refused before any model or device is touched, naming the settings to change."""
    assert SentenceTransformerEmbedder(device="auto", precision="int8").device == "cpu"
    for backend, precision, named in (("onnx", "fp32", "embedding_backend='onnx'"),
                                      ("auto", "int8", "embedding_precision='int8'")):  # fmt: skip
        with pytest.raises(EmbeddingError, match=f"{named} runs on the CPU .*embedding_device is 'cuda:1'"):
            SentenceTransformerEmbedder(device="cuda:1", backend=backend, precision=precision)


def test_unknown_model_is_a_clear_error() -> None:
    with pytest.raises(EmbeddingError, match="cannot load embedding model '/no/such/model'"):
        SentenceTransformerEmbedder("/no/such/model")


def test_model_configured_by_folder_path_loads_and_agrees(embedder: SentenceTransformerEmbedder) -> None:
    from rag_prompts.embed import bundled_model_path

    by_path = SentenceTransformerEmbedder(bundled_model_path(), backend="torch")
    assert by_path.name == bundled_model_path() and by_path.dimension == 384
    assert np.abs(by_path.embed(TEXTS) - embedder.embed(TEXTS)).max() < 1e-5


def test_onnx_runs_the_fused_graph_and_falls_back_to_the_plain_export(
    embedder: SentenceTransformerEmbedder, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The default model runs onnxruntime's fused transformer graph; a fused graph whose vectors differ from
    the plain export's is set aside once and the plain export runs instead."""
    from rag_prompts import onnx_query
    from rag_prompts.embed import resolve_model

    encoder = embedder._query_encoder
    assert encoder is not None and encoder.graph.endswith(".fused.onnx")
    plain = onnx_query.cache_dir() / encoder.graph.replace(".fused.onnx", ".onnx")
    copy = tmp_path / plain.name
    shutil.copyfile(plain, copy)
    monkeypatch.setattr(onnx_query, "FUSED_TOLERANCE", -1.0)  # no fused graph can pass
    assert onnx_query._fused(embedder._model, copy) == copy
    assert copy.with_name(copy.stem + ".fused.rejected").exists() and not list(tmp_path.glob("*.fused.onnx"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    (onnx_query.cache_dir()).mkdir(parents=True)
    shutil.copyfile(copy, onnx_query.cache_dir() / copy.name)
    shutil.copyfile(
        copy.with_name(copy.stem + ".fused.rejected"), onnx_query.cache_dir() / f"{copy.stem}.fused.rejected"
    )
    fallback = onnx_query.OnnxQueryEncoder(embedder._model, resolve_model(DEFAULT_EMBEDDING_MODEL))
    assert fallback.graph == copy.name
    assert np.abs(fallback.encode_batch(TEXTS) - torch_vectors(embedder, TEXTS)).max() < 1e-5
