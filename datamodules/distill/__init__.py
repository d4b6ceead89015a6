"""Dataset-distillation datasets (family `distill`): seqrec datasets plus frozen sampled negatives."""
from datamodules.distill import wrapped  # noqa: F401

# the public names: `from datamodules.distill import DistillML100K`
from datamodules.distill.wrapped import DistillML100K, DistillML1M, DistillSynthetic
__all__ = ["DistillML100K", "DistillML1M", "DistillSynthetic"]
