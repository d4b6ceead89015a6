"""What a run's callbacks may raise to stop the run with a status other than failed, how a run reports its
learning curve, and what its checkpoints keep only while it trains."""

# A run's validation learning curve travels as test metrics `val_curve_<step>` (one curve) or
# `val_curve_<name>_<step>` (several), step zero-padded to 9 digits; benchmarks.curves reads them back.
CURVE_PREFIX = "val_curve_"

# A checkpoint key for state a module needs only to continue a stopped fit and that is too large to keep with a
# finished run's best checkpoint (a Q-learner's replay buffer): last.ckpt holds it, the kept best.ckpt drops it.
CONTINUATION_ONLY = "continuation_only"


class RunNeedsLLM(RuntimeError):
    """Raised by a model that prompts a language model when none is configured or reachable: the runner records the
    run with status "needs_llm" and the message (which says how to configure one), never as a failed run."""


class RunPruned(Exception):
    """Raised by a callback that the caller of `benchmarks.runner.execute` passed in (a sweep's pruner) to stop the
    run early on purpose: the runner records it with status "pruned" and the message, never as a failed run."""
