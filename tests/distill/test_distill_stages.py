"""The distill family's real-data side: its training stages run through Lightning (own Trainer, the outer run's
precision) and give, at a fixed seed, exactly what a plain loop gives; the reference cache is reused; the real side
sees every training target by default."""
from __future__ import annotations

import copy
import json
from pathlib import Path

import lightning.pytorch as pl
import numpy as np
import pytest
import torch

import datamodules  # noqa: F401
import lightning_modules  # noqa: F401
from contracts.batch import distill as B
from contracts.registry import DATASETS, MODELS
from lightning_modules.distill.base import DistillModule, summary_loss
from lightning_modules.distill.stages import RealDataStage, SummaryStage
from lightning_modules.seqrec.metrics import ranking_metrics
from tests.conftest import fast_trainer

TINY = {"embed_dim": 8, "num_blocks": 1, "num_heads": 1, "dropout": 0.2, "loss": "ce"}
DATA = dict(num_users=60, num_items=40, min_length=8, max_length=30, max_len=8, num_negatives=10, batch_size=30)


def tiny_data(**kw):
    dm = DATASETS.get("distill-synthetic").cls(**{**DATA, **kw})
    dm.prepare_data()
    dm.setup()
    return dm


class Probe(MODELS.get("full_data").cls):
    """Runs one real-data stage at the start of fit, from a fixed RNG state, and keeps what it returned."""

    def build_summary(self) -> None:
        super().build_summary()
        torch.manual_seed(123)
        self.probe = self.fit_on_real(self.new_target("sasrec"), max_epochs=6, snapshot_epochs=(2, 3), patience=2)


def run_probe(dm, target=TINY, **trainer_kwargs):
    model = Probe(**dm.model_kwargs(), targets=("sasrec",), target_args={"sasrec": target}, eval_ks=(10,),
                  reference_batch_size=16)
    fast_trainer(max_epochs=1, limit_val_batches=0, **trainer_kwargs).fit(model, datamodule=dm)
    return model


def plain_loop(model, dm, epochs, batch_size, patience, snapshot_epochs):
    """The stage written out as a plain PyTorch loop (what the family ran before it moved into Lightning)."""
    train, val = dm.train_set.tensors, dm.val_set.tensors
    optimizer = model.configure_optimizers()
    rows = len(train[B.INPUT_IDS])
    best, best_state, best_epoch, waited, snapshots = -1.0, None, 0, 0, {}
    for epoch in range(1, epochs + 1):
        model.train()
        order = torch.randperm(rows)
        for i in range(0, rows, batch_size):
            batch = {k: v[order[i:i + batch_size]] for k, v in train.items()}
            loss = model.sequence_loss(model.user_vectors(batch), batch)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        if epoch in snapshot_epochs:
            snapshots[epoch] = copy.deepcopy(model.state_dict())
        score = float(ranking_metrics(DistillModule.ranks(model, val)["fr"], (10,))["ndcg@10"].sum()) / len(val[B.TARGET])
        if score > best:
            best, best_state, best_epoch, waited = score, copy.deepcopy(model.state_dict()), epoch, 0
        else:
            waited += 1
            if waited >= patience and epoch >= max(snapshot_epochs):
                break
    model.load_state_dict(best_state)
    return model, best_epoch, snapshots


def test_a_stage_runs_under_its_own_trainer_with_the_outer_precision(monkeypatch):
    seen = []
    step = RealDataStage.training_step

    def spy(self, batch, batch_idx):
        seen.append((self.trainer.precision, torch.is_autocast_enabled("cpu"), torch.get_autocast_dtype("cpu")))
        return step(self, batch, batch_idx)

    monkeypatch.setattr(RealDataStage, "training_step", spy)
    pl.seed_everything(0, verbose=False)
    model = run_probe(tiny_data(), precision="bf16-mixed")
    assert seen, "the stage never ran a Lightning training step"
    assert all(s == ("bf16-mixed", True, torch.bfloat16) for s in seen), set(seen)
    assert len(model.stage_runs) == 1 and model.stage_runs[0]["epochs"] >= 3


