"""Sequential-recommendation datasets (family `seqrec`). Importing this package registers them."""
from datamodules.seqrec import amazon, movielens, synthetic  # noqa: F401
