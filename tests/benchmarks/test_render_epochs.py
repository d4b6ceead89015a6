"""Board pages print best epochs as integers, mark rows whose best epoch was the last one their cap allowed, and say
which peak memory a row reports."""
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


def test_peak_memory_of_gpu_runs_is_said_to_be_gpu_memory():
    board = load_board("quickstart")
    on_gpu = [{**record("sasrec", seed, 5, 9), "peak_gpu_mb": 700.0, "peak_rss_mb": 1900.0} for seed in (0, 1)]
    on_cpu = [{**record("gru4rec", seed, 5, 9), "peak_rss_mb": 800.0} for seed in (0, 1)]
    page = render_markdown(board, on_gpu + on_cpu)
    rows = {line.split(" | ")[0].strip("|* "): line for line in page.splitlines() if line.startswith("| ")}
    assert "| 700 |" in rows["sasrec"] and "| 800 |" in rows["gru4rec"]
    (note,) = [line for line in page.splitlines() if line.startswith("Note: ran on a GPU")]
    assert "GPU memory" in note and ": sasrec;" in note and "gru4rec" not in note
    assert "Note: ran on a GPU" not in render_markdown(board, on_cpu)
    mixed = render_markdown(board, on_gpu[:1] + [{**record("sasrec", 1, 5, 9), "peak_rss_mb": 1500.0}])
    assert "Note: ran on a GPU" not in mixed and "| 1900 |" in mixed  # one unit per row: resident memory


def test_a_last_val_column_reads_the_last_validation_not_the_selected_epoch():
    from dataclasses import replace
    from benchmarks.boards import Published
    board = replace(load_board("quickstart"), metrics=["hr@10", "ndcg@10", "mrr@10", "last_val/ndcg@10"],
                    published=[Published(model="sasrec", metric="ndcg@10", value=0.29, source="paper")],
                    tolerance={"ndcg@10": 0.02})
    runs = [{**record("sasrec", seed, 5, 9), "metrics": {"test": {"ndcg@10": 0.3, "hr@10": 0.5, "mrr@10": 0.2},
                                                         "val": {"ndcg@10": 0.3}, "last_val": {"ndcg@10": 0.25}}}
            for seed in (0, 1)]
    page = render_markdown(board, runs + [record("gru4rec", 0, 5, 9)])  # a record from before last_val existed
    rows = {}
    for line in page.splitlines():  # the results table's lines (the first of each name)
        if line.startswith("| "):
            rows.setdefault(line.split(" | ")[0].strip("|* "), line)
    assert rows["model"].split(" | ")[6] == "last_val/ndcg@10"
    assert rows["sasrec"].split(" | ")[6] == "0.2500 ± 0.0000" and rows["gru4rec"].split(" | ")[6] == "-"
    # the paper's one number is compared with both readings, under the metric's one tolerance
    compared = [line for line in page.splitlines() if line.startswith("| sasrec | ") and "| paper |" in line]
    assert [line.split(" | ")[1:7] for line in compared] == [["ndcg@10", "0.2900", "0.3000", "0.0100", "0.0200", "yes"],
                                                            ["last_val/ndcg@10", "0.2900", "0.2500", "-0.0400", "0.0200",
                                                             "no"]]


def test_rows_that_do_not_beat_the_trivial_model_are_named_with_both_means():
    board = load_board("quickstart")  # trivial model pop, primary metric ndcg@10

    def scored(model, seed, ndcg):
        return {**record(model, seed, 5, 9), "metrics": {"test": {"ndcg@10": ndcg, "hr@10": 0.5, "mrr@10": 0.2},
                                                          "val": {"ndcg@10": ndcg}}}
    runs = [scored("pop", s, 0.10) for s in (0, 1)] + [scored("gru4rec", s, 0.09) for s in (0, 1)] + \
        [scored("sasrec", s, 0.30) for s in (0, 1)]
    (note,) = [line for line in render_markdown(board, runs).splitlines() if "not better than the trivial" in line]
    assert "gru4rec (0.0900 vs 0.1000)" in note and "sasrec" not in note and "pop (" not in note
    learned = runs[:2] + [scored("gru4rec", s, 0.2) for s in (0, 1)]
    assert "not better than the trivial" not in render_markdown(board, learned)
    # a tuned row is held to the default trivial row when the sweep had nothing to tune in the trivial model
    tuned = [{**scored("gru4rec", s, 0.05), "tuned": True, "config_hash": "tunedcfg"} for s in (0, 1)]
    (note,) = [line for line in render_markdown(board, learned + tuned).splitlines()
               if "not better than the trivial" in line]
    assert "gru4rec (0.0500 vs 0.1000)" in note and "gru4rec (0.2000" not in note


def test_rows_on_different_preprocessed_data_say_which_data_they_saw():
    board = load_board("quickstart")
    same = [record("sasrec", 0, 5, 9), record("sasrec", 1, 5, 9)]
    assert "| data |" not in render_markdown(board, same)
    earlier = [{**r, "data_hash": "olddata", "run_id": r["run_id"] + "old"} for r in same]
    page = render_markdown(board, same + earlier)
    rows = [line for line in page.splitlines() if line.startswith("| sasrec") or line.startswith("| **sasrec")]
    assert "| data |" in page and len(rows) == 2
    assert sorted(line.split(" | ")[-2] for line in rows) == ["`d`", "`olddata`"]


def test_rows_trained_under_arguments_the_board_no_longer_sets_are_named_with_the_change():
    board = load_board("seqrec-beauty")
    old = [{**record("sasrec", s, 5, 9), "board": "seqrec-beauty",
            "config": {"trainer": {"max_epochs": 200}, "model_args": {"dropout": 0.5, "eval_ks": [10, 20, 50]},
                       "dataset_args": {"max_len": 50}}}
           for s in (0, 1)]
    (note,) = [line for line in render_markdown(board, old).splitlines() if line.startswith("Note: trained under")]
    assert "sasrec (`sasrec`: query_only_layernorm: False -> True; residual_from_normalized: False -> True)" in note
    current = [{**r, "config": {**r["config"], "model_args": dict(board.models["sasrec"])}} for r in old]
    assert "Note: trained under" not in render_markdown(board, current)
