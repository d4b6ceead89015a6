"""The rerank family base: the reranker interface and the shared evaluation (LLM4Rerank, Gao et al., WWW 2025).

Every reranker receives the same N candidates per user (the upstream GMF ranker's top N, `contracts.batch.rerank`)
and returns an order of them. The interface a reranker implements (classic, learned or LLM-based alike):

    class MyReranker(RerankModule):
        trainable = False                      # True: `training_step` learns from training lists (listwise)
        def __init__(self, num_users, num_items, num_genres, num_candidates, history_len, item_titles=None,
                     genre_names=None, group_names=None, eval_k=10, alpha=0.5, <own typed keyword args>):
            super().__init__(num_users, num_items, num_genres, num_candidates, history_len, item_titles,
                             genre_names, group_names, eval_k, alpha)
            self.save_hyperparameters()
        def rerank(self, batch: dict) -> torch.Tensor:
            ...  # [B, N] long: per row a permutation of the positions 0..N-1, best first

`rerank` gets the whole batch (keys in `contracts.batch.rerank`; tensors on the module's device) and returns
positions into batch[CANDIDATES], not item ids; the base checks that each row is a permutation (a reranker that
drops or repeats a candidate fails the run with a clear error). Untrained rerankers (`trainable = False`) see one
training epoch in which nothing happens, then the run stops; trained ones implement `training_step` (and
`configure_optimizers`) on training lists, whose held-out item is the user's third-last interaction. Item titles,
genre names and group names (for prompts) are constructor arguments filled by the runner from the datamodule.

Evaluation on the reranked list, the same for every reranker (validation and test):
  - accuracy: `hr@K` (the held-out item is in the top K) and `ndcg@K` (1 / log2(rank + 1) when it is, else 0),
    K = `eval_k` (10, the LLM4Rerank code's `top_k`); a list without the held-out item scores 0 on both;
  - diversity: `alpha_ndcg@K` over genres (Clarke et al., SIGIR 2008): gain at rank r = sum over genres c of
    g_c(item_r) (1 - alpha)^(n_c(r-1)), n_c(r-1) = how many of the items above r have genre c, discounted by
    1 / log2(r + 1), normalised by the greedy ideal order of the same N candidates (the usual approximation; the
    exact ideal is NP-hard); every item counts as relevant (the attribute, not the held-out item, is what is
    diversified); alpha = 0.5 (the paper's alpha is not known);
  - fairness: `mad` = |mean(R0) - mean(R1)| over the whole reranked list of N, where an item's R is its position
    mapped linearly from 1 (top) to 0 (bottom) and R0 / R1 are the items of group 0 / 1; averaged over the lists
    that hold both groups (lower is better);
  - `seconds_per_user`: wall seconds inside `rerank` per list (inference only, not training).
"""
from __future__ import annotations

import math
import time

import lightning.pytorch as pl
import torch
from torchmetrics import MeanMetric, SumMetric

from contracts.batch import rerank as B


def check_permutation(order: torch.Tensor, num_candidates: int, who: str) -> torch.Tensor:
    """`order` [B, N] must hold each position 0..N-1 exactly once per row; returns it as long."""
    if order.dim() != 2 or order.shape[1] != num_candidates:
        raise ValueError(f"{who}.rerank returned shape {tuple(order.shape)}; it must return [batch, {num_candidates}]"
                         f" positions (a permutation of 0..{num_candidates - 1} per row)")
    order = order.long()
    expected = torch.arange(num_candidates, device=order.device)
    if not torch.equal(order.sort(-1).values, expected.expand_as(order)):
        bad = int((order.sort(-1).values != expected).any(-1).nonzero()[0])
        raise ValueError(f"{who}.rerank returned a row that is not a permutation of the candidate positions "
                         f"0..{num_candidates - 1} (row {bad}: {order[bad].tolist()}); each candidate must appear "
                         f"exactly once")
    return order


def discounts(k: int, device=None) -> torch.Tensor:
    """1 / log2(r + 1) for ranks r = 1..k."""
    return 1.0 / torch.log2(torch.arange(2, k + 2, dtype=torch.float32, device=device))


