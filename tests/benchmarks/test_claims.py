"""Claims and verdicts: the rule on synthetic records (win, loss, overlap, one seed, no records, unmeasured metric,
not learned, still improving), each claim kind, every paper's claims from the committed records, and the claims page
in sync with them."""
from pathlib import Path

import numpy as np
import pytest
from scipy.stats import t

from benchmarks.boards import load_paper, paper_names
from benchmarks.claims import Claim, evaluate, mean_interval, seeds_to_decide, welch_interval
from benchmarks.cli import main

RUNS = Path(__file__).resolve().parents[2] / "benchmarks" / "results" / "runs"
BOARD = "quickstart"  # models sasrec, gru4rec, pop; trivial model pop; early stopping patience on


def records(model: str, values: list[float], metric: str = "ndcg@10", board: str = BOARD, **extra) -> list[dict]:
    return [{"run_id": f"{model}-{seed}", "board": board, "model": model, "seed": seed, "status": "ok",
             "config_hash": model, "data_hash": "d", "created_at": f"2026-01-01T00:00:{seed:02d}",
             "metrics": {"val": {metric: v}, "test": {metric: v}}, "epochs": 5, "best_epoch": 1,
             "config": {"trainer": {"max_epochs": 50}}, **extra}
            for seed, v in enumerate(values)]


def beats(**changes) -> Claim:
    fields = dict(id="c", kind="beats", text="sasrec beats gru4rec", source="test", board=BOARD, method="sasrec",
                  baselines=["gru4rec"], metric="ndcg@10")
    return Claim(**{**fields, **changes})


POP = records("pop", [0.05, 0.05, 0.05])


def test_intervals_against_hand_computed_values():
    lo, hi = mean_interval([1.0, 2.0, 3.0])  # mean 2, s = 1, t(0.975, 2) = 4.3027
    assert lo == pytest.approx(2 - 4.3027 / 3 ** 0.5, abs=1e-3) and hi == pytest.approx(2 + 4.3027 / 3 ** 0.5, abs=1e-3)
    lo, hi = welch_interval([1.0, 2.0, 3.0], [1.0, 2.0, 3.0])
    assert lo < 0 < hi and lo == pytest.approx(-hi)


def test_clear_win_is_reproduced():
    recs = records("sasrec", [0.30, 0.31, 0.29]) + records("gru4rec", [0.20, 0.21, 0.19]) + POP
    assert evaluate(beats(), recs).verdict == "reproduced"


def test_clear_loss_is_not_reproduced():
    recs = records("sasrec", [0.20, 0.21, 0.19]) + records("gru4rec", [0.30, 0.31, 0.29]) + POP
    verdict = evaluate(beats(), recs)
    assert verdict.verdict == "not reproduced" and "gru4rec" in verdict.why


def test_overlap_is_inconclusive():
    recs = records("sasrec", [0.30, 0.20, 0.25]) + records("gru4rec", [0.26, 0.22, 0.24]) + POP
    assert evaluate(beats(), recs).verdict == "inconclusive"


def test_tuned_claims_read_tuned_rows_and_default_claims_the_rest():
    """Tuning reversed the order here: the default claim sees the default rows only, the tuned claim the tuned ones."""
    tuned = {"tuned": True, "config_hash": "t"}
    recs = (records("sasrec", [0.30, 0.31, 0.29]) + records("gru4rec", [0.20, 0.21, 0.19]) + POP
            + records("sasrec", [0.32, 0.33, 0.31], **tuned) + records("gru4rec", [0.40, 0.41, 0.39], **tuned)
            + records("pop", [0.05, 0.05, 0.05], **tuned))
    assert evaluate(beats(), recs).verdict == "reproduced"
    assert evaluate(beats(tuned=True), recs).verdict == "not reproduced"
    assert "no finished tuned runs" in evaluate(beats(tuned=True), recs[:9]).why  # nothing tuned to judge


def test_margin_is_required():
    recs = records("sasrec", [0.30, 0.31, 0.29]) + records("gru4rec", [0.20, 0.21, 0.19]) + POP
    assert evaluate(beats(margin=0.2), recs).verdict == "not reproduced"


def test_one_seed_is_inconclusive_by_rule():
    recs = records("sasrec", [0.90]) + records("gru4rec", [0.10]) + POP
    verdict = evaluate(beats(), recs)
    assert verdict.verdict == "inconclusive" and "too few seeds" in verdict.why


