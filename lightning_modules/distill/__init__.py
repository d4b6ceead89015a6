"""Dataset distillation for sequential recommendation (family `distill`). Importing this registers its methods."""
from lightning_modules.distill import baselines, td3  # noqa: F401
