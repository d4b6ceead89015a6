"""The bf16 precision check resumes from its own stdout: runs already printed are reused, only the missing ones
train, and a model whose runs are incomplete is named, never compared."""
import json

import pytest
import torch

from benchmarks.perf import precision_check


def _run(model: str, precision: str, seed: int, ndcg: float) -> dict:
    return {"model": model, "precision": precision, "seed": seed, "train_s": 1.0, "train_cpu_s": 1.0,
            "rows_per_s": 100.0, "metrics": {"ndcg@10": ndcg}}


def _log(tmp_path, runs, note="CUDA device: Test GPU."):
    path = tmp_path / "check.log"
    path.write_text("\n".join([f"precision_check: {note}", "GPU available: True (cuda), used: True",
                               *map(json.dumps, runs)]) + "\n")
    return path


def test_render_only_compares_complete_models_and_names_the_rest(tmp_path):
    runs = [_run("sasrec", p, s, 0.10 + 0.01 * s) for p in precision_check.PRECISIONS for s in (0, 1)]
    runs.append(_run("hstu", "32-true", 0, 0.2))
    log, out = _log(tmp_path, runs), tmp_path / "page.md"
    rc = precision_check.main(["--render-only", "--runs", str(log), "--models", "sasrec,hstu", "--seeds", "0,1",
                               "--out", str(out)])
    page = out.read_text()
    assert rc == 0 and "(gpu)" in page and "CUDA device: Test GPU." in page
    assert "| sasrec | 0.105 | 0.105 | +0.0 |" in page
    assert "hstu (1 of 4 runs)" in page and "| hstu |" not in page


def test_render_only_with_nothing_finished_fails(tmp_path):
    log = _log(tmp_path, [_run("sasrec", "32-true", 0, 0.1)])
    assert precision_check.main(["--render-only", "--runs", str(log), "--models", "sasrec", "--seeds", "0,1",
                                 "--out", ""]) == 1


def test_resume_trains_only_the_missing_runs(tmp_path, monkeypatch, capsys):
    note = ("CUDA is not available here: this is the CPU bf16 autocast path, which checks the numerics of bf16 "
            "training, not GPU speed. Run it on a CUDA machine for the GPU check.")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    trained = []

    def fake_run(board, dataset, dataset_args, data_dir, model, precision, accelerator, seed, epochs):
        trained.append((model, precision, seed))
        return _run(model, precision, seed, 0.3)

    monkeypatch.setattr(precision_check, "one_run", fake_run)
    log = _log(tmp_path, [_run("sasrec", "32-true", 0, 0.3), _run("sasrec", "bf16-mixed", 0, 0.3)], note=note)
    assert precision_check.main(["--runs", str(log), "--models", "sasrec", "--seeds", "0,1", "--out", ""]) == 0
    assert trained == [("sasrec", "32-true", 1), ("sasrec", "bf16-mixed", 1)]
    resumed = tmp_path / "resumed.log"  # the resumed check's stdout holds every run again, reused or new
    resumed.write_text(capsys.readouterr().out)
    assert len(precision_check.read_log(str(resumed))[0]) == 4


def test_resume_refuses_a_log_from_another_device(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    log = _log(tmp_path, [_run("sasrec", "32-true", 0, 0.3)])
    with pytest.raises(SystemExit) as exit_:
        precision_check.main(["--runs", str(log), "--models", "sasrec", "--seeds", "0", "--out", ""])
    assert exit_.value.code == 2
