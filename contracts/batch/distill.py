"""The distill batch format: the seqrec format (see `contracts.batch.seqrec`) plus what distillation needs.

Training batches (real users, the outer loop's data) are seqrec training batches.
Evaluation batches are seqrec evaluation batches plus `negatives` [B, S]: the S sampled negative items of the
paper's sampled protocol (RecBole `uni100`), drawn once per split from a seed, frozen and hashed by the datamodule.
"""
from contracts.batch.seqrec import INPUT_IDS, PAD, SAMPLE_IDX, TARGET, TARGET_IDS  # noqa: F401

NEGATIVES = "negatives"
