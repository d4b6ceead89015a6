"""The distill family base: what every dataset-distillation method for sequential recommendation shares.

A method builds a *summary* of the real training data: `num_summary_users` sequences of `summary_len` positions,
each position a distribution over the items (soft for TD3 and Farzi, one-hot for real-user subsets). The base then
does what the evaluation of TD3 (Zhang et al., WWW'25, arXiv 2502.02854; code `Maitouer/TD3`) does for every
method alike:

1. *Target training on the summary* (`train_on_summary`): a fresh target of any registered seqrec architecture
   (the `MODELS` registry: SASRec, GRU4Rec, ...) is trained for `target_steps` Adam steps (the code; plain SGD
   with `inner_optimizer="sgd"`, which distillation then unrolls too) on fixed-order summary
   minibatches with the code's soft loss: KL(summary's item distribution at position p || the target's softmax
   after positions < p), at the last position and, for the architectures in `prefix_augmentation_for`, also at one
   random prefix end p ~ U{min_prefix..len-2} per sequence (the code's SASRec-only augmentation), averaged.
   Soft positions enter the target through its own item table: `soft_item_inputs` swaps the lookup of the
   input ids for `distribution @ E` with a forward hook, so no seqrec model is touched or copied.
2. *The full-data reference* (`train_reference`): the same architecture trained on all real training rows (every
   training target with the distill datasets' default windows) with its own loss (early stopping on validation
   NDCG@10), as a Lightning stage (`stages.py`: its own Trainer with the run's accelerator, precision and
   devices), cached under the datamodule's cache dir per (data, architecture, settings, seed) so every method of
   a board divides by the same run. Fractions = target metric / reference metric.
3. *Evaluation on the real leave-one-out split* under two protocols, each logged under its own prefix and never
   mixed: `fr/` full ranking over all items (history filtered, the seqrec family's protocol) and `s100/` the
   target against the frozen sampled negatives of the batch (TD3's RecBole `uni100`).

Logged names: `{val,test}/{fr,s100}/<target>/<metric>`, `.../<metric>_frac` (fraction of the reference),
`{val,test}/ref/{fr,s100}/<target>/<metric>`, and the costs `summary_floats`, `distill_s`, `distill_peak_mb`,
`<target>/train_s`, `<target>/ref_train_s`, `<target>/speedup`. During fit only the first target (the
distillation learner's architecture) is trained and evaluated each epoch, for model selection.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import resource
import time
from pathlib import Path

import lightning.pytorch as pl
import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call
from torchmetrics import MeanMetric

from contracts.batch import distill as B
from contracts.registry import MODELS
from lightning_modules.safe_load import load_cached
from lightning_modules.distill.stages import RealDataStage, SummaryStage
from lightning_modules.stages import run_stage
from lightning_modules.seqrec.metrics import ranking_metrics, target_rank

PROTOCOLS = ("fr", "s100")
REFERENCE_VERSION = 1  # bump when the reference training changes, so stale caches are not reused


# ----- soft inputs for any seqrec model -------------------------------------------------------------------------
@contextlib.contextmanager
def soft_item_inputs(model: nn.Module, distributions: torch.Tensor):
    """Soft items for any seqrec model: yields `offset`; feed the model id *codes* where code `offset + r` stands
    for the soft item `distributions[r]` ([R, num_items] over ids 1..n) and 0 for padding. Inside the context,
    wherever the model looks codes up in its item table (after any reordering it does, e.g. GRU4Rec's
    left-to-right padding), the lookup returns `distributions[r] @ E[1:]` with the table's current weight (so it
    works under `functional_call`). Codes are > num_items, so they can never be mistaken for a real id, and the
    model's padding masks stay right. Raises if the model never looked codes up: such an architecture cannot
    take soft inputs this way.
    """
    offset = model.num_items + 1
    fired = []

    def pre_hook(module, args):
        ids = args[0]
        if ids.dtype == torch.long and ids.numel() and int(ids.max()) >= offset:
            module._soft_codes = ids
            return (torch.zeros_like(ids),) + tuple(args[1:])

    def post_hook(module, args, output):
        ids = module.__dict__.pop("_soft_codes", None)
        if ids is not None:
            fired.append(True)
            embedded = distributions @ module.weight[1:]  # [R, d]: one product for all windows of the batch
            return embedded[(ids - offset).clamp(min=0)] * (ids >= offset).unsqueeze(-1)

    handles = []
    for m in model.modules():
        if isinstance(m, nn.Embedding) and m.num_embeddings == offset:
            handles += [m.register_forward_pre_hook(pre_hook), m.register_forward_hook(post_hook)]
    try:
        yield offset
    finally:
        for h in handles:
            h.remove()
    if not fired:
        raise RuntimeError(f"{type(model).__name__} does not embed its input ids through an item table of "
                           f"{offset} rows; it cannot be trained on a soft summary")


def soft_hidden(model: nn.Module, params: dict, inputs: torch.Tensor, input_valid: torch.Tensor) -> torch.Tensor:
    """[b, L, d] user vectors of `model` run functionally with `params` on soft inputs [b, L, n] (valid [b, L])."""
    b, length, n = inputs.shape
    with soft_item_inputs(model, inputs.reshape(b * length, n)) as offset:
        codes = (offset + torch.arange(b * length, device=inputs.device).view(b, length)) * input_valid
        return functional_call(model, params, (codes,))


def item_logits(model: nn.Module, params: dict, user: torch.Tensor) -> torch.Tensor:
    """Scores of items 1..n (the padding column dropped) from the model's (possibly functional) item table."""
    table = params["item_embedding.weight"][1:]
    if getattr(model, "l2_norm", False):
        table, user = F.normalize(table, dim=-1, eps=1e-6), F.normalize(user, dim=-1, eps=1e-6)
    return user @ table.T / getattr(model, "temperature", 1.0)