def test_a_board_without_records_says_so():
    verdict = evaluate(beats(), [])
    assert verdict.verdict == "inconclusive" and "no finished runs" in verdict.why


def test_a_row_without_records_says_so():
    verdict = evaluate(beats(), records("sasrec", [0.3, 0.3, 0.3]) + POP)
    assert verdict.verdict == "inconclusive" and "gru4rec has no finished runs" in verdict.why


def test_an_unmeasured_metric_is_not_testable():
    recs = records("sasrec", [0.3, 0.3]) + records("gru4rec", [0.2, 0.2])
    verdict = evaluate(beats(metric="coherence"), recs)
    assert verdict.verdict == "not testable here" and "does not record" in verdict.why


def test_rows_that_have_not_learned_are_inconclusive():
    recs = records("sasrec", [0.30, 0.31, 0.29]) + records("gru4rec", [0.02, 0.021, 0.019]) + POP
    verdict = evaluate(beats(), recs)
    assert verdict.verdict == "inconclusive" and "has not learned" in verdict.why


def test_a_loss_to_a_baseline_that_learned_refutes_beats_whatever_the_others():
    """"Beats every baseline" fails on the learned baseline it loses to, even when another baseline has not learned;
    a win over the learned ones stays inconclusive, and a method that has not learned refutes nothing."""
    unlearned = records("bert4rec", [0.02, 0.021, 0.019])
    claim = beats(baselines=["gru4rec", "bert4rec"])
    lost = records("sasrec", [0.20, 0.21, 0.19]) + records("gru4rec", [0.30, 0.31, 0.29]) + unlearned + POP
    verdict = evaluate(claim, lost)
    assert verdict.verdict == "not reproduced" and "than gru4rec" in verdict.why
    assert "bert4rec: bert4rec has not learned" in verdict.why
    won = records("sasrec", [0.30, 0.31, 0.29]) + records("gru4rec", [0.20, 0.21, 0.19]) + unlearned + POP
    verdict = evaluate(claim, won)
    assert verdict.verdict == "inconclusive" and "bert4rec has not learned" in verdict.why
    idle = records("sasrec", [0.02, 0.021, 0.019]) + records("gru4rec", [0.30, 0.31, 0.29]) + unlearned + POP
    verdict = evaluate(claim, idle)
    assert verdict.verdict == "inconclusive" and "sasrec has not learned" in verdict.why


def test_a_loss_to_a_baseline_run_at_every_seed_refutes_beats_before_the_others_have_run():
    """A board half run (a GPU-sized board run row by row): a significant loss to a complete baseline decides; a win
    over it waits for the rows that have not run or have too few seeds."""
    claim = beats(baselines=["gru4rec", "bert4rec"])
    lost = records("sasrec", [0.20, 0.21, 0.19]) + records("gru4rec", [0.30, 0.31, 0.29]) + POP
    verdict = evaluate(claim, lost)
    assert verdict.verdict == "not reproduced" and "than gru4rec" in verdict.why
    assert "bert4rec: not run" in verdict.why
    short = lost + records("bert4rec", [0.5])
    verdict = evaluate(claim, short)
    assert verdict.verdict == "not reproduced" and "bert4rec: too few seeds" in verdict.why
    won = records("sasrec", [0.30, 0.31, 0.29]) + records("gru4rec", [0.20, 0.21, 0.19]) + POP
    verdict = evaluate(claim, won)
    assert verdict.verdict == "inconclusive" and "bert4rec has no finished runs" in verdict.why


def test_learning_is_judged_on_the_primary_metric_whatever_the_claims_metric():
    """On hr@10 the trivial model is ahead of gru4rec, but on the board's primary metric (ndcg@10) every row beats
    it: the rows have learned, and the hr@10 claim is decided."""
    def both(model, ndcg, hr):
        recs = records(model, ndcg)
        for r, v in zip(recs, hr):
            r["metrics"]["test"]["hr@10"] = r["metrics"]["val"]["hr@10"] = v
        return recs

    recs = both("sasrec", [0.30, 0.31, 0.29], [0.50, 0.51, 0.49]) + both("gru4rec", [0.20, 0.21, 0.19], [0.10] * 3) \
        + both("pop", [0.05] * 3, [0.20] * 3)
    assert evaluate(beats(metric="hr@10"), recs).verdict == "reproduced"
    recs = both("sasrec", [0.30, 0.31, 0.29], [0.50, 0.51, 0.49]) + both("gru4rec", [0.04] * 3, [0.30] * 3) \
        + both("pop", [0.05] * 3, [0.20] * 3)
    verdict = evaluate(beats(metric="hr@10"), recs)
    assert verdict.verdict == "inconclusive" and "gru4rec has not learned" in verdict.why and "ndcg@10" in verdict.why


