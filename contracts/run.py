"""What a run's callbacks may raise to stop the run with a status other than failed, and how a run reports its
learning curve."""

# A run's validation learning curve travels as test metrics `val_curve_<step>` (one curve) or
# `val_curve_<name>_<step>` (several), step zero-padded to 9 digits; benchmarks.curves reads them back.
CURVE_PREFIX = "val_curve_"


class RunNeedsLLM(RuntimeError):
    """Raised by a model that prompts a language model when none is configured or reachable: the runner records the
    run with status "needs_llm" and the message (which says how to configure one), never as a failed run."""


class RunPruned(Exception):
    """Raised by a callback that the caller of `benchmarks.runner.execute` passed in (a sweep's pruner) to stop the
    run early on purpose: the runner records it with status "pruned" and the message, never as a failed run."""
