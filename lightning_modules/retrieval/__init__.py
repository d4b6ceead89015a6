"""Embedding-based retrieval (family `retrieval`): a two-tower model whose negative sampler is the row. Importing
this package registers it and its sampler variants."""
from lightning_modules.retrieval import two_tower  # noqa: F401

# the public names: `from lightning_modules.retrieval import TwoTower`
from lightning_modules.retrieval.two_tower import TwoTower
__all__ = ["TwoTower"]