@pytest.mark.slow  # several tiny fits; the summary stage's equality test stays in the default tier
def test_a_stage_reproduces_at_a_fixed_seed_and_equals_the_plain_loop():
    dm = tiny_data()
    first, second = run_probe(dm), run_probe(dm)
    (a, _, a_epoch, a_snaps), (b, _, b_epoch, b_snaps) = first.probe, second.probe
    assert a_epoch == b_epoch and sorted(a_snaps) == [2, 3]
    for name, value in a.state_dict().items():
        assert torch.equal(value, b.state_dict()[name]), name
    torch.manual_seed(123)
    plain, plain_epoch, plain_snaps = plain_loop(first.new_target("sasrec"), dm, 6, 16, 2, (2, 3))
    assert plain_epoch == a_epoch
    for name, value in plain.state_dict().items():
        assert torch.equal(value, a.state_dict()[name]), name
        assert torch.equal(plain_snaps[3][name], a_snaps[3][name]), name


def test_training_on_a_summary_is_a_lightning_stage_equal_to_the_plain_loop(monkeypatch):
    dm = tiny_data()
    model = MODELS.get("random_subset").cls(
        **dm.model_kwargs(), targets=("sasrec",), target_args={"sasrec": TINY}, eval_ks=(10,), synthetic_users=6,
        synthetic_len=8, target_steps=7, inner_batch=4)
    fast_trainer(max_epochs=1, limit_val_batches=0).fit(model, datamodule=dm)
    stages = []
    monkeypatch.setattr(SummaryStage, "on_train_start", lambda self: (stages.append(self), setattr(self, "_start", 0.0)))
    torch.manual_seed(7)
    staged, seconds = model.train_on_summary("sasrec")
    assert len(stages) == 1 and stages[0].trainer.global_step == 7 and seconds > 0

    torch.manual_seed(7)  # the loop the stage replaces, written out
    plain = model.new_target("sasrec").train()
    optimizer = torch.optim.Adam(plain.parameters(), lr=model.net_lr, weight_decay=model.net_weight_decay)
    for step in range(7):
        with torch.no_grad():
            dist, valid = model.summary_distributions(model.cyclic_users(step))
        params = {**dict(plain.named_parameters()), **dict(plain.named_buffers())}
        loss = summary_loss(plain, params, dist, valid, True, model.min_prefix)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert not staged.training
    for name, value in plain.state_dict().items():
        assert torch.equal(value, staged.state_dict()[name]), name


@pytest.mark.slow  # several tiny fits; the summary stage's equality test stays in the default tier
def test_the_reference_cache_is_reused():
    pl.seed_everything(0, verbose=False)
    dm = tiny_data(seed=3)

    def validate():
        pl.seed_everything(0, verbose=False)
        model = MODELS.get("random_subset").cls(**dm.model_kwargs(), targets=("sasrec",), synthetic_users=4,
                                                synthetic_len=6, target_steps=3, inner_batch=2, eval_ks=(10,),
                                                target_args={"sasrec": TINY}, reference_max_epochs=2)
        fast_trainer(max_epochs=1).fit(model, datamodule=dm)
        model.stage_runs.clear()
        return model, fast_trainer().validate(model, datamodule=dm, verbose=False)[0]

    first, first_metrics = validate()
    second, second_metrics = validate()
    assert len(first.stage_runs) == 1 and second.stage_runs == []  # the second run loaded the cached reference
    assert first_metrics["val/ref/fr/sasrec/ndcg@10"] == second_metrics["val/ref/fr/sasrec/ndcg@10"]


