"""Reranking datasets (importing registers them): per user, the N candidates of an upstream GMF ranker with their
genres and fairness groups, leave-one-out (`contracts.batch.rerank`)."""
from datamodules.rerank import movielens, synthetic  # noqa: F401

# the public names: `from datamodules.rerank import RerankML1M`
from datamodules.rerank.base import RerankDataModule
from datamodules.rerank.movielens import RerankML1M, RerankML100K
from datamodules.rerank.synthetic import SyntheticRerank
__all__ = ["RerankDataModule", "RerankML100K", "RerankML1M", "SyntheticRerank"]
