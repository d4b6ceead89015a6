"""The LLM rows end to end on CPU: MLLM-MSR's pipeline (summaries from a scripted client, cached on disk) and
TALLRec, each LoRA-fine-tuning a tiny randomly initialised Hugging Face causal LM built from a config (no download)
through Lightning, then scored on the 1 + k protocol; only the LoRA weights train."""
from __future__ import annotations

import re

import lightning.pytorch as pl
import pytest
import torch

from datamodules.mllmrec import MLLMSynthetic
from lightning_modules.mllmrec import MLLMMSRPipeline, TALLRec
from tests.conftest import fast_trainer

pytest.importorskip("peft")


class TopicClient:
    """A scripted summariser: names the topics of the items it is shown."""

    name = "topic-echo"

    def complete(self, messages, *, max_tokens=256, temperature=0.0):
        topics = sorted(set(re.findall(r"topic (\d+)", messages[-1]["content"])))
        return "likes " + " ".join(f"topic {t}" for t in topics)


def tiny_causal_lm(path, words):
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    vocab = {w: i for i, w in enumerate(["[UNK]", "[PAD]", "[EOS]", "Yes", "No", *sorted(words)])}
    backend = Tokenizer(models.WordLevel(vocab=vocab, unk_token="[UNK]"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, unk_token="[UNK]", pad_token="[PAD]",
                                        eos_token="[EOS]")
    config = LlamaConfig(vocab_size=len(vocab), hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                         num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=512,
                         pad_token_id=1, eos_token_id=2, bos_token_id=2)
    torch.manual_seed(0)
    LlamaForCausalLM(config).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return str(path)


@pytest.fixture(scope="module")
def setting(tmp_path_factory):
    dm = MLLMSynthetic(num_users=40, num_items=12, num_topics=3, min_length=4, max_length=7, max_history=6,
                       num_eval_negatives=4, batch_size=8, eval_batch_size=8)
    dm.setup("fit")
    words = {w for t in dm.item_texts() for w in re.findall(r"\w+", t)} | {"likes", "topic", "User", "preference"}
    return dm, tiny_causal_lm(tmp_path_factory.mktemp("tiny-llm"), words)


@pytest.mark.parametrize("cls", [MLLMMSRPipeline, TALLRec])
def test_lora_fine_tuning_runs_end_to_end_on_cpu(cls, setting, tmp_path):
    dm, path = setting
    pl.seed_everything(0, verbose=False)
    extra = {"summary_cache_dir": str(tmp_path / "summaries")} if cls is MLLMMSRPipeline else {}
    model = cls(**dm.model_kwargs(), recommender_model=path, lr=1e-2, max_length=256, **extra)
    if cls is MLLMMSRPipeline:
        model.client = TopicClient()
    model.build_backbone(path)
    before = {n: p.detach().clone() for n, p in model.backbone.named_parameters()}
    trainer = fast_trainer(max_epochs=1, limit_train_batches=3, limit_val_batches=1)
    trainer.fit(model, datamodule=dm)
    base = {n: p.detach().clone() for n, p in model.backbone.named_parameters() if not p.requires_grad}
    lora = {n: p for n, p in model.backbone.named_parameters() if p.requires_grad}
    assert lora and all("lora_" in n for n in lora)
    assert sum(p.numel() for p in lora.values()) < sum(p.numel() for p in base.values())
    result = trainer.test(model, datamodule=dm, verbose=False)[0]
    assert 0.0 <= result["test/auc"] <= 1.0 and 0.0 <= result["test/ndcg@3"] <= 1.0
    for n, p in model.backbone.named_parameters():  # testing changed nothing, and the frozen weights stayed frozen
        if n in base:
            assert torch.equal(p, base[n])
    assert all(torch.equal(p, before[n]) for n, p in base.items()), "the backbone is frozen"
    assert any(not torch.equal(p, before[n]) for n, p in lora.items()), "the LoRA weights trained"
    if cls is MLLMMSRPipeline:
        assert model.cache.misses > 0 and list((tmp_path / "summaries").rglob("*.json"))
        # a checkpoint keeps the LoRA weights, not the frozen backbone
        trainer.save_checkpoint(tmp_path / "m.ckpt")
        state = torch.load(tmp_path / "m.ckpt", weights_only=True)["state_dict"]
        assert state and all("lora_" in k or not k.startswith("backbone.") for k in state)
