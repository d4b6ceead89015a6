"""A synthetic sequential dataset with a planted pattern, needing no files.

Each item i has a fixed successor succ[i] (a random permutation). A user's next item is succ[current] with
probability `p_follow`, otherwise an item drawn from a Zipf popularity law. A model that learns transitions
can reach HR@10 near `p_follow`; popularity cannot, because the successors are spread over the whole catalogue.
Timestamps grow by exponential gaps, so time-aware models see real-looking time.
"""
from __future__ import annotations

import numpy as np

from contracts.registry import register_dataset
from datamodules.seqrec.base import SeqRecDataModule


@register_dataset("synthetic-seqrec", family="seqrec")
class SyntheticSeqRec(SeqRecDataModule):
    folder = "synthetic-seqrec"

    def __init__(self, data_dir: str | None = None, num_users: int = 1000, num_items: int = 200,
                 min_length: int = 8, max_length: int = 30, p_follow: float = 0.8, zipf_a: float = 1.2,
                 seed: int = 0, max_len: int = 20, batch_size: int = 128, eval_batch_size: int = 256,
                 min_seq_len: int = 3, train_windows: str = "last", num_workers: int = 0,
                 validation_item: bool = True):
        super().__init__(data_dir, max_len=max_len, batch_size=batch_size, eval_batch_size=eval_batch_size,
                         min_seq_len=min_seq_len, train_windows=train_windows, num_workers=num_workers,
                         validation_item=validation_item)
        self.generator_args = dict(num_users=num_users, num_items=num_items, min_length=min_length,
                                   max_length=max_length, p_follow=p_follow, zipf_a=zipf_a, seed=seed)

    def prepare_data(self) -> None:
        pass  # generated in memory: nothing to download or cache on disk

    def _sequences(self):
        if not hasattr(self, "_generated"):
            self._generated = self.sequences_from_interactions(self.generate())
        return self._generated

    def generate(self) -> dict[str, np.ndarray]:
        a = self.generator_args
        rng = np.random.default_rng(a["seed"])
        n_items, n_users = a["num_items"], a["num_users"]
        successor = rng.permutation(n_items)
        popularity = 1.0 / np.arange(1, n_items + 1) ** a["zipf_a"]
        popularity /= popularity.sum()
        lengths = rng.integers(a["min_length"], a["max_length"] + 1, size=n_users)
        steps = int(lengths.max())
        # Generate all users in lock-step: one vectorised draw per position, not per user.
        seqs = np.empty((n_users, steps), dtype=np.int64)
        seqs[:, 0] = rng.choice(n_items, size=n_users, p=popularity)
        for t in range(1, steps):
            follow = rng.random(n_users) < a["p_follow"]
            seqs[:, t] = np.where(follow, successor[seqs[:, t - 1]], rng.choice(n_items, size=n_users, p=popularity))
        keep = np.arange(steps)[None, :] < lengths[:, None]
        gaps = rng.exponential(3600.0, size=(n_users, steps)).astype(np.int64) + 1
        times = 1_600_000_000 + np.cumsum(gaps, axis=1)
        users = np.broadcast_to(np.arange(n_users)[:, None], seqs.shape)
        return {"user": users[keep], "item": seqs[keep], "time": times[keep]}
