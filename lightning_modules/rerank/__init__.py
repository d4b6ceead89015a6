"""Reranking (importing registers the models): every reranker reorders the same N candidates that an upstream
GMF ranker gives each user, and is scored on accuracy, diversity and fairness together (LLM4Rerank's protocol).
The interface and the shared evaluation are in `lightning_modules.rerank.base`."""
from lightning_modules.rerank import dlcm, dpp, fairrec, gmf, llm4rerank, mmr, prm, random_order, rankgpt  # noqa: F401
from lightning_modules.rerank.base import ListwiseReranker, RerankModule
from lightning_modules.rerank.dlcm import DLCM
from lightning_modules.rerank.dpp import FastDPP
from lightning_modules.rerank.fairrec import FairRecExposure
from lightning_modules.rerank.gmf import GMFOrder
from lightning_modules.rerank.llm4rerank import LLM4Rerank
from lightning_modules.rerank.mmr import MMR
from lightning_modules.rerank.prm import PRM
from lightning_modules.rerank.random_order import RandomOrder
from lightning_modules.rerank.rankgpt import RankGPT

__all__ = ["DLCM", "FairRecExposure", "FastDPP", "GMFOrder", "LLM4Rerank", "ListwiseReranker", "MMR", "PRM",
           "RandomOrder", "RankGPT", "RerankModule"]
