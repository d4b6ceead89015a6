"""LightningModules of paperboard, one file per model under `<family>/`, registered in `MODELS`."""
from lightning_modules.registry import MODELS, register_model

# Importing the families fills the registry.
from lightning_modules import seqrec  # noqa: E402,F401
from lightning_modules import dtr  # noqa: E402,F401
from lightning_modules import tsedit  # noqa: E402,F401
from lightning_modules import distill  # noqa: E402,F401
from lightning_modules import ctr  # noqa: E402,F401
from lightning_modules import marl  # noqa: E402,F401

__all__ = ["MODELS", "register_model"]
