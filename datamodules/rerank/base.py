"""What every rerank dataset shares: leave-one-out lists of N candidates from an upstream GMF ranker (LLM4Rerank's
protocol), the diversity attribute (genres) and the fairness split (two item groups), batched as
`contracts.batch.rerank`.

Per user, in time order: the last interaction is the test target, the second-last the validation target, and the
`train_lists` before those are the targets of the lists the learned rerankers train on. GMF (He et al., WWW 2017:
score = h . (p_u * q_i), logistic loss with `ranker_negatives` uniform negatives per interaction, NCF's recipe) is
trained on everything before those targets, once per dataset configuration with its own seed (`ranker_seed`), so
every reranker, seed and run sees the same candidates, and no list's target was a GMF training example. A list
holds the N unseen items (not among the user's interactions before its target) that GMF scores highest, in
GMF's order. `force_target=True` puts the held-out item into every list (GMF's top N-1 plus the target, which
then sits at the bottom: its score is below the top N-1); False keeps GMF's plain top N (the target may be absent,
and that list scores 0 on accuracy). Which one the paper used is not stated.

Fairness groups (`fairness_groups`): "year" (the paper's ML-1M split: release year before `split_year` = group 0,
from it on = group 1; items of unknown year go to group 0), or "popularity" (group 1 = the `popular_fraction` of
items with the most GMF-training interactions, group 0 = the rest).

Subclasses implement `catalogue()`: the interactions as per-user sequences and the item metadata.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

import numpy as np
import torch

from contracts.atomic import save_cache
from contracts.batch import rerank as B
from datamodules.base import DataError, PaperboardDataModule, TensorBatchDataset, arrays_hash, load_cache

FAIRNESS_GROUPS = ("year", "popularity")


@dataclass
class Catalogue:
    """A dataset as the rerank family reads it.

    items [T] int: item ids 1..I, user by user in time order; offsets [U+1]: user u's items are
    items[offsets[u]:offsets[u+1]]; titles: I+1 strings (entry 0 empty); genre_names: G names; genres [I+1, G]
    multi-hot; years [I+1] float (NaN where unknown); identity: a string that changes when the source files do.
    """

    items: np.ndarray
    offsets: np.ndarray
    titles: list[str]
    genre_names: list[str]
    genres: np.ndarray
    years: np.ndarray
    identity: str


def train_gmf(users: np.ndarray, items: np.ndarray, num_users: int, num_items: int, dim: int, epochs: int,
              negatives: int, lr: float, batch_size: int, seed: int) -> np.ndarray:
    """Fit GMF on (user, item) pairs (users 0..U-1, items 1..I) and return the score matrix [U, I+1] (column 0,
    the padding id, is -inf)."""
    generator = torch.Generator().manual_seed(seed)
    user_embedding = torch.nn.Embedding(num_users, dim)
    item_embedding = torch.nn.Embedding(num_items + 1, dim)
    h = torch.nn.Linear(dim, 1, bias=False)
    for module, std in ((user_embedding, 0.01), (item_embedding, 0.01)):
        torch.nn.init.normal_(module.weight, std=std, generator=generator)
    torch.nn.init.uniform_(h.weight, 0.9, 1.1, generator=generator)
    parameters = [*user_embedding.parameters(), *item_embedding.parameters(), *h.parameters()]
    optimizer = torch.optim.Adam(parameters, lr=lr)
    pos_u, pos_i = torch.as_tensor(users, dtype=torch.long), torch.as_tensor(items, dtype=torch.long)
    n = len(pos_u)
    for _ in range(epochs):
        order = torch.randperm(n, generator=generator)
        for start in range(0, n, batch_size):
            rows = order[start:start + batch_size]
            u = pos_u[rows].repeat_interleave(1 + negatives)
            i = pos_i[rows].unsqueeze(1).repeat(1, 1 + negatives)
            i[:, 1:] = torch.randint(1, num_items + 1, (len(rows), negatives), generator=generator)
            label = torch.zeros_like(i, dtype=torch.float32)
            label[:, 0] = 1.0
            logit = h(user_embedding(u) * item_embedding(i.flatten())).squeeze(-1)
            loss = torch.nn.functional.binary_cross_entropy_with_logits(logit, label.flatten())
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    with torch.no_grad():
        scores = (user_embedding.weight * h.weight) @ item_embedding.weight.T
        scores[:, 0] = -torch.inf
    return scores.numpy()


class RerankDataModule(PaperboardDataModule):
    def __init__(self, data_dir: str | None = None, num_candidates: int = 20, force_target: bool = False,
                 history_len: int = 10, train_lists: int = 1, fairness_groups: str = "year", split_year: int = 1996,
                 popular_fraction: float = 0.2, ranker_dim: int = 32, ranker_epochs: int = 20,
                 ranker_negatives: int = 4, ranker_lr: float = 0.002, ranker_batch_size: int = 1024,
                 ranker_seed: int = 0, batch_size: int = 64, eval_batch_size: int = 512, num_workers: int = 0):
        super().__init__(data_dir, batch_size, eval_batch_size, num_workers)
        if fairness_groups not in FAIRNESS_GROUPS:
            raise ValueError(f"fairness_groups={fairness_groups!r}: choose one of {', '.join(FAIRNESS_GROUPS)}")
        if num_candidates < 2:
            raise ValueError(f"num_candidates={num_candidates}: a list to rerank needs at least 2 candidates")
        if train_lists < 1 or history_len < 1:
            raise ValueError(f"train_lists={train_lists} and history_len={history_len} must both be >= 1")
        if not 0.0 < popular_fraction < 1.0:
            raise ValueError(f"popular_fraction={popular_fraction} must lie strictly between 0 and 1")
        self.num_candidates, self.force_target, self.history_len = num_candidates, force_target, history_len
        self.train_lists, self.fairness_groups, self.split_year = train_lists, fairness_groups, split_year
        self.popular_fraction = popular_fraction
        self.ranker = dict(dim=ranker_dim, epochs=ranker_epochs, negatives=ranker_negatives, lr=ranker_lr,
                           batch_size=ranker_batch_size, seed=ranker_seed)
        self._catalogue: Catalogue | None = None
        self._arrays: dict[str, np.ndarray] | None = None

    # ----- what a dataset provides ------------------------------------------------------------------------------------
    def catalogue(self) -> Catalogue:  # pragma: no cover
        raise NotImplementedError

    # ----- building the lists -----------------------------------------------------------------------------------------
    def _config_key(self, catalogue: Catalogue) -> str:
        config = {"dataset": getattr(self, "registry_name", type(self).__name__), "source": catalogue.identity,
                  "num_candidates": self.num_candidates, "force_target": self.force_target,
                  "history_len": self.history_len, "train_lists": self.train_lists, "ranker": self.ranker,
                  "fairness": [self.fairness_groups, self.split_year, self.popular_fraction], "version": 1}
        return hashlib.sha1(json.dumps(config, sort_keys=True).encode()).hexdigest()[:16]

    def build_lists(self, catalogue: Catalogue) -> dict[str, np.ndarray]:
        """Every split's lists as flat arrays (`{split}_{key}`), plus the item groups; vectorised over users."""
        items, offsets = catalogue.items.astype(np.int64), catalogue.offsets.astype(np.int64)
        num_users, num_items = len(offsets) - 1, len(catalogue.titles) - 1
        lengths = np.diff(offsets)
        held_out = 2 + self.train_lists
        if lengths.min() < held_out + 1:
            raise DataError(f"{self.__class__.__name__}: every user needs at least {held_out + 1} interactions "
                            f"(test, validation, {self.train_lists} training target(s) and one to train the "
                            f"ranker on); the shortest sequence has {lengths.min()}. Lower train_lists.")
        if num_items <= self.num_candidates + held_out:
            raise DataError(f"{self.__class__.__name__}: {num_items} items cannot fill lists of "
                            f"{self.num_candidates} unseen candidates; lower num_candidates")
        user_of = np.repeat(np.arange(num_users), lengths)
        position = np.arange(len(items)) - offsets[user_of]
        ranker_rows = position < (lengths[user_of] - held_out)
        scores = train_gmf(user_of[ranker_rows], items[ranker_rows], num_users, num_items, **self.ranker)
        scores_t = torch.from_numpy(scores)

        counts = np.bincount(items[ranker_rows], minlength=num_items + 1)
        if self.fairness_groups == "year":
            item_group = (catalogue.years >= self.split_year).astype(np.int64)  # NaN (unknown) -> group 0
        else:
            ranked = np.argsort(-counts[1:], kind="stable") + 1
            item_group = np.zeros(num_items + 1, dtype=np.int64)
            item_group[ranked[:max(1, int(round(self.popular_fraction * num_items)))]] = 1
        item_group[0] = 0

        seen = torch.zeros(num_users, num_items + 1, dtype=torch.bool)
        seen[torch.from_numpy(user_of[ranker_rows]), torch.from_numpy(items[ranker_rows])] = True
        users = np.arange(num_users)
        out: dict[str, list[np.ndarray]] = {}
        recall = {}
        # from the earliest held-out target to the last: each list masks everything its user saw before its target
        for back in range(held_out, 0, -1):
            split = "test" if back == 1 else "val" if back == 2 else "train"
            flat = offsets[:-1] + lengths - back
            target = torch.from_numpy(items[flat])
            masked = scores_t.masked_fill(seen, -torch.inf)
            top_scores, top = masked.topk(self.num_candidates, dim=1)
            present = (top == target.unsqueeze(1)).any(1)
            recall.setdefault(split, []).append(present.float().mean().item())
            if self.force_target:
                missing = ~present
                top[missing, -1] = target[missing]
                top_scores[missing, -1] = scores_t[missing.nonzero().squeeze(1), target[missing]]
            hit = top == target.unsqueeze(1)
            target_pos = torch.where(hit.any(1), hit.float().argmax(1), torch.full_like(target, -1))
            window = flat[:, None] - self.history_len + np.arange(self.history_len)[None, :]
            history = np.where(window >= offsets[:-1, None], items[np.maximum(window, 0)], 0)
            part = {B.USER: users, B.HISTORY: history, B.CANDIDATES: top.numpy(), B.SCORES: top_scores.numpy(),
                    B.TARGET_POS: target_pos.numpy()}
            for key, value in part.items():
                out.setdefault(f"{split}_{key}", []).append(value)
            seen[torch.from_numpy(users), target] = True
        arrays = {key: np.concatenate(values) for key, values in out.items()}
        arrays["item_group"] = item_group
        arrays["train_counts"] = counts
        for split, values in recall.items():
            arrays[f"{split}_ranker_recall"] = np.asarray(values, dtype=np.float64)
        return arrays

    def prepare_data(self) -> None:
        self._prepare()

    def _prepare(self) -> dict[str, np.ndarray]:
        if self._arrays is None:
            catalogue = self._catalogue = self.catalogue()
            path = self.cache_dir / f"lists-{self._config_key(catalogue)}.npz"
            arrays = load_cache(path)
            if arrays is None:
                arrays = self.build_lists(catalogue)
                save_cache(path, arrays)
            self._arrays = arrays
        return self._arrays

    def setup(self, stage: str | None = None) -> None:
        arrays = self._prepare()
        catalogue = self._catalogue
        genres = torch.as_tensor(catalogue.genres, dtype=torch.float32)
        group = torch.as_tensor(arrays["item_group"])
        sets = {}
        for split in ("train", "val", "test"):
            candidates = torch.as_tensor(arrays[f"{split}_{B.CANDIDATES}"])
            history = torch.as_tensor(arrays[f"{split}_{B.HISTORY}"])
            target_pos = torch.as_tensor(arrays[f"{split}_{B.TARGET_POS}"])
            relevance = torch.zeros(candidates.shape, dtype=torch.float32)
            rows = (target_pos >= 0).nonzero().squeeze(1)
            relevance[rows, target_pos[rows]] = 1.0
            sets[split] = TensorBatchDataset({
                B.USER: torch.as_tensor(arrays[f"{split}_{B.USER}"]), B.HISTORY: history,
                B.HISTORY_GENRES: genres[history] * (history > 0).unsqueeze(-1), B.CANDIDATES: candidates,
                B.SCORES: torch.as_tensor(arrays[f"{split}_{B.SCORES}"], dtype=torch.float32),
                B.GENRES: genres[candidates], B.GROUP: group[candidates], B.TARGET_POS: target_pos,
                B.RELEVANCE: relevance})
        self.train_set, self.val_set, self.test_set = sets["train"], sets["val"], sets["test"]
        self.data_hash = arrays_hash({k: v for k, v in arrays.items() if not k.endswith("_ranker_recall")}
                                     | {"genres": catalogue.genres})

    # ----- what models and records get --------------------------------------------------------------------------------
    @property
    def group_names(self) -> list[str]:
        if self.fairness_groups == "year":
            return [f"released before {self.split_year}", f"released in {self.split_year} or later"]
        return ["less popular", f"popular (top {self.popular_fraction:.0%} by training interactions)"]

    def model_kwargs(self) -> dict:
        catalogue = self._catalogue
        return {"num_users": len(catalogue.offsets) - 1, "num_items": len(catalogue.titles) - 1,
                "num_genres": len(catalogue.genre_names), "num_candidates": self.num_candidates,
                "history_len": self.history_len, "item_titles": list(catalogue.titles),
                "genre_names": list(catalogue.genre_names), "group_names": self.group_names}

    def describe(self) -> dict:
        arrays, catalogue = self._prepare(), self._catalogue
        group = arrays["item_group"][1:]
        return {"data_hash": self.data_hash, "users": len(catalogue.offsets) - 1, "items": len(catalogue.titles) - 1,
                "interactions": int(len(catalogue.items)), "genres": len(catalogue.genre_names),
                "train_lists": int(len(arrays[f"train_{B.USER}"])),
                "items_of_unknown_year": int(np.isnan(catalogue.years[1:]).sum()),
                "group_1_items": int(group.sum()), "group_0_items": int(len(group) - group.sum()),
                # how often GMF's plain top N holds the held-out item (before any forcing)
                "ranker_recall_at_n": {split: round(float(arrays[f"{split}_ranker_recall"].mean()), 4)
                                       for split in ("train", "val", "test")},
                "force_target": self.force_target}
