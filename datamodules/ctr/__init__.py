"""CTR datasets (family `ctr`): Adult, Criteo in the BARS layouts, the DeepCTR sample, and a synthetic generator.
Importing this package registers them."""
from datamodules.ctr import adult, criteo, synthetic  # noqa: F401
