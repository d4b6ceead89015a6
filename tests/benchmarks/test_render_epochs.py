"""Board pages print best epochs as integers and mark rows whose best epoch was the last one their cap allowed."""
from benchmarks.boards import load_board
from benchmarks.render import render_markdown


def record(model, seed, best_epoch, epochs, cap=30):
    return {"run_id": f"{model}{seed}", "board": "quickstart", "model": model, "seed": seed, "config_hash": model,
            "data_hash": "d", "status": "ok", "created_at": f"2026-01-0{seed + 1}", "epochs": epochs,
            "best_epoch": best_epoch, "params": 1, "config": {"trainer": {"max_epochs": cap}},
            "metrics": {"test": {"ndcg@10": 0.3, "hr@10": 0.5, "mrr@10": 0.2}, "val": {"ndcg@10": 0.3}}}


def test_best_epochs_are_integers_and_a_best_epoch_at_the_cap_is_flagged():
    board = load_board("quickstart")  # its cap is 30 epochs, patience 3
    page = render_markdown(board, [record("sasrec", 0, 29, 30), record("sasrec", 1, 12, 16),
                                   record("gru4rec", 0, 7, 11), record("gru4rec", 1, 7, 11)])
    rows = {line.split(" | ")[0].strip("|* "): line for line in page.splitlines() if line.startswith("| ")}
    assert "| 12-29 (cap) |" in rows["sasrec"] and "| 7 |" in rows["gru4rec"]
    assert "| 29.0 |" not in page and "| 20.5 |" not in page  # not the mean as a float
    (note,) = [line for line in page.splitlines() if line.startswith("Note: `(cap)`")]
    assert "sasrec (`sasrec`, 1 of 2 seeds)" in note and "gru4rec" not in note