def test_a_run_stopped_by_its_cap_while_improving_is_inconclusive():
    capped = records("gru4rec", [0.20, 0.21, 0.19], epochs=50, best_epoch=48)
    verdict = evaluate(beats(), records("sasrec", [0.30, 0.31, 0.29]) + capped + POP)
    assert verdict.verdict == "inconclusive" and "still improving" in verdict.why


def test_failed_and_nan_runs_are_not_evidence():
    failed = [{**r, "run_id": r["run_id"] + "-failed", "status": "failed"} for r in records("gru4rec", [0.9] * 3)]
    recs = records("sasrec", [0.30, 0.31, 0.29]) + records("gru4rec", [0.20, 0.21, float("nan")]) + failed + POP
    verdict = evaluate(beats(), recs)
    assert verdict.verdict == "reproduced" and any(e.startswith("gru4rec 0.2050") and "(n=2)" in e
                                                   for e in verdict.evidence)


def test_minimize_direction():
    recs = records("sasrec", [1.0, 1.1, 0.9], metric="seconds") + records("gru4rec", [2.0, 2.1, 1.9], metric="seconds")
    assert evaluate(beats(metric="seconds", direction="minimize"), recs).verdict == "reproduced"
    assert evaluate(beats(metric="seconds", direction="maximize"), recs).verdict == "not reproduced"


def test_matches_within_and_outside_the_tolerance():
    claim = Claim(id="m", kind="matches", text="t", source="s", board=BOARD, method="sasrec", metric="ndcg@10",
                  value=0.30, tolerance=0.01)
    assert evaluate(claim, records("sasrec", [0.300, 0.301, 0.299, 0.300])).verdict == "reproduced"
    assert evaluate(claim, records("sasrec", [0.250, 0.251, 0.249])).verdict == "not reproduced"
    assert evaluate(claim, records("sasrec", [0.30, 0.32, 0.28])).verdict == "inconclusive"


def test_ordering():
    claim = Claim(id="o", kind="ordering", text="t", source="s", board=BOARD, rows=["gru4rec", "sasrec"],
                  metric="ndcg@10")
    up = records("gru4rec", [0.20, 0.21, 0.19]) + records("sasrec", [0.30, 0.31, 0.29]) + POP
    down = records("gru4rec", [0.30, 0.31, 0.29]) + records("sasrec", [0.20, 0.21, 0.19]) + POP
    assert evaluate(claim, up).verdict == "reproduced"
    assert evaluate(claim, down).verdict == "not reproduced"


def test_property():
    claim = Claim(id="p", kind="property", text="fdr <= 0.1", source="s", board=BOARD, method="sasrec", metric="fdr",
                  op="<=", value=0.1)
    assert evaluate(claim, records("sasrec", [0.05, 0.06, 0.04], metric="fdr")).verdict == "reproduced"
    assert evaluate(claim, records("sasrec", [0.30, 0.31, 0.29], metric="fdr")).verdict == "not reproduced"
    assert evaluate(claim, records("sasrec", [0.02, 0.2, 0.1], metric="fdr")).verdict == "inconclusive"


def test_not_testable_claims_carry_their_reason():
    claim = Claim(id="n", kind="not_testable", text="t", source="s", reason="needs credentialed data")
    verdict = evaluate(claim, [])
    assert verdict.verdict == "not testable here" and verdict.why == "needs credentialed data"


def test_claims_name_rows_of_their_board():
    from benchmarks.boards import ConfigError
    from benchmarks.boards import claim_from_dict

    with pytest.raises(ConfigError, match="not models of board quickstart"):
        claim_from_dict({"id": "x", "kind": "beats", "text": "t", "source": "s", "board": BOARD,
                         "method": "sasrec", "baselines": ["sasrecc"], "metric": "ndcg@10"}, "test")


