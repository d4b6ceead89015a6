"""Retrieval datasets (family `retrieval`). Importing this package registers them."""
from datamodules.retrieval import datasets  # noqa: F401

# the public names: `from datamodules.retrieval import SyntheticRetrieval`
from datamodules.retrieval.datasets import RetrievalBeauty, RetrievalML1M, RetrievalML100K, SyntheticRetrieval
__all__ = ["RetrievalBeauty", "RetrievalML100K", "RetrievalML1M", "SyntheticRetrieval"]
