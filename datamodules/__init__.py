"""LightningDataModules of paperboard, one file per dataset under `<family>/`, registered in `DATASETS`."""
from datamodules.registry import DATASETS, register_dataset

from datamodules import seqrec  # noqa: E402,F401  (importing a family registers its datasets)
from datamodules import dtr  # noqa: E402,F401
from datamodules import ctr  # noqa: E402,F401
from datamodules import tsedit  # noqa: E402,F401
from datamodules import distill  # noqa: E402,F401
from datamodules import marl  # noqa: E402,F401

__all__ = ["DATASETS", "register_dataset"]
