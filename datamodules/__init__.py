"""LightningDataModules of paperboard, one file per dataset under `<family>/`, registered in `DATASETS`."""
from datamodules.registry import DATASETS, register_dataset

from datamodules import seqrec  # noqa: E402,F401  (importing a family registers its datasets)

__all__ = ["DATASETS", "register_dataset"]
