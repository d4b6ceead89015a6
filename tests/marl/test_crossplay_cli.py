"""The post-board cross-play step end to end: checkpoints named by run records -> matrix, PNG, updated records."""
from __future__ import annotations

import json

import lightning.pytorch as pl
import numpy as np
import yaml

import datamodules  # noqa: F401
import lightning_modules  # noqa: F401
from benchmarks.marl_crossplay import run
from contracts.registry import DATASETS, MODELS
from datamodules.marl.base import TEST_SEED_BASE
from datamodules.marl.rollout import collect_rollout
from tests.conftest import fast_trainer

# runs test in batches of 2 env copies; the cross-play evaluator plays the same 4 episodes as one batch of 4
DATA = {"scenario_args": {"num_collectors": 2, "num_deposits": 1, "num_treasures": 2, "max_cycles": 12},
        "backend": "numpy", "num_envs": 2, "rollouts_per_epoch": 2, "eval_episodes": 4}


def test_crossplay_cli_on_trained_checkpoints(tmp_path):
    board = {"name": "tiny-marl", "family": "marl", "title": "t", "dataset": "mpe-collect-treasure",
             "dataset_args": DATA, "primary_metric": "return", "metrics": ["return", "crossplay_return"],
             "models": {"vdn": {}, "mappo": {}}}
    board_path = tmp_path / "tiny-marl.yaml"
    board_path.write_text(yaml.safe_dump(board, sort_keys=False))
    records_dir = tmp_path / "records"
    modules, test_returns = [], []
    for i, (name, seed) in enumerate([("vdn", 0), ("vdn", 1), ("mappo", 0)]):
        pl.seed_everything(seed, verbose=False)
        dm = DATASETS.get("mpe-collect-treasure").cls(**DATA)
        dm.setup()
        model = MODELS.get(name).cls(**dm.model_kwargs(), **({"batch_size": 4} if name == "vdn" else {}))
        trainer = fast_trainer(max_epochs=1, limit_val_batches=0)
        trainer.fit(model, datamodule=dm)
        test_returns.append(trainer.test(model, datamodule=dm, verbose=False)[0]["test/return"])
        ckpt = tmp_path / f"{name}-{seed}.ckpt"
        trainer.save_checkpoint(ckpt)
        modules.append(model.eval())
        record = {"run_id": f"{i:08d}abcdef", "board": "tiny-marl", "model": name, "seed": seed, "status": "ok",
                  "config_hash": f"c{name}", "data_hash": "d", "created_at": f"2026-01-01T00:00:0{i}",
                  "checkpoint": str(ckpt), "config": {"dataset_args": DATA}, "metrics": {"val": {}, "test": {"return": 0.0}}}
        path = records_dir / "tiny-marl" / name / f"seed{seed}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(record))
    result = run(str(board_path), records_dir, tmp_path / "out" / "tiny-crossplay", episodes=4, update_records=True,
                 log=lambda *_: None)
    assert result["labels"] == ["vdn/s0", "vdn/s1", "mappo/s0"]
    matrix = np.array(result["matrix"], dtype=float)
    assert matrix.shape == (3, 5) and result["partner_labels"][3:] == ["scripted", "scripted_noisy"]
    # the diagonal is plain self-play of the checkpoint on the board's test seeds: the run's own test/return,
    # although the run played them in batches of 2 and the evaluator in one batch of 4
    np.testing.assert_allclose(np.diag(matrix[:, :3]), test_returns, atol=1e-5)
    env = DATASETS.get("mpe-collect-treasure").cls(**{**DATA, "num_envs": 4}).make_env("test")
    selfplay = collect_rollout(env, modules[0], TEST_SEED_BASE + np.arange(4), explore=False)["return"].mean().item()
    assert np.isclose(matrix[0, 0], selfplay, atol=1e-5)
    assert (tmp_path / "out" / "tiny-crossplay.png").stat().st_size > 1000
    updated = json.loads((records_dir / "tiny-marl" / "vdn" / "seed0.json").read_text())
    assert np.isclose(updated["metrics"]["test"]["crossplay_return"], (matrix[0, 1] + matrix[0, 2]) / 2)
    assert np.isclose(updated["metrics"]["test"]["generalisation_gap"], matrix[0, 0] - (matrix[0, 1] + matrix[0, 2]) / 2)
    assert updated["crossplay"]["partners"] == 4
    # the scripted team is the best one here, so it is a held-out partner every run is scored with
    assert "scripted" in result["competent_partners"] and np.isfinite(updated["metrics"]["test"]["zsc_score"])
    assert set(result["zsc_by_model"]) == {"vdn", "mappo"}
