"""Multimodal-LLM-enhanced sequential recommendation data (MLLM-MSR's 1 + 20 candidate protocol; importing registers
the datasets)."""
from datamodules.mllmrec import datasets  # noqa: F401

# the public names: `from datamodules.mllmrec import MLLMBeauty`
from datamodules.mllmrec.datasets import MLLMBeauty, MLLMMovieLens1M, MLLMSynthetic
__all__ = ["MLLMBeauty", "MLLMMovieLens1M", "MLLMSynthetic"]