@pytest.mark.parametrize("paper", paper_names())
def test_every_paper_has_claims_and_reproduce_reads_committed_records(paper, capsys):
    assert load_paper(paper).claims, f"{paper} lists no claims"
    assert main(["reproduce", paper, "--records", str(RUNS)]) == 0
    out = capsys.readouterr().out
    assert out.count("    why: ") == len(load_paper(paper).claims)


def test_committed_claims_page_is_rendered_from_the_committed_records(tmp_path):
    out = tmp_path / "CLAIMS.md"
    assert main(["claims", "--records", str(RUNS), "--out", str(out)]) == 0
    committed = RUNS.parent / "CLAIMS.md"
    assert out.read_text() == committed.read_text(), \
        "benchmarks/results/CLAIMS.md is stale: paperboard claims --records benchmarks/results/runs"


def test_a_row_rerun_under_other_settings_is_not_mixed_with_its_first_configuration():
    old = records("gru4rec", [0.50, 0.50, 0.50])
    new = [{**r, "run_id": r["run_id"] + "-new", "config_hash": "gru4rec-longer", "created_at": "2026-02-01"}
           for r in records("gru4rec", [0.20, 0.21, 0.19])]
    verdict = evaluate(beats(), records("sasrec", [0.30, 0.31, 0.29]) + old + new + POP)
    assert any(e.startswith("gru4rec 0.2000") and "(n=3)" in e for e in verdict.evidence), verdict.evidence  # the newest


def test_rows_on_different_preprocessed_data_are_not_compared():
    other = [{**r, "data_hash": "other"} for r in records("gru4rec", [0.20, 0.21, 0.19])]
    verdict = evaluate(beats(), records("sasrec", [0.30, 0.31, 0.29]) + other + POP)
    assert verdict.verdict == "inconclusive" and "not comparable" in verdict.why


def test_a_row_rerun_with_a_larger_cap_counts_at_its_longest_budget():
    capped = records("gru4rec", [0.10, 0.11, 0.09], epochs=50, best_epoch=48)  # cap 50, still improving
    longer = [{**r, "run_id": r["run_id"] + "-long", "created_at": "2026-02-01", "epochs": 60, "best_epoch": 40,
               "config": {"trainer": {"max_epochs": 100}}} for r in records("gru4rec", [0.20, 0.21, 0.19])]
    verdict = evaluate(beats(), records("sasrec", [0.30, 0.31, 0.29]) + capped + longer + POP)
    assert verdict.verdict == "reproduced" and any(e.startswith("gru4rec 0.2000") for e in verdict.evidence)


def test_a_row_whose_seeds_were_continued_to_different_caps_is_one_row_on_the_board_page():
    from benchmarks.boards import load_board
    from benchmarks.render import aggregate

    board = load_board("seqrec-ml100k")
    runs = records("gru4rec", [0.20, 0.21, 0.19], board=board.name)
    runs[2] = {**runs[2], "config_hash": "gru4rec-100", "config": {"trainer": {"max_epochs": 100}}}
    runs[1] = {**runs[1], "config_hash": "gru4rec-quiet",  # run with --quiet: no progress bar, the same training
               "config": {"trainer": {"max_epochs": 50, "enable_progress_bar": False}}}
    other_settings = records("gru4rec", [0.5], board=board.name, config_hash="other",
                             config={"trainer": {"max_epochs": 50}, "model_args": {"embed_dim": 8}})
    table = aggregate(board, runs + other_settings)
    rows = table[table.model == "gru4rec"].sort_values("seeds")
    assert rows.seeds.tolist() == [1, 3]  # other settings stay a row of their own
    assert rows.iloc[1].config == "gru4rec,gru4rec-100,gru4rec-quiet" and abs(rows.iloc[1]["ndcg@10"] - 0.20) < 1e-9


def test_a_board_page_marks_short_rows_loaded_wall_times_and_ends_with_its_verdicts():
    from benchmarks.boards import load_board
    from benchmarks.render import render_markdown

    board = load_board("seqrec-ml100k")  # asks 3 seeds; sasrec's claims are checked on it
    loaded = {"load_avg": {"start": [9.0, 9.0, 9.0], "end": [1.0, 1.0, 1.0]}, "hardware": {"cpu_count": 2},
              "train_epoch_cpu_seconds": 1.5, "params": 10}
    recs = (records("sasrec", [0.30], board=board.name, **loaded)
            + records("gru4rec", [0.20, 0.21, 0.19], board=board.name, params=10)
            + records("pop", [0.05, 0.05, 0.05], board=board.name, params=1))
    page = render_markdown(board, recs)
    assert "| 1 of 3 |" in page and "fewer seeds than the board's 3: sasrec (1 of 3)" in page
    assert "(loaded)" in page and "| 1.500 |" in page  # CPU seconds per epoch beside the flagged wall time
    verdicts = page[page.index("## Claims checked on this board"):]
    assert "`beats-gru4rec-ml100k`" in verdicts and "too few seeds: sasrec has 1" in verdicts


