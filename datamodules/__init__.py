"""LightningDataModules of paperboard, one file per dataset under `<family>/`; importing this package registers them
in `contracts.registry.DATASETS`."""
from datamodules import seqrec  # noqa: F401
from datamodules import dtr  # noqa: F401
from datamodules import ctr  # noqa: F401
from datamodules import tsedit  # noqa: F401
from datamodules import distill  # noqa: F401
from datamodules import marl  # noqa: F401
from datamodules import retrieval  # noqa: F401
from datamodules import imitation  # noqa: F401
from datamodules import eda  # noqa: F401
from datamodules import mllmrec  # noqa: F401
from datamodules import rerank  # noqa: F401
