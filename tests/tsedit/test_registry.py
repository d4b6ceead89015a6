"""Every registered tsedit model trains a step and evaluates; methods share one trained backbone; the board runs."""
from __future__ import annotations

import pytest
import torch

import datamodules  # noqa: F401
import lightning_modules  # noqa: F401
from contracts.registry import MODELS
from tests.conftest import fast_trainer
from tests.tsedit.conftest import BACKBONE

TSEDIT_MODELS = MODELS.names(family="tsedit")
EXPECTED = {"anchor_error", "segment_error", "constraint_met", "preservation_mse", "anchor_roughness", "spectral_dist",
            "sec_per_edit", "backbone_train_s", "backbone_cpu_s", "segment_rel_error", "anchor_rel_error",
            "anchor_conf_slope", "anchor_conf_corr", "boundary_jump", "jump_rate", "realism_fd", "realism_gap",
            "diversity", "constraint_error", "edit_error"}


def test_family_has_the_paper_and_its_baselines():
    assert {"cocktail_edit", "cocktail_edit_reg", "no_control", "overwrite", "repaint", "dps", "cps"} <= set(TSEDIT_MODELS)


@pytest.mark.parametrize("name", TSEDIT_MODELS)
def test_smoke(name, synthetic_dm):
    cls = MODELS.get(name).cls
    model = cls(**synthetic_dm.model_kwargs(), **BACKBONE, share_backbone=False)
    assert isinstance(cls.search_space.__func__ if hasattr(cls.search_space, "__func__") else cls.search_space, object)
    trainer = fast_trainer(max_steps=2, limit_val_batches=0, limit_test_batches=1)
    trainer.fit(model, datamodule=synthetic_dm)
    metrics = trainer.test(model, datamodule=synthetic_dm, verbose=False)[0]
    assert EXPECTED <= {k.split("/", 1)[1] for k in metrics}
    assert all(torch.isfinite(torch.tensor(v)) for k, v in metrics.items() if "segment" not in k or v == v)


def test_methods_share_one_backbone(synthetic_dm, monkeypatch, tmp_path):
    monkeypatch.setenv("PAPERBOARD_CACHE", str(tmp_path))
    torch.manual_seed(5)
    first = MODELS.get("cocktail_edit").cls(**synthetic_dm.model_kwargs(), **BACKBONE)
    fast_trainer(max_steps=3, limit_val_batches=0).fit(first, datamodule=synthetic_dm)
    assert len(list(tmp_path.glob("*/tsedit-backbones/*.pt"))) == 1
    second = MODELS.get("dps").cls(**synthetic_dm.model_kwargs(), **BACKBONE, zeta=0.5)
    trainer = fast_trainer(max_steps=3, limit_val_batches=0)
    trainer.fit(second, datamodule=synthetic_dm)
    assert trainer.global_step == 0  # loaded, not trained
    assert all(torch.equal(a, b) for a, b in zip(first.state_dict().values(), second.state_dict().values()))
    assert second.backbone_train_s == pytest.approx(first.backbone_train_s)
    torch.manual_seed(6)  # another seed trains its own backbone
    third = MODELS.get("dps").cls(**synthetic_dm.model_kwargs(), **BACKBONE)
    trainer = fast_trainer(max_steps=3, limit_val_batches=0)
    trainer.fit(third, datamodule=synthetic_dm)
    assert trainer.global_step == 3


def test_board_runner_rows_are_methods(monkeypatch, tmp_path):
    from benchmarks.runner import RunSpec, execute

    monkeypatch.setenv("PAPERBOARD_HOME", str(tmp_path))
    small = dict(num_train=256, num_val=32, num_test=32, window=32, segment_length=[6, 10], num_val_tasks=8,
                 num_test_tasks=8)
    model_args = dict(BACKBONE, sampling_steps=4)
    trainer_args = {"max_epochs": 1, "limit_train_batches": 2, "check_val_every_n_epoch": 1, "accelerator": "cpu",
                    "enable_progress_bar": False}
    records = [execute(RunSpec(board="tsedit-synthetic", model=m, seed=0, data_args=small, model_args=model_args,
                               trainer_args=trainer_args, keep_checkpoint=False)) for m in ("cocktail_edit@conv", "overwrite@conv")]
    assert [r["status"] for r in records] == ["ok", "ok"], [r.get("error") for r in records]
    assert records[0]["data_hash"] == records[1]["data_hash"]
    assert records[1]["metrics"]["test"]["constraint_met"] == pytest.approx(1.0)
    assert records[1]["metrics"]["test"]["constraint_error"] == pytest.approx(0.0, abs=1e-4)
    assert records[1]["metrics"]["test"]["backbone_train_s"] == pytest.approx(records[0]["metrics"]["test"]["backbone_train_s"])
