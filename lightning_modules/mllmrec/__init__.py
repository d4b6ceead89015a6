"""Multimodal-LLM-enhanced sequential recommendation on MLLM-MSR's 1 + 20 candidate protocol (importing registers
the models): MLLM-MSR offline (text-encoder stand-in for the MLLM, recurrent or direct preference inference) and its
LLM pipeline (item and recurrent preference summaries, LoRA yes/no recommender), TALLRec, UniSRec-style, SASRec,
GRU4Rec and popularity."""
from lightning_modules.mllmrec import baselines, llm_recommender, mllm_msr  # noqa: F401

# the public names: `from lightning_modules.mllmrec import MLLMMSR`
from lightning_modules.mllmrec.baselines import CandidateGRU4Rec, CandidatePopularity, CandidateSASRec, UniSRecStyle
from lightning_modules.mllmrec.llm_recommender import MLLMMSRPipeline, TALLRec
from lightning_modules.mllmrec.mllm_msr import MLLMMSR
__all__ = ["CandidateGRU4Rec", "CandidatePopularity", "CandidateSASRec", "MLLMMSR", "MLLMMSRPipeline", "TALLRec",
           "UniSRecStyle"]
