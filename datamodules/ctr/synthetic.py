"""A Criteo-shaped synthetic CTR set with planted feature crosses, needing no files.

Rows look like Criteo's: a 0/1 label, numeric fields I1..IM (with missing values) and categorical fields C1..CN
(hex strings from Zipf-distributed vocabularies of Criteo-like, very different sizes, with missing values). The
label is Bernoulli(sigmoid(logit)) with
    logit = b + sum_f a_f(C_f)                           (first-order signal, for every field)
          + beta  * sum_{(f,g) in pairs} s_f(C_f) s_g(C_g)  (planted categorical crosses, s = random +-1 per value)
          + gamma * z_1 z_2                              (a planted numeric cross)
          + gamma * z_3 s_h(C_h)                         (a planted numeric x categorical cross)
where z_m is field m's latent standard-normal value. Each cross term has zero mean given either factor alone, so a
first-order model (LR) cannot see it, and any model with interactions can. b is set for ~25% positives.
Numeric values are written as BARS Criteo_x1 writes them (`dense_format="x1"`: floats in [0, 1], here
(z + 4) / 8 clipped) or as Kaggle's raw counts (`"raw"`: floor(exp(0.8 z + 1.5)), for Criteo_x4's bucketing).
"""
from __future__ import annotations

from typing import Iterator

import numpy as np
import pandas as pd

from contracts.registry import register_dataset
from datamodules.ctr.base import CTRDataModule

CRITEO_LIKE_VOCABS = (1400, 550, 1e6, 2e5, 300, 24, 12000, 630, 3, 9e4, 5600, 8e5, 3200, 27, 14000, 5e5, 10, 5600,
                      2200, 4, 7e5, 18, 15, 1.4e5, 100, 9e4)


def criteo_shaped_frame(rows: int, num_dense: int = 13, num_sparse: int = 26, seed: int = 0,
                        max_vocab: int = 10000, vocab_scale: float = 1.0, cross_pairs: int = 3,
                        cross_strength: float = 1.5, dense_cross_strength: float = 1.0, linear_strength: float = 0.3,
                        missing_rate: float = 0.05, zipf_a: float = 1.1, dense_format: str = "x1",
                        label_col: str = "label") -> pd.DataFrame:
    """The generator, vectorised over rows (one numpy draw per field). Same seed -> same rows and label model."""
    if num_sparse < 2 * cross_pairs + (1 if num_dense >= 3 else 0):
        raise ValueError("not enough categorical fields for the planted crosses")
    rng = np.random.default_rng(seed)
    vocabs = [max(2, min(max_vocab, int(CRITEO_LIKE_VOCABS[f % len(CRITEO_LIKE_VOCABS)] * vocab_scale)))
              for f in range(num_sparse)]
    # The crossed fields get mid-sized vocabularies so the crosses are learnable from a modest sample.
    for f in range(2 * cross_pairs + 1):
        vocabs[f] = max(4, min(vocabs[f], int(50 * vocab_scale) or 4))
    z = rng.standard_normal((rows, num_dense))
    codes = np.empty((rows, num_sparse), dtype=np.int64)
    signs = np.empty((rows, num_sparse))
    logit = np.zeros(rows)
    for f, v in enumerate(vocabs):
        p = 1.0 / np.arange(1, v + 1) ** zipf_a
        codes[:, f] = rng.choice(v, size=rows, p=p / p.sum())
        table_sign = rng.choice([-1.0, 1.0], size=v)
        table_linear = rng.normal(0, linear_strength, size=v)
        signs[:, f] = table_sign[codes[:, f]]
        logit += table_linear[codes[:, f]]
    for k in range(cross_pairs):
        logit += cross_strength * signs[:, 2 * k] * signs[:, 2 * k + 1]
    if num_dense >= 2:
        logit += dense_cross_strength * z[:, 0] * z[:, 1]
    if num_dense >= 3:
        logit += dense_cross_strength * z[:, 2] * signs[:, 2 * cross_pairs]
    logit += 0.2 * z[:, min(3, num_dense - 1)] if num_dense else 0.0  # a little linear numeric signal
    # Bias for ~25% positives, found on the logits themselves (a few bisection steps, vectorised).
    lo, hi = -10.0, 10.0
    for _ in range(40):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if (1 / (1 + np.exp(-(logit + mid)))).mean() < 0.25 else (lo, mid)
    label = (rng.random(rows) < 1 / (1 + np.exp(-(logit + lo)))).astype(np.int64)

    frame = {label_col: label}
    for m in range(num_dense):
        if dense_format == "x1":
            values = np.clip((z[:, m] + 4) / 8, 0, 1).round(6)
        elif dense_format == "raw":
            values = np.floor(np.exp(0.8 * z[:, m] + 1.5))
        else:
            raise ValueError(f"dense_format must be 'x1' or 'raw', got {dense_format!r}")
        values = np.where(rng.random(rows) < missing_rate * 2, np.nan, values)
        frame[f"I{m + 1}"] = values
    for f in range(num_sparse):
        # One string per vocabulary entry (not per row), then a gather: Criteo-like 8-hex-digit hashes.
        table = np.array([f"{(f * 2654435761 + c * 40503) & 0xffffffff:08x}" for c in range(vocabs[f])] + [""],
                         dtype=object)
        index = np.where(rng.random(rows) < missing_rate, vocabs[f], codes[:, f])
        frame[f"C{f + 1}"] = table[index]
    return pd.DataFrame(frame)


@register_dataset("synthetic-ctr", family="ctr")
class SyntheticCTR(CTRDataModule):
    """The generator above, in memory, split 7:2:1 like Criteo_x1; dense values used as written (x1 form)."""

    folder = "synthetic-ctr"
    split_ratios = (0.7, 0.2, 0.1)
    use_cache = False  # generated in memory each time: nothing to read, nothing to cache

    def __init__(self, data_dir: str | None = None, rows: int = 100_000, num_dense: int = 13, num_sparse: int = 26,
                 seed: int = 0, max_vocab: int = 10000, vocab_scale: float = 1.0, cross_pairs: int = 3,
                 cross_strength: float = 1.5, dense_cross_strength: float = 1.0, linear_strength: float = 0.3,
                 missing_rate: float = 0.05, batch_size: int = 4096, eval_batch_size: int = 8192, min_count: int = 1,
                 dense_transform: str = "none", split_seed: int = 2021, num_workers: int = 0):
        super().__init__(data_dir, batch_size, eval_batch_size, min_count, dense_transform, split_seed, num_workers)
        self.generator_args = dict(rows=rows, num_dense=num_dense, num_sparse=num_sparse, seed=seed,
                                   max_vocab=max_vocab, vocab_scale=vocab_scale, cross_pairs=cross_pairs,
                                   cross_strength=cross_strength, dense_cross_strength=dense_cross_strength,
                                   linear_strength=linear_strength, missing_rate=missing_rate)
        self.dense_cols = tuple(f"I{m + 1}" for m in range(num_dense))
        self.sparse_cols = tuple(f"C{f + 1}" for f in range(num_sparse))

    def source_key(self) -> str:
        return "synthetic:" + ",".join(f"{k}={v}" for k, v in sorted(self.generator_args.items()))

    def frames(self) -> Iterator[tuple[pd.DataFrame, str | None]]:
        yield criteo_shaped_frame(**self.generator_args), None