def summary_loss(model: nn.Module, params: dict, dist: torch.Tensor, valid: torch.Tensor, prefix: bool,
                 min_prefix: int = 5) -> torch.Tensor:
    """The TD3 code's learner loss on summary sequences `dist` [b, Z, n] (valid [b, Z], left-padded):
    KL(dist[:, Z-1] || softmax(model after positions < Z-1)), and with `prefix` the mean of that and the same at
    one prefix end p per row, p ~ U{first+min_prefix .. Z-2} (clamped for short rows). Each window is fed
    right-aligned (left padding, as the family's real data); all windows go through the model in one batch."""
    b, Z, n = dist.shape
    L = model.max_len
    ends = [torch.full((b,), Z - 1, device=dist.device)]
    if prefix and Z > 2:
        first = (~valid).sum(1)  # left padding: index of the first item
        hi = torch.full_like(first, Z - 2)
        lo = torch.maximum(torch.minimum(first + min_prefix, hi), torch.minimum(first + 1, hi))
        ends.append(torch.minimum(lo + (torch.rand(b, device=dist.device) * (hi - lo + 1)).long(), hi))
    end = torch.cat(ends)  # [E*b]
    row = torch.arange(b, device=dist.device).repeat(len(ends))
    index = end.unsqueeze(1) - L + torch.arange(L, device=dist.device).unsqueeze(0)  # [E*b, L] positions
    ok = (index >= 0) & valid[row.unsqueeze(1), index.clamp(min=0)]
    with soft_item_inputs(model, dist.reshape(b * Z, n)) as offset:
        codes = torch.where(ok, offset + row.unsqueeze(1) * Z + index.clamp(min=0), 0)
        user = functional_call(model, params, (codes,))[:, -1]
    log_q = F.log_softmax(item_logits(model, params, user), dim=-1)
    # mean over windows of the per-window batchmean KL = mean over all rows (every window has b rows)
    return F.kl_div(log_q, dist[row, end], reduction="none").sum(-1).mean()


def _mb(value_bytes: float) -> float:
    return round(value_bytes / 2**20, 1)


def peak_memory_mb() -> float:
    """Peak GPU memory where a GPU is used, else the process's peak resident set size."""
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        return _mb(torch.cuda.max_memory_allocated())
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


