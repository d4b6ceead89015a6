"""LightningModules of paperboard, one file per model under `<family>/`; importing this package registers them in
`contracts.registry.MODELS`."""
from lightning_modules import seqrec  # noqa: F401
from lightning_modules import dtr  # noqa: F401
from lightning_modules import tsedit  # noqa: F401
from lightning_modules import distill  # noqa: F401
from lightning_modules import ctr  # noqa: F401
from lightning_modules import marl  # noqa: F401
from lightning_modules import retrieval  # noqa: F401
from lightning_modules import imitation  # noqa: F401
from lightning_modules import eda  # noqa: F401
from lightning_modules import rerank  # noqa: F401
from lightning_modules import mllmrec  # noqa: F401
