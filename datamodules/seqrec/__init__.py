"""Sequential-recommendation datasets (family `seqrec`). Importing this package registers them."""
from datamodules.seqrec import amazon, movielens, synthetic  # noqa: F401

# the public names: `from datamodules.seqrec import AmazonBeauty`
from datamodules.seqrec.amazon import AmazonBeauty, AmazonSports
from datamodules.seqrec.movielens import MovieLens100K, MovieLens1M
from datamodules.seqrec.synthetic import SyntheticAttributeSeqRec, SyntheticSeqRec
__all__ = ["AmazonBeauty", "AmazonSports", "MovieLens100K", "MovieLens1M", "SyntheticAttributeSeqRec",
           "SyntheticSeqRec"]