def test_seeds_to_decide_is_the_first_seed_count_whose_interval_clears_the_margin():
    def sample(mean, std, n):  # n values with exactly this mean and sample std
        z = np.arange(n, dtype=float)
        z = (z - z.mean()) / z.std(ddof=1)
        return list(mean + std * z)

    a, b = sample(1.0, 0.1, 3), sample(0.9, 0.1, 3)
    n = seeds_to_decide(a, b, 0.0)
    assert n is not None and n > 3  # undecided at 3 seeds, decided later
    assert welch_interval(sample(1.0, 0.1, n), sample(0.9, 0.1, n))[0] > 0.0
    assert welch_interval(sample(1.0, 0.1, n - 1), sample(0.9, 0.1, n - 1))[0] <= 0.0
    assert seeds_to_decide(a, a, 0.0) is None  # no gap: no seed count decides
    # one row against a threshold: its mean 0.05 above 0, so the t-interval of the mean must clear 0
    m = seeds_to_decide(sample(0.05, 0.1, 3), None, 0.0)
    x = np.asarray(sample(0.05, 0.1, m))
    assert x.mean() - t.ppf(0.975, m - 1) * x.std(ddof=1) / np.sqrt(m) > 0.0


def test_rows_trained_under_arguments_the_board_no_longer_sets_are_stale_and_cannot_decide():
    from dataclasses import replace

    from benchmarks.boards import load_board
    from benchmarks.records import stale_arguments

    board = load_board("seqrec-beauty")  # pins SASRec's official block: query_only_layernorm, residual_from_normalized
    pinned = dict(board.models["sasrec"])
    before = {"model": "sasrec", "config": {"model_args": {"dropout": 0.5, "eval_ks": [10, 20, 50]},
                                            "dataset_args": dict(board.dataset_args)}}
    # a record from before the flags existed reads as the block the code documents for it (raw residuals)
    assert stale_arguments(board, before) == ["query_only_layernorm: False -> True",
                                              "residual_from_normalized: False -> True"]
    now = {"model": "sasrec", "config": {"model_args": pinned, "dataset_args": dict(board.dataset_args)}}
    assert stale_arguments(board, now) == [] and stale_arguments(board, {**before, "tuned": True}) == []
    knobbed = replace(board, knobs=["query_only_layernorm", "residual_from_normalized"])
    assert stale_arguments(knobbed, before) == []  # a board's knob is varied on purpose

    # a claim whose baseline ran only under the old arguments waits for the current ones; once they exist, the row
    # is read from them even though the old group has more seeds
    def runs(model, values, args, stamp):
        return [{**r, "config_hash": f"{model}{stamp}", "created_at": f"2026-01-0{stamp}T00:00:{r['seed']:02d}",
                 "config": {**r["config"], "model_args": args, "dataset_args": dict(board.dataset_args)}}
                for r in records(model, values, board="seqrec-beauty")]
    fuxi = runs("fuxi_alpha", [0.30, 0.31, 0.29], {"eval_ks": [10, 20, 50]}, 1)
    pop = runs("pop", [0.01, 0.01, 0.01], {"eval_ks": [10, 20, 50]}, 1)
    old = runs("sasrec", [0.10, 0.11, 0.09, 0.10], before["config"]["model_args"], 1)
    claim = beats(board="seqrec-beauty", method="fuxi_alpha", baselines=["sasrec"])
    verdict = evaluate(claim, fuxi + pop + old)
    assert verdict.verdict == "inconclusive" and "no longer sets" in verdict.why
    current = runs("sasrec", [0.20, 0.21, 0.19], pinned, 2)
    verdict = evaluate(claim, fuxi + pop + old + current)
    assert verdict.verdict == "reproduced" and "sasrec 0.2000" in verdict.evidence[1]
