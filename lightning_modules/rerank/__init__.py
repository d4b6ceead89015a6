"""Reranking (importing registers the models): every reranker reorders the same N candidates that an upstream
GMF ranker gives each user, and is scored on accuracy, diversity and fairness together (LLM4Rerank's protocol).
The interface and the shared evaluation are in `lightning_modules.rerank.base`."""
import importlib
import importlib.util

from lightning_modules.rerank import dlcm, dpp, fairrec, gmf, mmr, prm  # noqa: F401
from lightning_modules.rerank.base import ListwiseReranker, RerankModule
from lightning_modules.rerank.dlcm import DLCM
from lightning_modules.rerank.dpp import FastDPP
from lightning_modules.rerank.fairrec import FairRecExposure
from lightning_modules.rerank.gmf import GMFOrder
from lightning_modules.rerank.mmr import MMR
from lightning_modules.rerank.prm import PRM

# the LLM rerankers live beside the classic ones in files of their own
for _name in ("rankgpt", "llm4rerank"):
    if importlib.util.find_spec(f"lightning_modules.rerank.{_name}") is not None:
        importlib.import_module(f"lightning_modules.rerank.{_name}")

__all__ = ["DLCM", "FairRecExposure", "FastDPP", "GMFOrder", "ListwiseReranker", "MMR", "PRM", "RerankModule"]
