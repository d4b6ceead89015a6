"""Two-tower embedding-based retrieval with pluggable negative samplers, and ESANS (Xing et al., WWW 2025,
arXiv 2502.16077: "Effective and Semantic-Aware Negative Sampling for Large-Scale Retrieval Systems").

Towers (shared by every sampler, so samplers are the only difference between rows):
- item tower: h0 = ID embedding + linear maps of the item's attributes, text embedding and (optionally) behaviour
  factors; `tower_layers` residual blocks h_{l+1} = h_l + W2 GELU(W1 LayerNorm(h_l)); the item vector is the
  L2-normalised mean of h_0..h_L (layer pooling as in LightGCN, which gives MixGCF its hops);
- user tower: the masked mean of the history's h0 vectors and the last item's h0, concatenated, through an MLP,
  L2-normalised.
Score = cosine / `temperature`. Loss: softmax cross-entropy of the positive against the sampler's negatives,
accidental hits (a negative equal to the positive) masked, logQ-corrected negatives (see `samplers`), the
positive's logit uncorrected (so the sampled denominator estimates the full softmax's).

ESANS (no official code; reconstructed from the paper's figure and the authors' rebuttal notes, each uncertain
choice a flag):
- MSAC: two-level residual k-means codebooks over fused item vectors of `semantic_modalities` (text, attributes,
  behaviour; the paper fuses CLIP, BERT and GNN vectors aligned by InfoNCE, unavailable here); per positive
  `m_c` negatives from the same primary cluster but another secondary cell and `m_o` from other primary clusters
  chosen by centroid proximity (`cluster_temperature`), plus the batch's in-batch negatives (`esans_in_batch`,
  the paper states its cost is that of debiased MNS).
- EDIS: virtual negatives interpolated in the output space after the towers, no extra forward pass:
  `edis_simple` mixes k = 2..m_o of the row's sampled negatives with flat Dirichlet weights (k virtual
  negatives for each k, (m_o + 2)(m_o - 1)/2 in all, the count the authors state); `edis_hard` moves each close
  negative by `interpolation_lambda` towards the positive (n + lam (e+ - n); the authors sweep lam over
  {0.5, 0.3, 0.1, -0.1, -0.3}). Virtual vectors are re-normalised and not logQ-corrected.
- `msac=False` draws the same number of negatives uniformly instead (the "w/o MSAC" ablation).

Evaluation ranks the held-out item among the whole catalogue (exact top-k over all item vectors), the user's
previously seen items removed; Recall@K equals HR@K because each user has one held-out item. With `eval_index`
"ivf" or "hnsw" the run also serves the catalogue from a faiss index (`index.py`) and logs `ann_recall@K` (Recall@K
from the index's candidates) and `index_recall@K` (how much of the exact top-K the index keeps).
"""
from __future__ import annotations

import math

import lightning.pytorch as pl
import optuna
import torch
import torch.nn.functional as F
from torch import nn
from torchmetrics import MeanMetric

from contracts.batch import retrieval as R
from contracts.registry import register_model, register_model_variant
from lightning_modules.retrieval import samplers as S
from lightning_modules.retrieval.clustering import Codebooks, fuse, residual_codebooks
from lightning_modules.retrieval.index import INDEXES, ItemIndex, approx_rank, index_recall, kept, top_candidates
from lightning_modules.seqrec.metrics import ranking_metrics, target_rank

SAMPLERS = ("uniform", "popularity", "in_batch", "mixed", "hard", "mixgcf", "esans")
ITEM_FEATURES = ("attributes", "text", "behaviour")
PERSISTENT_FEATURES = ("attributes", "text", "behaviour", "count")


class ResidualBlock(nn.Module):
    def __init__(self, dim: int, dropout: float):
        super().__init__()
        self.net = nn.Sequential(nn.LayerNorm(dim), nn.Linear(dim, 2 * dim), nn.GELU(), nn.Dropout(dropout),
                                 nn.Linear(2 * dim, dim))

    def forward(self, x):
        return x + self.net(x)


