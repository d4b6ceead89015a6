"""The scaling study: analytic FLOPs and parameter counts by hand, and the scaling board's runner + plot on a tiny
synthetic configuration."""
import pytest
import torch

import lightning_modules  # noqa: F401
from benchmarks.boards import load_board
from benchmarks.runner import RunSpec, execute
from benchmarks.scaling import (attention_flops_per_position, non_embedding_params, plot_board, scaling_points,
                                training_flops)
from lightning_modules.seqrec.hstu import HSTU
from lightning_modules.seqrec.llama_rec import LlamaRec


def tiny_hstu(**kw):
    return HSTU(num_items=10, max_len=3, embed_dim=4, num_blocks=1, num_heads=1, qk_dim=2, v_dim=2, num_negatives=3,
                attention_length=3, **kw)


def test_training_flops_by_hand():
    model = tiny_hstu()
    # 2-D weights: W_uvqk 4 x (2+2+2+2) = 32, W_o 4 x 2 = 8 -> 2 * 40 = 80 FLOPs per position
    # attention: 2 L h (dqk + dv) = 2 * 3 * 1 * 4 = 24; loss per target: 2 d (1 + 3 negatives) = 32
    inputs = torch.tensor([[0, 1, 2], [3, 4, 5]])
    targets = torch.tensor([[0, 2, 7], [4, 5, 6]])  # 5 targets
    assert attention_flops_per_position(model, 3) == 24
    assert training_flops(model, inputs, targets, epochs=2) == 3 * (6 * (80 + 24) + 5 * 32) * 2


def test_non_embedding_params_leave_out_the_tables():
    model = tiny_hstu()
    tables = model.item_embedding.weight.numel() + model.input.position_embedding.weight.numel()
    assert non_embedding_params(model) == sum(p.numel() for p in model.parameters()) - tables
    deeper = LlamaRec(num_items=10, max_len=3, embed_dim=8, num_blocks=2)
    shallow = LlamaRec(num_items=10, max_len=3, embed_dim=8, num_blocks=1)
    per_block = 2 * 8 + 4 * 8 * 8 + 3 * 8 * 21  # two RMSNorm weights, q/k/v/o, SwiGLU (hidden round(8*8/3) = 21)
    assert non_embedding_params(deeper) - non_embedding_params(shallow) == per_block


@pytest.mark.timeout(300)
def test_scaling_board_runs_and_plots(tmp_path):
    board = load_board("seqrec-synthetic-scaling")
    assert {m.split("@")[0] for m in board.models} == {"hstu", "llama_rec", "gpt_rec", "sasrec"}
    records = [execute(RunSpec(board=board.name, model=m, seed=0, trainer_args={"max_epochs": 1}, keep_checkpoint=False))
               for m in ("hstu@1", "hstu@2", "sasrec@1", "sasrec@2")]
    assert all(r["status"] == "ok" for r in records), [r.get("error") for r in records]
    points = scaling_points(board, records)
    by_model = {p["model"]: p for p in points}
    for backbone in ("hstu", "sasrec"):
        small, large = by_model[f"{backbone}@1"], by_model[f"{backbone}@2"]
        assert (small["blocks"], large["blocks"]) == (1, 2)
        assert large["non_embedding_params"] > small["non_embedding_params"]
        assert large["train_flops"] > small["train_flops"]
    png = plot_board(board, records, out_dir=tmp_path, wandb_log=False)
    assert png.exists() and png.stat().st_size > 10_000
    table = (tmp_path / "seqrec-synthetic-scaling-scaling.md").read_text()
    assert "hstu@2" in table and "sasrec@1" in table


@pytest.mark.slow
def test_paperboard_run_on_the_scaling_board_writes_the_plot(tmp_path, monkeypatch):
    import benchmarks.scaling as scaling
    from benchmarks.cli import main

    monkeypatch.setattr(scaling, "RESULTS_DIR", tmp_path)
    assert main(["run", "seqrec-synthetic-scaling", "--quiet", "--storage", f"sqlite:///{tmp_path / 'r.db'}"]) == 0
    assert (tmp_path / "seqrec-synthetic-scaling-scaling.png").exists()
