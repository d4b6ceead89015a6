"""Dataset-distillation datasets (family `distill`): seqrec datasets plus frozen sampled negatives."""
from datamodules.distill import wrapped  # noqa: F401