@register_model("two_tower", family="retrieval")
class TwoTower(pl.LightningModule):
    def __init__(
        self,
        num_items: int,
        num_attributes: int = 1,
        text_dim: int = 1,
        behaviour_dim: int = 32,
        max_len: int = 50,
        embed_dim: int = 64,
        tower_layers: int = 2,
        dropout: float = 0.1,
        item_features: tuple[str, ...] = ("attributes", "text"),
        sampler: str = "uniform",
        num_negatives: int = 64,
        popularity_alpha: float = 0.75,
        logq_correction: bool = True,
        temperature: float = 0.05,
        num_hard: int = 8,
        hard_pool: int = 100,
        hard_skip: int = 5,
        mixgcf_candidates: int = 8,
        mixgcf_synthetic: int = 4,
        m_c: int = 2,
        m_o: int = 5,
        num_primary: int = 0,
        num_secondary: int = 8,
        cluster_temperature: float = 1.0,
        semantic_modalities: tuple[str, ...] = ("text", "attributes", "behaviour"),
        msac: bool = True,
        edis_simple: bool = True,
        edis_hard: bool = True,
        interpolation_lambda: float = 0.3,
        esans_in_batch: bool = True,
        cluster_seed: int = 0,
        eval_index: str = "exact",
        index_nlist: int = 0,
        index_nprobe: int = 8,
        index_hnsw_m: int = 32,
        lr: float = 1e-3,
        weight_decay: float = 1e-6,
        eval_ks: tuple[int, ...] = (50, 200),
    ):
        super().__init__()
        if sampler not in SAMPLERS:
            raise ValueError(f"unknown sampler {sampler!r}; choose one of {', '.join(SAMPLERS)}")
        unknown = set(item_features) - set(ITEM_FEATURES)
        if unknown:
            raise ValueError(f"unknown item_features {sorted(unknown)}; choose from {', '.join(ITEM_FEATURES)}")
        if num_items < 2:
            raise ValueError(f"num_items must be >= 2, got {num_items}")
        if eval_index not in INDEXES:
            raise ValueError(f"unknown eval_index {eval_index!r}; choose one of {', '.join(INDEXES)}")
        if m_o < 2 and sampler == "esans" and edis_simple:
            raise ValueError("EDIS simple interpolation mixes k = 2..m_o negatives: m_o must be >= 2")
        self.save_hyperparameters()
        self.hp = self.hparams
        d = embed_dim
        self.item_id = nn.Embedding(num_items + 1, d, padding_idx=R.PAD)
        nn.init.normal_(self.item_id.weight, std=0.02)
        self.feature_maps = nn.ModuleDict({
            name: nn.Linear(dim, d, bias=False) for name, dim in
            (("attributes", num_attributes), ("text", text_dim), ("behaviour", behaviour_dim)) if name in item_features
        })
        self.item_blocks = nn.ModuleList(ResidualBlock(d, dropout) for _ in range(tower_layers))
        self.user_mlp = nn.Sequential(nn.Linear(2 * d, 2 * d), nn.GELU(), nn.Dropout(dropout), nn.Linear(2 * d, d))
        shapes = {"attributes": (num_items + 1, num_attributes), "text": (num_items + 1, text_dim),
                  "behaviour": (num_items + 1, behaviour_dim), "count": (num_items + 1,)}
        for name, shape in shapes.items():  # side information is part of the model's input definition: saved
            self.register_buffer(f"feature_{name}", torch.zeros(shape))
        self.register_buffer("seen_items", torch.zeros(0, dtype=torch.long), persistent=False)
        self.register_buffer("user_starts", torch.zeros(0, dtype=torch.long), persistent=False)
        self._books: Codebooks | None = None
        self._transition: torch.Tensor | None = None
        self._index: torch.Tensor | None = None  # hard miner's item table, refreshed each epoch
        self._eval_items: torch.Tensor | None = None
        self.eval_ks = tuple(int(k) for k in eval_ks)
        names = [n.replace("hr@", "recall@") for n in ranking_metrics(torch.ones(1), self.eval_ks)]
        self._metric_keys = {n: n.replace("@", "_at_") for n in names}
        self.val_metrics = nn.ModuleDict({k: MeanMetric() for k in self._metric_keys.values()})
        self.test_metrics = nn.ModuleDict({k: MeanMetric() for k in self._metric_keys.values()})
        self._index_built: ItemIndex | None = None
        if eval_index != "exact":  # the approximate index's metrics beside the exact ones
            self._ann_keys = [f"{kind}@{k}" for kind in ("ann_recall", "index_recall") for k in self.eval_ks]
            self.val_ann = nn.ModuleDict({key.replace("@", "_at_"): MeanMetric() for key in self._ann_keys})
            self.test_ann = nn.ModuleDict({key.replace("@", "_at_"): MeanMetric() for key in self._ann_keys})

    # ----- side information --------------------------------------------------------------------------------
    def attach_item_features(self, features: dict[str, torch.Tensor]) -> None:
        """Copy the datamodule's item side information and seen lists into the model; build ESANS's codebooks."""
        for name in PERSISTENT_FEATURES:
            buffer = getattr(self, f"feature_{name}")
            value = features[name].to(buffer.device, buffer.dtype)
            if value.shape != buffer.shape:
                raise ValueError(f"item feature {name!r} has shape {tuple(value.shape)}, the model was built for "
                                 f"{tuple(buffer.shape)}: build the model with the datamodule's model_kwargs()")
            buffer.copy_(value)
        self.seen_items = features["seen_items"].to(self.device)
        self.user_starts = features["user_starts"].to(self.device)
        counts = self.feature_count
        self.frequency = counts / counts.sum().clamp_min(1.0)
        if self.hp.sampler == "popularity":
            self.popularity = S.popularity_probs(counts, self.hp.popularity_alpha)
        if self.hp.sampler == "esans" and self.hp.msac:
            self._books, self._transition = self.build_codebooks()

    def build_codebooks(self) -> tuple[Codebooks, torch.Tensor]:
        feats = {"text": self.feature_text, "attributes": self.feature_attributes,
                 "behaviour": self.feature_behaviour}
        fused = fuse(feats, tuple(self.hp.semantic_modalities))
        k1 = self.hp.num_primary or max(2, int(round(math.sqrt(self.hp.num_items))))
        books = residual_codebooks(fused, k1, self.hp.num_secondary, seed=self.hp.cluster_seed).to(self.device)
        return books, S.cluster_transition(books.centroids, self.hp.cluster_temperature).to(self.device)

    def setup(self, stage: str) -> None:
        datamodule = getattr(self.trainer, "datamodule", None) if self._trainer is not None else None
        if datamodule is not None and hasattr(datamodule, "item_features"):
            self.attach_item_features(datamodule.item_features())
        elif self.seen_items.numel() == 0:
            raise RuntimeError("TwoTower needs its datamodule's item features: pass datamodule=... to the Trainer, "
                               "or call model.attach_item_features(datamodule.item_features()) first")

    # ----- towers ----------------------------------------------------------------------------------------------
    def item_input(self, ids: torch.Tensor) -> torch.Tensor:
        h = self.item_id(ids)
        for name, layer in self.feature_maps.items():
            h = h + layer(getattr(self, f"feature_{name}")[ids])
        return h

    def hops_from_input(self, h0: torch.Tensor) -> list[torch.Tensor]:
        hops = [h0]
        for block in self.item_blocks:
            hops.append(block(hops[-1]))
        return hops

    def item_hops(self, ids: torch.Tensor) -> list[torch.Tensor]:
        return self.hops_from_input(self.item_input(ids))

    @staticmethod
    def pool(hops: list[torch.Tensor]) -> torch.Tensor:
        return F.normalize(torch.stack(hops).mean(0), dim=-1)

    def item_vectors(self, ids: torch.Tensor) -> torch.Tensor:
        return self.pool(self.item_hops(ids))

    def user_from_input(self, h: torch.Tensor, history: torch.Tensor) -> torch.Tensor:
        """User vectors from the history's input vectors h [B, L, d]."""
        mask = (history != R.PAD).unsqueeze(-1).to(h.dtype)
        mean = (h * mask).sum(1) / mask.sum(1).clamp_min(1.0)
        return F.normalize(self.user_mlp(torch.cat([mean, h[:, -1]], dim=-1)), dim=-1)

    def user_vectors(self, history: torch.Tensor) -> torch.Tensor:
        return self.user_from_input(self.item_input(history), history)

    def forward(self, history: torch.Tensor) -> torch.Tensor:
        """[B, num_items + 1] cosine scores of every item (column 0 is padding) for each history."""
        return self.user_vectors(history) @ self.item_vectors(torch.arange(self.hp.num_items + 1,
                                                                           device=history.device)).T

    # ----- negatives ---------------------------------------------------------------------------------------
    def sample_negatives(self, targets: torch.Tensor, user: torch.Tensor | None) -> list[S.Negatives]:
        hp, n, m = self.hp, self.hp.num_items, self.hp.num_negatives
        if hp.sampler == "uniform":
            return [S.uniform(n, m, targets.device)]
        if hp.sampler == "popularity":
            return [S.popularity(self.popularity, m)]
        if hp.sampler == "in_batch":
            return [S.in_batch(targets, self.frequency)]
        if hp.sampler == "mixed":
            return [S.mixed(targets, self.frequency, n, m)]
        if hp.sampler == "hard":
            index = self._index if self._index is not None else self._all_item_vectors()
            return [S.uniform(n, m, targets.device),
                    S.hard_from_index(user, index, targets, hp.num_hard, hp.hard_pool, hp.hard_skip)]
        if hp.sampler == "mixgcf":
            return [S.uniform(n, m, targets.device)]
        groups = [S.in_batch(targets, self.frequency)] if hp.esans_in_batch else []
        if hp.msac:
            groups += list(S.esans_msac(targets, self._books, self._transition, hp.m_c, hp.m_o))
        else:
            ids = torch.randint(1, n + 1, (targets.shape[0], hp.m_c + hp.m_o), device=targets.device)
            groups.append(S.Negatives(ids, torch.full(ids.shape, math.log((hp.m_c + hp.m_o) / n),
                                                      device=targets.device)))
        return groups

    def _all_item_vectors(self) -> torch.Tensor:
        with torch.no_grad():
            return self.item_vectors(torch.arange(self.hp.num_items + 1, device=self.device))

    def on_train_epoch_start(self) -> None:
        if self.hp.sampler == "hard":
            was_training = self.training
            self.eval()
            self._index = self._all_item_vectors()
            self.train(was_training)

    # ----- training ------------------------------------------------------------------------------------------
    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        history, targets = batch[R.HISTORY], batch[R.TARGET]
        B, tau = targets.shape[0], self.hp.temperature
        # Item inputs are computed once per distinct id (histories, then candidates), not once per history position:
        # the side-information maps cost O(distinct items), not O(B x L).
        seen, seen_index = history.unique(return_inverse=True)
        u = self.user_from_input(self.item_input(seen)[seen_index], history)
        groups = self.sample_negatives(targets, u.detach())  # the hard miner ranks with the current user vectors
        candidates = self.mixgcf_candidates(targets) if self.hp.sampler == "mixgcf" else None
        parts = [targets, *(g.ids.reshape(-1) for g in groups)]
        if candidates is not None:
            parts.append(candidates.reshape(-1))
        unique, inverse = torch.cat(parts).unique(return_inverse=True)
        hops = self.item_hops(unique)
        vectors = self.pool(hops)
        pos = vectors[inverse[:B]]
        logits = [(u * pos).sum(-1, keepdim=True) / tau]
        offset, per_row = B, []
        for g in groups:
            where = inverse[offset:offset + g.ids.numel()].reshape(g.ids.shape)
            offset += g.ids.numel()
            v = vectors[where]
            s = (u @ v.T if g.shared else torch.einsum("bd,bmd->bm", u, v)) / tau
            if g.log_q is not None and self.hp.logq_correction:
                s = s - g.log_q
            hit = (g.ids.unsqueeze(0) if g.shared else g.ids) == targets.unsqueeze(1)
            logits.append(s.masked_fill(hit, float("-inf")))
            if not g.shared:
                per_row.append(v)
        virtual = self.edis_negatives(pos, per_row) if self.hp.sampler == "esans" else []
        if candidates is not None:
            where = inverse[offset:].reshape(candidates.shape)
            virtual.append(self.mixgcf_negatives(u, [hop[where] for hop in hops],
                                                 [hop[inverse[:B]] for hop in hops]))
        for v in virtual:
            logits.append(torch.einsum("bd,bmd->bm", u, F.normalize(v, dim=-1)) / tau)
        logits = torch.cat(logits, dim=1)
        loss = F.cross_entropy(logits, torch.zeros(B, dtype=torch.long, device=logits.device))
        self.log("train/loss", loss, prog_bar=True, batch_size=B)
        return loss

    def edis_negatives(self, pos: torch.Tensor, per_row: list[torch.Tensor]) -> list[torch.Tensor]:
        """ESANS's EDIS virtual negatives ([B, k, d] each) from the row's sampled negatives."""
        hp = self.hp
        if not per_row:
            return []
        sampled = torch.cat(per_row, dim=1)  # the row's MSAC (or uniform) negatives
        out = []
        if hp.edis_simple:
            out.append(S.interpolate_negatives(sampled, hp.m_o))
        if hp.edis_hard:  # the close negatives (MSAC's first per-row group), or all without MSAC
            out.append(S.interpolate_with_positive(per_row[0] if hp.msac else sampled, pos, hp.interpolation_lambda))
        return out

    def mixgcf_candidates(self, targets: torch.Tensor) -> torch.Tensor:
        shape = (targets.shape[0], self.hp.mixgcf_synthetic, self.hp.mixgcf_candidates)
        return torch.randint(1, self.hp.num_items + 1, shape, device=targets.device)

    @staticmethod
    def mixgcf_negatives(u: torch.Tensor, cand_hops: list[torch.Tensor],
                         pos_hops: list[torch.Tensor]) -> torch.Tensor:
        """MixGCF (Huang et al., KDD 2021): at each hop (item-tower layer) positive mixing e' = a e+ + (1 - a) e of
        every candidate with a ~ U(0, 1), then hop mixing keeps the candidate whose mixed hop scores highest with the
        user; the synthetic negative pools the kept hops. cand_hops: [B, S, M, d] per hop -> [B, S, d]."""
        pooled = 0
        for hop_c, hop_p in zip(cand_hops, pos_hops):
            a = torch.rand(*hop_c.shape[:3], 1, device=hop_c.device)
            mixed = a * hop_p[:, None, None, :] + (1 - a) * hop_c
            best = torch.einsum("bd,bsmd->bsm", u.detach(), mixed).argmax(-1)  # [B, S]
            pooled = pooled + mixed.gather(2, best[..., None, None].expand(-1, -1, 1, mixed.shape[-1])).squeeze(2)
        return pooled / len(cand_hops)

    def configure_optimizers(self):
        return torch.optim.Adam(self.parameters(), lr=self.hp.lr, weight_decay=self.hp.weight_decay)

    # ----- evaluation ----------------------------------------------------------------------------------------
    def _seen_mask(self, users: torch.Tensor, seen_end: torch.Tensor, num_columns: int) -> torch.Tensor:
        starts = self.user_starts[users]
        lengths = seen_end - starts
        rows = torch.repeat_interleave(torch.arange(users.shape[0], device=users.device), lengths)
        first = torch.repeat_interleave(starts - (lengths.cumsum(0) - lengths), lengths)
        cols = self.seen_items[first + torch.arange(int(lengths.sum()), device=users.device)]
        mask = torch.zeros(users.shape[0], num_columns, dtype=torch.bool, device=users.device)
        mask[rows, cols] = True
        mask[:, R.PAD] = True
        return mask

    def _evaluate(self, batch: dict, metrics: nn.ModuleDict, stage: str) -> None:
        if self._eval_items is None:
            self._eval_items = self._all_item_vectors()
        users = self.user_vectors(batch[R.HISTORY])
        scores = users @ self._eval_items.T
        exclude = self._seen_mask(batch[R.USER], batch[R.SEEN_END], scores.shape[1])
        rank = target_rank(scores.float(), batch[R.TARGET], exclude)
        for name, values in ranking_metrics(rank, self.eval_ks).items():
            name = name.replace("hr@", "recall@")
            metric = metrics[self._metric_keys[name]]
            metric.update(values)
            self.log(f"{stage}/{name}", metric, on_step=False, on_epoch=True, batch_size=rank.shape[0])
        if self.hp.eval_index != "exact":
            self._evaluate_index(users, scores, exclude, batch[R.TARGET], stage)

    def _evaluate_index(self, users, scores, exclude, target, stage: str) -> None:
        """Recall@K when the catalogue is served from the approximate index, and the index's recall of the exact
        top-K (both with the user's seen items removed)."""
        hp, k_max = self.hp, max(self.eval_ks)
        if self._index_built is None:
            self._index_built = ItemIndex(hp.eval_index, self._eval_items, hp.index_nlist, hp.index_nprobe,
                                          hp.index_hnsw_m, seed=hp.cluster_seed)
        depth = k_max + int(exclude.sum(1).max())  # room for the seen items the filter removes (eval only)
        found = self._index_built.search(users, depth)
        rank = approx_rank(found, exclude, target, miss=hp.num_items + 1)
        approx_top = top_candidates(found, kept(found, exclude), k_max)
        exact_top = scores.float().masked_fill(exclude, float("-inf")).topk(k_max, dim=1).indices
        metrics = self.val_ann if stage == "val" else self.test_ann
        for k in self.eval_ks:
            for name, values in ((f"ann_recall@{k}", (rank <= k).float()),
                                 (f"index_recall@{k}", index_recall(approx_top, exact_top, k))):
                metric = metrics[name.replace("@", "_at_")]
                metric.update(values)
                self.log(f"{stage}/{name}", metric, on_step=False, on_epoch=True, batch_size=rank.shape[0])

    def on_validation_epoch_start(self) -> None:
        self._eval_items, self._index_built = None, None

    def on_test_epoch_start(self) -> None:
        self._eval_items, self._index_built = None, None

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        self._evaluate(batch, self.val_metrics, "val")

    def test_step(self, batch: dict, batch_idx: int) -> None:
        self._evaluate(batch, self.test_metrics, "test")

    @staticmethod
    def search_space(trial: optuna.Trial) -> dict:
        """The one space every sampler is tuned over, so each row gets the same tuning; sampler-specific settings
        (ESANS's lambda, m_c, m_o) stay at their defaults rather than giving one row more knobs."""
        return {
            "lr": trial.suggest_float("lr", 3e-4, 3e-3, log=True),
            "temperature": trial.suggest_float("temperature", 0.02, 0.2, log=True),
            "embed_dim": trial.suggest_categorical("embed_dim", [32, 64, 128]),
            "dropout": trial.suggest_float("dropout", 0.0, 0.3),
            "weight_decay": trial.suggest_float("weight_decay", 1e-8, 1e-4, log=True),
        }


VARIANTS = {
    "uns": ("uniform negatives (UNS)", {"sampler": "uniform"}),
    "pns": ("popularity negatives, unigram^0.75 (PNS)", {"sampler": "popularity"}),
    "in_batch": ("in-batch negatives with logQ correction (Yi et al. 2019)", {"sampler": "in_batch"}),
    "mns": ("mixed negative sampling: in-batch + uniform (Yang et al. 2020)", {"sampler": "mixed"}),
    "hard_neg": ("uniform + hard negatives mined from a per-epoch item index", {"sampler": "hard"}),
    "mixgcf": ("uniform + MixGCF synthesised hard negatives (Huang et al. 2021)", {"sampler": "mixgcf"}),
    "esans": ("ESANS: MSAC semantic-aware negatives + EDIS interpolation (Xing et al. 2025)", {"sampler": "esans"}),
}
for _name, (_doc, _args) in VARIANTS.items():
    register_model_variant(_name, TwoTower, _doc, **_args)
