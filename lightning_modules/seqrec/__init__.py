"""Sequential recommenders (family `seqrec`). Importing this package registers its models."""
from lightning_modules.seqrec import gru4rec, pop, sasrec  # noqa: F401