@pytest.mark.slow  # several tiny fits; the summary stage's equality test stays in the default tier
def test_the_real_side_sees_every_training_target(monkeypatch):
    dm = tiny_data()
    offsets = dm.inner._sequences()["offsets"]
    training_targets = int((np.diff(offsets) - 3).sum())  # all but the first, validation and test items
    assert int((dm.train_set.tensors[B.TARGET_IDS] != B.PAD).sum()) == training_targets
    last = tiny_data(train_windows="last")
    assert int((last.train_set.tensors[B.TARGET_IDS] != B.PAD).sum()) < training_targets  # long users truncated
    # subsets read each user's last training items, the same under either windowing
    rows = torch.cat([last.train_set.tensors[B.INPUT_IDS], last.train_set.tensors[B.TARGET_IDS][:, -1:]], dim=1)
    assert torch.equal(dm.user_sequences, rows) and torch.equal(last.user_sequences, rows)

    seen = {"stage": 0, "outer": 0}
    stage_step = RealDataStage.training_step
    outer_loss = MODELS.get("td3").cls.outer_loss

    def count_stage(self, batch, batch_idx):
        if self.current_epoch == 0:
            seen["stage"] += int((batch[B.TARGET_IDS] != B.PAD).sum())
        return stage_step(self, batch, batch_idx)

    def count_outer(self, params, batch):
        seen["outer"] += int((batch[B.TARGET_IDS] != B.PAD).sum())
        return outer_loss(self, params, batch)

    monkeypatch.setattr(RealDataStage, "training_step", count_stage)
    monkeypatch.setattr(MODELS.get("td3").cls, "outer_loss", count_outer)
    pl.seed_everything(0, verbose=False)
    td3 = MODELS.get("td3").cls(**dm.model_kwargs(), synthetic_users=4, synthetic_len=6, user_rank=2, time_rank=2,
                                inner_steps=2, window=1, inner_batch=2, learner_args=TINY, targets=("sasrec",),
                                target_args={"sasrec": TINY}, target_steps=2, pretrain_epochs=1,
                                trajectory_epochs=(1, 1), eval_ks=(10,))
    fast_trainer(max_epochs=1, limit_val_batches=0).fit(td3, datamodule=dm)
    assert seen == {"stage": training_targets, "outer": training_targets}


def test_subsets_need_a_distill_dataset():
    dm = DATASETS.get("synthetic-seqrec").cls(num_users=40, num_items=30, max_len=8)
    dm.setup()
    model = MODELS.get("random_subset").cls(**dm.model_kwargs(), targets=("sasrec",), synthetic_users=4,
                                            synthetic_len=6, target_args={"sasrec": TINY})
    with pytest.raises(Exception, match="user_sequences"):
        fast_trainer(max_epochs=1).fit(model, datamodule=dm)


def test_a_subset_longer_than_the_data_rows_keeps_whole_histories_left_padded():
    dm = tiny_data()
    width = dm.user_sequences.shape[1]
    model = MODELS.get("longest_subset").cls(**dm.model_kwargs(), targets=("sasrec",), target_args={"sasrec": TINY},
                                             synthetic_users=4, synthetic_len=width + 5, target_steps=1, inner_batch=2)
    model.real_data = lambda: dm  # the datamodule a Trainer would hand it
    model.build_summary()
    users = model.subset_users
    assert model.subset_items.shape == (4, width + 5)
    assert (model.subset_items[:, :5] == B.PAD).all()
    assert torch.equal(model.subset_items[:, 5:], dm.user_sequences[users])


class RankProbe(Probe):
    """Probe that writes, per rank, the world size its stage's Trainer ran under and a digest of the stage's model."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.unused = torch.nn.Parameter(torch.zeros(1))  # DDP wraps only a module with a trainable parameter

    def build_summary(self) -> None:
        super().build_summary()
        model = self.probe[0]
        digest = float(sum(p.double().sum() for p in model.state_dict().values()))
        (Path(self.out_dir) / f"rank{self.global_rank}.json").write_text(
            json.dumps({"world": self.stage_world, "digest": digest}))

    def fit_on_real(self, model, *args, **kwargs):
        original = RealDataStage.on_fit_start

        def spy(stage):
            self.stage_world = stage.trainer.world_size
            original(stage)

        RealDataStage.on_fit_start = spy
        try:
            return super().fit_on_real(model, *args, **kwargs)
        finally:
            RealDataStage.on_fit_start = original


@pytest.mark.slow  # two process spawns
@pytest.mark.timeout(600)
def test_a_stage_inside_a_ddp_run_joins_its_process_group(tmp_path):
    """Under a two-process DDP fit the stage trains with world size 2 in each rank (the ranks' data shards, gradients
    all-reduced), and both ranks end with the same weights."""
    dm = tiny_data()
    model = RankProbe(**dm.model_kwargs(), targets=("sasrec",), target_args={"sasrec": TINY}, eval_ks=(10,),
                      reference_batch_size=16)
    model.out_dir = str(tmp_path)  # an instance attribute travels to the spawned ranks with the model
    fast_trainer(max_epochs=1, limit_val_batches=0, devices=2, strategy="ddp_spawn").fit(model, datamodule=dm)
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(2)]
    assert [r["world"] for r in ranks] == [2, 2]
    assert ranks[0]["digest"] == pytest.approx(ranks[1]["digest"], rel=1e-9)