class DistillModule(pl.LightningModule):
    """Shared target training, full-data references and two-protocol evaluation. Subclasses provide the summary:
    `num_summary_users`, `summary_len`, `summary_distributions(users) -> (dist [b, Z, n], valid [b, Z])`,
    `summary_floats()`, and, if they distil iteratively, `training_step` (manual optimisation)."""

    iterative = False  # whether fit() optimises something; one-shot methods stop after the first epoch

    def __init__(
        self,
        num_items: int,
        max_len: int,
        targets: tuple[str, ...] = ("sasrec", "gru4rec"),
        target_args: dict | None = None,
        target_steps: int = 200,
        inner_batch: int = 15,
        net_lr: float = 0.005,
        net_weight_decay: float = 5e-5,
        prefix_augmentation_for: tuple[str, ...] = ("sasrec",),
        min_prefix: int = 5,
        reference_max_epochs: int = 200,
        reference_patience: int = 10,
        reference_batch_size: int = 128,
        eval_ks: tuple[int, ...] = (10, 20),
        inner_optimizer: str = "adam",
    ):
        super().__init__()
        if inner_optimizer not in ("adam", "sgd"):
            raise ValueError(f"inner_optimizer must be 'adam' (the code) or 'sgd', got {inner_optimizer!r}")
        self.inner_optimizer = inner_optimizer
        if not targets:
            raise ValueError("targets must name at least one seqrec architecture")
        for name in targets:
            entry = MODELS.get(name)
            if entry.family != "seqrec":
                raise ValueError(f"target {name!r} is a {entry.family} model; targets must be seqrec architectures")
        self.automatic_optimization = False
        self.num_items, self.max_len = num_items, max_len
        self.targets = tuple(targets)
        self.target_args = {k: dict(v or {}) for k, v in (target_args or {}).items()}
        self.target_steps, self.inner_batch = target_steps, inner_batch
        self.net_lr, self.net_weight_decay = net_lr, net_weight_decay
        self.prefix_augmentation_for = tuple(prefix_augmentation_for)
        self.min_prefix = min_prefix
        self.reference_max_epochs, self.reference_patience = reference_max_epochs, reference_patience
        self.reference_batch_size = reference_batch_size
        self.eval_ks = tuple(int(k) for k in eval_ks)
        self.metric_names = list(ranking_metrics(torch.ones(1), self.eval_ks))
        # references stop early on NDCG@10, or on the first cut-off the board asks when it does not ask 10
        self.selection_metric = "ndcg@10" if 10 in self.eval_ks else f"ndcg@{self.eval_ks[0]}"
        keys = [self._key(stage, group, proto, t, m) for stage in ("val", "test") for group in ("", "ref/")
                for proto in PROTOCOLS for t in self.targets for m in self.metric_names]
        self.eval_metrics = nn.ModuleDict({k: MeanMetric() for k in keys})
        self._trained: dict = {}  # fingerprint -> {target: (model, seconds)}
        self._references: dict = {}  # target -> (model, seconds, epochs)
        self.distill_seconds = 0.0
        self.distill_peak_mb = 0.0
        self.stage_runs: list[dict] = []  # one entry per real-data stage this module ran (not cached ones)

    @staticmethod
    def _key(stage, group, proto, target, metric) -> str:
        return f"{stage}|{group}{proto}|{target}|{metric}".replace("@", "_at_").replace("/", "~")

    # ----- what a method provides ---------------------------------------------------------------------------
    num_summary_users: int
    summary_len: int

    def summary_distributions(self, users: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        raise NotImplementedError

    def summary_floats(self) -> int:
        raise NotImplementedError

    def build_summary(self) -> None:
        """Called once at the start of fit, with the real data at `self.real_data()`."""

    # ----- data access (the datamodule of the running trainer; models never import datamodules) ---------------
    def real_data(self):
        return self.trainer.datamodule

    def new_target(self, name: str) -> nn.Module:
        return MODELS.get(name).cls(num_items=self.num_items, max_len=self.max_len,
                                    **self.target_args.get(name, {})).to(self.device)

    # ----- fit: timing and memory around the method's distillation ---------------------------------------------
    def on_fit_start(self) -> None:
        self._fit_start, self._val_seconds = time.perf_counter(), 0.0
        self.build_summary()

    def on_train_epoch_end(self) -> None:
        if not self.iterative:
            self.trainer.should_stop = True

    def on_train_end(self) -> None:
        self.distill_seconds = time.perf_counter() - self._fit_start - self._val_seconds
        self.distill_peak_mb = peak_memory_mb()

    def training_step(self, batch, batch_idx):
        return None  # one-shot methods: the summary was built in build_summary

    def configure_optimizers(self):
        return None

    # ----- target training -------------------------------------------------------------------------------------
    def train_on_summary(self, name: str) -> tuple[nn.Module, float]:
        """A fresh `name` trained `target_steps` Adam steps on the (detached) summary, as one Lightning stage
        (`stages.SummaryStage` under a Trainer with this run's accelerator, precision and devices); returns
        (model, seconds)."""
        prefix = name in self.prefix_augmentation_for
        optimizer = torch.optim.Adam if self.inner_optimizer == "adam" else torch.optim.SGD

        def loss(model: nn.Module, dist: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
            params = {**dict(model.named_parameters()), **dict(model.named_buffers())}
            return summary_loss(model, params, dist, valid, prefix, self.min_prefix)

        stage = SummaryStage(
            self.new_target(name), self.target_steps, lambda step: self.summary_distributions(self.cyclic_users(step)),
            loss, lambda parameters: optimizer(parameters, lr=self.net_lr, weight_decay=self.net_weight_decay))
        run_stage(stage, self._trainer, 1, self.device)
        return stage.model, stage.train_seconds

    def cyclic_users(self, step: int | torch.Tensor) -> torch.Tensor:
        """The code's fixed order: minibatch `step` takes the next `inner_batch` synthetic users, cyclically."""
        b = min(self.inner_batch, self.num_summary_users)
        return (step * b + torch.arange(b, device=self.device)) % self.num_summary_users

    def train_reference(self, name: str) -> tuple[nn.Module, float]:
        """`name` trained on ALL real training sequences with its own loss and optimiser, early stopping on
        validation NDCG@10 (full ranking); cached per data, architecture, settings and seed."""
        if name in self._references:
            return self._references[name][:2]
        data = self.real_data()
        seed = torch.initial_seed()
        spec = {"version": REFERENCE_VERSION, "data": data.data_hash, "target": name, "num_items": self.num_items,
                "max_len": self.max_len, "args": self.target_args.get(name, {}), "seed": seed,
                "epochs": self.reference_max_epochs, "patience": self.reference_patience,
                "batch": self.reference_batch_size}
        digest = hashlib.sha1(json.dumps(spec, sort_keys=True, default=str).encode()).hexdigest()[:16]
        path = Path(data.cache_dir) / "distill-references" / f"{name}-{digest}.pt"
        model = self.new_target(name)
        saved = load_cached(path, map_location=self.device, required=("state_dict", "train_seconds", "epochs"))
        if saved is not None:
            model.load_state_dict(saved["state_dict"])
            result = (model.eval(), saved["train_seconds"], saved["epochs"])
        else:
            result = (*self.fit_on_real(model), )
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")  # a killed run never leaves half a cache
            torch.save({"state_dict": result[0].state_dict(), "train_seconds": result[1], "epochs": result[2],
                        "spec": spec}, tmp)
            os.replace(tmp, path)
        self._references[name] = result
        return result[:2]

    def fit_on_real(self, model: nn.Module, max_epochs: int | None = None, snapshot_epochs: tuple[int, ...] = (),
                    patience: int | None = None):
        """Train a seqrec model on the real training rows, as one Lightning stage (`stages.RealDataStage` under a
        Trainer with this run's accelerator, precision and devices); returns (best model, train seconds, best
        epoch) and, when `snapshot_epochs` is given, also {epoch: state_dict} after those epochs (an expert
        trajectory). Early stopping on the validation split's selection metric (full ranking)."""
        data = self.real_data()

        def score(target: nn.Module, batch: dict) -> torch.Tensor:
            return ranking_metrics(self.ranks(target, batch)["fr"], self.eval_ks)[self.selection_metric]

        stage = RealDataStage(model, data.train_set, data.val_set, self.reference_batch_size, 1024, score,
                              patience or self.reference_patience, snapshot_epochs)
        run_stage(stage, self._trainer, max_epochs or self.reference_max_epochs, self.device)
        self.stage_runs.append({"epochs": stage.epochs, "best_epoch": stage.best_epoch,
                                "train_seconds": stage.train_seconds})
        if snapshot_epochs:
            return stage.model, stage.train_seconds, stage.best_epoch, stage.snapshots
        return stage.model, stage.train_seconds, stage.best_epoch

    # ----- evaluation ------------------------------------------------------------------------------------------
    @staticmethod
    @torch.no_grad()
    def ranks(model: nn.Module, batch: dict) -> dict[str, torch.Tensor]:
        """Rank of the target under both protocols: among all items (history filtered when the model filters) and
        among the target + the batch's frozen sampled negatives."""
        model.eval()
        scores = model.score_all(batch).float()
        full = target_rank(scores, batch[B.TARGET], model.candidate_exclusions(batch, scores.shape[1]))
        candidates = torch.cat([batch[B.TARGET].unsqueeze(1), batch[B.NEGATIVES]], dim=1)
        picked = scores.gather(1, candidates)
        sampled = target_rank(picked, torch.zeros_like(batch[B.TARGET]))  # the target is column 0
        return {"fr": full, "s100": sampled}

    def _fingerprint(self) -> str:
        digest = hashlib.sha1()
        for k, v in sorted(self.state_dict().items()):
            if not k.startswith("eval_metrics"):
                digest.update(k.encode())
                digest.update(v.detach().cpu().contiguous().numpy().tobytes())
        return digest.hexdigest()

    def _final_evaluation(self) -> bool:
        return self.trainer.state.fn in ("validate", "test")

    def _prepare_targets(self) -> None:
        """Train the targets on the current summary (once per summary state) and, after fit, the references."""
        final = self._final_evaluation()
        names = self.targets if final else self.targets[:1]
        key = (self._fingerprint(), names)
        with torch.inference_mode(False), torch.enable_grad():  # Lightning evaluates under inference mode
            self._train_targets(key, names, final)

    def _train_targets(self, key, names, final) -> None:
        if key not in self._trained:
            if not final:
                self._trained.clear()  # summaries of earlier epochs are never needed again
            self._trained[key] = {name: self.train_on_summary(name) for name in names}
        self._current = self._trained[key]
        self._current_refs = {name: self.train_reference(name) for name in names} if final else {}

    def on_validation_epoch_start(self) -> None:
        self._val_start = time.perf_counter()
        self._prepare_targets()

    def on_test_epoch_start(self) -> None:
        self._prepare_targets()

    def _eval_step(self, batch: dict, stage: str) -> None:
        for group, models in (("", self._current), ("ref/", self._current_refs)):
            for name, (model, _) in models.items():
                for proto, rank in self.ranks(model, batch).items():
                    for metric, values in ranking_metrics(rank, self.eval_ks).items():
                        self.eval_metrics[self._key(stage, group, proto, name, metric)].update(values)

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        self._eval_step(batch, "val")

    def test_step(self, batch: dict, batch_idx: int) -> None:
        self._eval_step(batch, "test")

    def _log_epoch(self, stage: str) -> None:
        values: dict[str, float] = {}
        for group, models in (("", self._current), ("ref/", self._current_refs)):
            for name in models:
                for proto in PROTOCOLS:
                    for metric in self.metric_names:
                        meter = self.eval_metrics[self._key(stage, group, proto, name, metric)]
                        values[f"{group}{proto}/{name}/{metric}"] = float(meter.compute())
                        meter.reset()
        for name in self._current_refs:
            for proto in PROTOCOLS:
                for metric in self.metric_names:
                    ref = values[f"ref/{proto}/{name}/{metric}"]
                    values[f"{proto}/{name}/{metric}_frac"] = values[f"{proto}/{name}/{metric}"] / ref if ref else 0.0
            seconds, ref_seconds = self._current[name][1], self._current_refs[name][1]
            values[f"{name}/train_s"] = seconds
            values[f"{name}/ref_train_s"] = ref_seconds
            values[f"{name}/speedup"] = ref_seconds / seconds if seconds else 0.0
        if self._final_evaluation():
            values.update(summary_floats=float(self.summary_floats()), distill_s=self.distill_seconds,
                          distill_peak_mb=self.distill_peak_mb)
        for name, value in values.items():
            self.log(f"{stage}/{name}", value, on_epoch=True)

    def on_validation_epoch_end(self) -> None:
        self._log_epoch("val")
        self._val_seconds = getattr(self, "_val_seconds", 0.0) + time.perf_counter() - self._val_start

    def on_test_epoch_end(self) -> None:
        self._log_epoch("test")
