"""`paperboard run --compile`: the same run through torch.compile reaches the same scores, and its record says so."""
import pytest
import torch._dynamo
from torch._dynamo.utils import counters

from benchmarks.boards import ConfigError, load_board
from benchmarks.runner import RunSpec, execute, resolve


def test_compile_is_refused_where_it_does_not_help():
    """Compiled seqrec steps are slower on CPU (perf-seqrec-compile.md); a retrieval step scores through its towers,
    never the module's forward, so --compile would be a silent no-op there."""
    with pytest.raises(ConfigError, match=r"--compile: sasrec is a seqrec model: .*slower compiled.*Run without"):
        resolve(load_board("quickstart"), RunSpec(board="quickstart", model="sasrec", seed=0, compile=True))
    with pytest.raises(ConfigError, match=r"--compile: uns is a retrieval model: .*does not call"):
        resolve(load_board("retrieval-ml100k"), RunSpec(board="retrieval-ml100k", model="uns", seed=0, compile=True))
    resolve(load_board("ctr-synthetic"), RunSpec(board="ctr-synthetic", model="fm", seed=0, compile=True))


@pytest.mark.slow  # inductor compiles the forward and backward, then the eval graph: ~20-40 s of CPU
def test_a_compiled_run_scores_as_the_eager_run_and_is_recorded(tmp_path):
    records = {}
    torch._dynamo.reset()
    counters.clear()
    for compiled in (False, True):
        spec = RunSpec(board="ctr-synthetic", model="deepfm", seed=0, data_args={"rows": 10000},
                       model_args={"lr": 0.01}, trainer_args={"max_epochs": 2, "enable_progress_bar": False},
                       keep_checkpoint=False,
                       checkpoint_dir=str(tmp_path / str(compiled)), compile=compiled)
        records[compiled] = execute(spec)
        assert records[compiled]["status"] == "ok", records[compiled].get("traceback")
        assert bool(counters["stats"]["unique_graphs"]) == compiled  # only the compiled run went through dynamo
    eager, compiled = records[False], records[True]
    assert (eager["compiled"], compiled["compiled"]) == (False, True)
    assert compiled["config_hash"] == eager["config_hash"]  # an execution detail, like the thread count
    # same seed, same batches: only float rounding differs, so the scores agree far inside any seed noise
    assert compiled["metrics"]["test"]["auc"] == pytest.approx(eager["metrics"]["test"]["auc"], abs=2e-3)
    assert compiled["metrics"]["test"]["auc"] > 0.6  # and the model learned (chance is 0.5)
