"""A synthetic rerank dataset with planted genres, groups and a signal that the upstream ranker cannot see: users
pick items by a latent taste (which GMF can learn from their earlier interactions), but their last interactions
(every held-out target: test, validation and the training lists) also favour one "trending" genre (genre 0) by
`trend` on the logit. A reranker that reads candidate genres and learns from the training lists can beat GMF's
order; GMF alone cannot. Items have 1-2 of `num_genres` genres and a release year in 1990-2001 (the year split
makes the fairness groups). No files needed."""
from __future__ import annotations

import numpy as np

from contracts.registry import register_dataset
from datamodules.rerank.base import Catalogue, RerankDataModule


@register_dataset("synthetic-rerank", family="rerank")
class SyntheticRerank(RerankDataModule):
    folder = "synthetic-rerank"

    def __init__(self, data_dir: str | None = None, num_users: int = 200, num_items: int = 120,
                 num_genres: int = 6, sequence_len: int = 16, latent_dim: int = 4, taste: float = 2.0,
                 trend: float = 2.5, data_seed: int = 0, num_candidates: int = 20, force_target: bool = False,
                 history_len: int = 10, train_lists: int = 1, fairness_groups: str = "year", split_year: int = 1996,
                 popular_fraction: float = 0.2, ranker_dim: int = 16, ranker_epochs: int = 10,
                 ranker_negatives: int = 4, ranker_lr: float = 0.01, ranker_batch_size: int = 256,
                 ranker_seed: int = 0, batch_size: int = 32, eval_batch_size: int = 256, num_workers: int = 0):
        super().__init__(data_dir, num_candidates, force_target, history_len, train_lists, fairness_groups,
                         split_year, popular_fraction, ranker_dim, ranker_epochs, ranker_negatives, ranker_lr,
                         ranker_batch_size, ranker_seed, batch_size, eval_batch_size, num_workers)
        if sequence_len + num_candidates > num_items:
            raise ValueError(f"sequence_len + num_candidates ({sequence_len} + {num_candidates}) must not exceed "
                             f"num_items ({num_items}): each list needs that many unseen items")
        self.spec = dict(num_users=num_users, num_items=num_items, num_genres=num_genres,
                         sequence_len=sequence_len, latent_dim=latent_dim, taste=taste, trend=trend, seed=data_seed)

    def catalogue(self) -> Catalogue:
        s = self.spec
        rng = np.random.default_rng(s["seed"])
        users, items, num_genres, length = s["num_users"], s["num_items"], s["num_genres"], s["sequence_len"]
        genres = np.zeros((items + 1, num_genres), dtype=np.float32)
        genres[np.arange(1, items + 1), rng.integers(0, num_genres, items)] = 1.0
        second = rng.random(items) < 0.5
        genres[np.arange(1, items + 1)[second], rng.integers(0, num_genres, int(second.sum()))] = 1.0
        years = np.concatenate([[np.nan], rng.integers(1990, 2002, items).astype(np.float64)])
        user_taste = rng.normal(size=(users, s["latent_dim"]))
        item_taste = rng.normal(size=(items, s["latent_dim"]))
        logits = s["taste"] * user_taste @ item_taste.T / np.sqrt(s["latent_dim"])  # [U, I]
        held_out = 2 + self.train_lists
        # sampling without replacement by Gumbel top-k: the early part by taste, the held-out tail with the trend
        early = np.argsort(-(logits + rng.gumbel(size=logits.shape)), axis=1)[:, : length - held_out]
        trending = logits + s["trend"] * genres[1:, 0][None, :] + rng.gumbel(size=logits.shape)
        np.put_along_axis(trending, early, -np.inf, axis=1)
        late = np.argsort(-trending, axis=1)[:, :held_out]
        sequences = np.concatenate([early, late], axis=1) + 1
        return Catalogue(items=sequences.reshape(-1), offsets=np.arange(users + 1) * length,
                         titles=[""] + [f"item {i}" for i in range(1, items + 1)],
                         genre_names=[f"genre {g}" for g in range(num_genres)], genres=genres, years=years,
                         identity=repr(sorted(s.items())))