def accuracy_at_k(order: torch.Tensor, target_pos: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """HR@k and NDCG@k per list: order [B, N] (positions, best first), target_pos [B] (-1: not among them)."""
    rank = (order == target_pos.unsqueeze(-1)).float().argmax(-1)  # 0-based rank of the target
    present = (target_pos >= 0) & (rank < k)
    hr = present.float()
    ndcg = torch.where(present, 1.0 / torch.log2(rank.float() + 2.0), torch.zeros_like(hr))
    return hr, ndcg


def alpha_dcg(ordered_genres: torch.Tensor, k: int, alpha: float) -> torch.Tensor:
    """alpha-DCG@k of lists whose items' genres [B, N, G] are already in ranked order."""
    g = ordered_genres[:, :k].float()
    seen_before = g.cumsum(1) - g  # n_c(r-1)
    gain = (g * (1.0 - alpha) ** seen_before).sum(-1)  # [B, k]
    return (gain * discounts(g.shape[1], g.device)).sum(-1)


def ideal_alpha_dcg(genres: torch.Tensor, k: int, alpha: float) -> torch.Tensor:
    """The greedy ideal alpha-DCG@k of each list's candidates [B, N, G]: at each rank the remaining item with the
    largest gain given the items already placed (ties to the lower position)."""
    g = genres.float()
    batch, n, _ = g.shape
    counts = torch.zeros(batch, g.shape[2], device=g.device)
    taken = torch.zeros(batch, n, dtype=torch.bool, device=g.device)
    total = torch.zeros(batch, device=g.device)
    rows = torch.arange(batch, device=g.device)
    for r, d in enumerate(discounts(min(k, n), g.device)):
        gain = (g * ((1.0 - alpha) ** counts).unsqueeze(1)).sum(-1).masked_fill(taken, -1.0)
        best = gain.argmax(-1)
        total += d * gain[rows, best]
        taken[rows, best] = True
        counts += g[rows, best]
    return total


def alpha_ndcg_at_k(order: torch.Tensor, genres: torch.Tensor, k: int, alpha: float = 0.5
                    ) -> tuple[torch.Tensor, torch.Tensor]:
    """alpha-NDCG@k per list and whether it is defined (the candidates have any genre at all)."""
    ordered = genres.gather(1, order.unsqueeze(-1).expand(-1, -1, genres.shape[-1]))
    ideal = ideal_alpha_dcg(genres, k, alpha)
    defined = ideal > 0
    return alpha_dcg(ordered, k, alpha) / ideal.clamp_min(1e-12), defined


def rank_exposure(n: int, device=None) -> torch.Tensor:
    """An item's R at positions 0..n-1: linear from 1 (top) to 0 (bottom)."""
    return 1.0 - torch.arange(n, dtype=torch.float32, device=device) / max(n - 1, 1)


def mad(order: torch.Tensor, group: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """|mean R of group 0 - mean R of group 1| per list, and whether the list holds both groups."""
    ordered_group = group.gather(1, order).float()  # group of the item at each position
    exposure = rank_exposure(order.shape[1], order.device).expand_as(ordered_group)
    n1 = ordered_group.sum(-1)
    n0 = order.shape[1] - n1
    mean1 = (exposure * ordered_group).sum(-1) / n1.clamp_min(1)
    mean0 = (exposure * (1 - ordered_group)).sum(-1) / n0.clamp_min(1)
    return (mean0 - mean1).abs(), (n0 > 0) & (n1 > 0)


class RerankModule(pl.LightningModule):
    """Base of every reranker (see the module docstring for the interface)."""

    trainable: bool = False

    def __init__(self, num_users: int, num_items: int, num_genres: int, num_candidates: int, history_len: int,
                 item_titles: list[str] | None = None, genre_names: list[str] | None = None,
                 group_names: list[str] | None = None, eval_k: int = 10, alpha: float = 0.5):
        super().__init__()
        if not 1 <= eval_k <= num_candidates:
            raise ValueError(f"eval_k={eval_k} must lie in 1..num_candidates ({num_candidates})")
        if not 0.0 <= alpha < 1.0:
            raise ValueError(f"alpha={alpha} must lie in [0, 1) (alpha-NDCG's redundancy penalty)")
        self.num_users, self.num_items, self.num_genres = num_users, num_items, num_genres
        self.num_candidates, self.history_len = num_candidates, history_len
        self.item_titles, self.genre_names, self.group_names = item_titles, genre_names, group_names
        self.eval_k, self.alpha = eval_k, alpha
        if not self.trainable:
            self.automatic_optimization = False
            # DistributedDataParallel refuses a module with nothing to train; this scalar is never used or stepped
            self.ddp_anchor = torch.nn.Parameter(torch.zeros(1))
        k = eval_k
        self.metric_names = (f"hr@{k}", f"ndcg@{k}", f"alpha_ndcg@{k}", "mad")
        # nan_strategy="disable": a NaN score shows as NaN rather than being averaged away
        self.metrics = torch.nn.ModuleDict({f"{stage}_{name.replace('@', '_at_')}": MeanMetric(nan_strategy="disable")
                                            for stage in ("val", "test") for name in self.metric_names})
        self.timing = torch.nn.ModuleDict({f"{stage}_{part}": SumMetric() for stage in ("val", "test")
                                           for part in ("seconds", "users")})

    # ----- the interface ---------------------------------------------------------------------------------------------
    def rerank(self, batch: dict) -> torch.Tensor:  # pragma: no cover
        """[B, N] long: per list a permutation of the candidate positions 0..N-1, best first."""
        raise NotImplementedError

    # ----- training: untrained rerankers pass one empty epoch and stop ------------------------------------------------
    def training_step(self, batch: dict, batch_idx: int):
        return None

    def on_train_epoch_end(self):
        if not self.trainable:
            self.trainer.should_stop = True

    def configure_optimizers(self):
        return None

    # ----- evaluation ------------------------------------------------------------------------------------------------
    def evaluate(self, batch: dict, order: torch.Tensor) -> dict[str, tuple[torch.Tensor, torch.Tensor | None]]:
        """Per-list values of every metric (and the mask of lists where it is defined) for an order [B, N]."""
        hr, ndcg = accuracy_at_k(order, batch[B.TARGET_POS], self.eval_k)
        diversity, has_genres = alpha_ndcg_at_k(order, batch[B.GENRES], self.eval_k, self.alpha)
        fairness, both_groups = mad(order, batch[B.GROUP])
        k = self.eval_k
        return {f"hr@{k}": (hr, None), f"ndcg@{k}": (ndcg, None), f"alpha_ndcg@{k}": (diversity, has_genres),
                "mad": (fairness, both_groups)}

    def _eval_step(self, stage: str, batch: dict) -> None:
        start = time.perf_counter()
        with torch.no_grad():
            order = self.rerank(batch)
        seconds = time.perf_counter() - start
        order = check_permutation(order, batch[B.CANDIDATES].shape[1], type(self).__name__)
        users = batch[B.CANDIDATES].shape[0]
        for name, (values, mask) in self.evaluate(batch, order).items():
            weight = torch.ones_like(values) if mask is None else mask.float()
            if weight.sum() > 0:
                self.metrics[f"{stage}_{name.replace('@', '_at_')}"].update(values, weight)
        self.timing[f"{stage}_seconds"].update(torch.tensor(seconds, device=self.device))
        self.timing[f"{stage}_users"].update(torch.tensor(float(users), device=self.device))

    def _log(self, stage: str) -> None:
        for name in self.metric_names:
            metric = self.metrics[f"{stage}_{name.replace('@', '_at_')}"]
            value = metric.compute() if metric.update_count else torch.tensor(math.nan)
            self.log(f"{stage}/{name}", value)
            metric.reset()
        seconds, users = (self.timing[f"{stage}_{part}"] for part in ("seconds", "users"))
        self.log(f"{stage}/seconds_per_user", seconds.compute() / users.compute().clamp_min(1))
        seconds.reset()
        users.reset()

    def validation_step(self, batch: dict, batch_idx: int):
        self._eval_step("val", batch)

    def on_validation_epoch_end(self):
        self._log("val")

    def test_step(self, batch: dict, batch_idx: int):
        self._eval_step("test", batch)

    def on_test_epoch_end(self):
        self._log("test")

    @staticmethod
    def search_space(trial) -> dict:
        return {}  # nothing to tune unless a reranker says otherwise


def order_by(scores: torch.Tensor) -> torch.Tensor:
    """Positions sorted by descending score; ties keep the ranker's order."""
    return torch.sort(scores, dim=-1, descending=True, stable=True).indices


def list_relevance(scores: torch.Tensor) -> torch.Tensor:
    """The ranker's scores [B, N] min-max scaled to [0, 1] within each list (the relevance MMR, DPP and the
    exposure reranker trade off against diversity or fairness)."""
    low, high = scores.min(-1, keepdim=True).values, scores.max(-1, keepdim=True).values
    return (scores - low) / (high - low).clamp_min(1e-12)


class ListwiseReranker(RerankModule):
    """Base of the learned rerankers: `score(batch)` -> [B, N] logits, trained with the listwise softmax
    cross-entropy of the held-out item (as DLCM's AttRank loss and PRM's softmax output with one clicked item);
    lists without the held-out item carry no signal and are left out of the loss. Adam at `lr`, `weight_decay`.

    `ranker_skip` (ours, not in PRM or DLCM): the logits are score(batch) + s z, with z the ranker's score
    standardised within the list and s a learned scalar starting at 1, so training starts from the ranker's order
    and learns corrections to it (the papers feed the initial ranking only as an input feature)."""

    trainable = True

    def __init__(self, num_users: int, num_items: int, num_genres: int, num_candidates: int, history_len: int,
                 item_titles: list[str] | None = None, genre_names: list[str] | None = None,
                 group_names: list[str] | None = None, eval_k: int = 10, alpha: float = 0.5, lr: float = 1e-3,
                 weight_decay: float = 0.0, ranker_skip: bool = True):
        super().__init__(num_users, num_items, num_genres, num_candidates, history_len, item_titles, genre_names,
                         group_names, eval_k, alpha)
        self.lr, self.weight_decay = lr, weight_decay
        self.skip = torch.nn.Parameter(torch.ones(1)) if ranker_skip else None

    def score(self, batch: dict) -> torch.Tensor:  # pragma: no cover
        """[B, N] the network's logits for the candidates."""
        raise NotImplementedError

    def logits(self, batch: dict) -> torch.Tensor:
        logits = self.score(batch)
        if self.skip is not None:
            scores = batch[B.SCORES]
            z = (scores - scores.mean(-1, keepdim=True)) / scores.std(-1, keepdim=True).clamp_min(1e-6)
            logits = logits + self.skip * z
        return logits

    def rerank(self, batch: dict) -> torch.Tensor:
        return order_by(self.logits(batch))

    def training_step(self, batch: dict, batch_idx: int):
        target_pos = batch[B.TARGET_POS]
        rows = target_pos >= 0
        logits = self.logits(batch)
        if rows.any():
            loss = torch.nn.functional.cross_entropy(logits[rows], target_pos[rows])
        else:  # no list of this batch holds its target: a zero loss that keeps every parameter in the graph
            loss = logits.sum() * 0.0
        self.log("train/loss", loss, batch_size=int(rows.sum().clamp_min(1)))
        return loss

    def configure_optimizers(self):
        return torch.optim.Adam(self.parameters(), lr=self.lr, weight_decay=self.weight_decay)

    @staticmethod
    def search_space(trial) -> dict:
        return {"lr": trial.suggest_float("lr", 1e-4, 1e-2, log=True),
                "weight_decay": trial.suggest_float("weight_decay", 1e-8, 1e-3, log=True)}
