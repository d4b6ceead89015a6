"""Dataset distillation for sequential recommendation (family `distill`). Importing this registers its methods."""
from lightning_modules.distill import baselines, td3  # noqa: F401

# the public names: `from lightning_modules.distill import Farzi`
from lightning_modules.distill.baselines import Farzi, FullData, LongestSubset, RandomSubset
from lightning_modules.distill.td3 import TD3
__all__ = ["Farzi", "FullData", "LongestSubset", "RandomSubset", "TD3"]
