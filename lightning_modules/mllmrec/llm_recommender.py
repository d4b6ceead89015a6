"""LLM recommenders that answer "yes" or "no" for (user, candidate), fine-tuned with LoRA (peft): MLLM-MSR's full
pipeline and TALLRec.

Both read a prompt about the user and one candidate and are trained as the official `train_llava_sft.py` trains
MLLM-MSR: token-level cross-entropy of the answer ("Yes" for the positive, "No" for a negative), LoRA on every
linear layer but the output head (Gaussian init), AdamW at 2e-5. A candidate's score is the "Yes" logit minus the
"No" logit at the answer position (the official test's softmax over [No, Yes], as a logit). The backbone is a
local Hugging Face causal LM (`recommender_model`, a path or `hf:PATH`; else `llm` when it is `hf:PATH`; else env
PAPERBOARD_LLM when it is): the paper tunes LLaVA-v1.6-Mistral-7B, which reads the candidate's image too; a
text-only backbone reads its text alone. Without a model, `setup` raises `LLMUnavailable` (the board then reads
"needs an LLM").

- `mllm_msr_llm` (MLLM-MSR, Ye et al., AAAI 2025): the user part of the prompt is the preference summary written
  by the summarisation LLM (`llm`: any client spec; `pipeline.RecurrentPreferenceSummariser` over blocks of 3
  items, each item described by `pipeline.ItemSummariser`), cached on disk (`summary_cache_dir`) and resumable;
  `recurrent=False` is MLLM-MSR_R.
- `tallrec` (Bao et al., RecSys 2023): the user part lists the history's item texts; no summarisation model.

LoRA rank 8 is the paper's (the official code uses r=16, alpha 32; both flags); the paper trains 10 epochs at
length 512 (code: 4 epochs, 1024), set by the board's Trainer and `max_length`.
"""
from __future__ import annotations

import os
from pathlib import Path

import optuna
import torch
import torch.nn.functional as F

from contracts.batch import mllmrec as B
from contracts.registry import register_model
from lightning_modules.base_arguments import base_arguments
from lightning_modules.mllmrec.base import DEFAULT_KS, CandidateRecModule

QUESTION = ("Based on this, predict whether the user would interact with the following item at the next "
            "opportunity. Only respond \"Yes\" or \"No\".\nItem: {candidate}")


def llm_api():
    """(LLMUnavailable, make_client) of the shared client, imported when first needed."""
    from lightning_modules.llm import LLMUnavailable, make_client

    return LLMUnavailable, make_client


def default_cache_dir() -> Path:
    root = os.environ.get("PAPERBOARD_CACHE") or Path("~/.cache/paperboard/cache")
    return Path(root).expanduser() / "mllmrec-summaries"


class LLMYesNoRecommender(CandidateRecModule):
    needs_llm = True  # tests that train every registered model skip it unless a model is configured

    def __init__(self, num_items: int, max_history: int = 10, text_dim: int = 0, recommender_model: str = "",
                 lora_r: int = 8, lora_alpha: int = 32, lora_dropout: float = 0.1, max_length: int = 512,
                 lr: float = 2e-5, weight_decay: float = 0.0, eval_ks: tuple[int, ...] = DEFAULT_KS):
        super().__init__(num_items=num_items, max_history=max_history, text_dim=0, lr=lr,
                         weight_decay=weight_decay, eval_ks=eval_ks)
        self.strict_loading = False  # checkpoints hold the LoRA weights only, not the frozen backbone
        self.backbone = None
        self.tokenizer = None
        self.texts: list[str] | None = None

    # ----- set-up -------------------------------------------------------------------------------------------------
    def backbone_path(self) -> str:
        specs = (self.hparams.recommender_model, getattr(self.hparams, "llm", ""), os.environ.get("PAPERBOARD_LLM"))
        for spec in specs:
            if spec and (spec.startswith("hf:") or Path(spec).is_dir()):
                return spec.removeprefix("hf:")
        LLMUnavailable, _ = llm_api()
        raise LLMUnavailable(
            f"{self.registry_name} fine-tunes a local Hugging Face causal LM with LoRA and none is configured: pass "
            f"model argument recommender_model=PATH (or llm=hf:PATH), or set env PAPERBOARD_LLM=hf:/path/to/model")

    def setup(self, stage: str) -> None:
        super().setup(stage)
        datamodule = getattr(self.trainer, "datamodule", None) if self._trainer is not None else None
        if self.texts is None and datamodule is not None and hasattr(datamodule, "item_texts"):
            self.texts = list(datamodule.item_texts())
        if self.texts is None:
            raise ValueError(f"{self.registry_name} reads item texts from its datamodule's item_texts()")
        if self.backbone is None:
            self.build_backbone(self.backbone_path())

    def build_backbone(self, path: str) -> None:
        from peft import LoraConfig, get_peft_model
        from transformers import AutoModelForCausalLM, AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(path)
        tokenizer.padding_side = tokenizer.truncation_side = "left"  # the answer position is the last column
        if tokenizer.pad_token is None:
            tokenizer.pad_token = tokenizer.eos_token or tokenizer.unk_token
        model = AutoModelForCausalLM.from_pretrained(path)
        lora = LoraConfig(r=self.hparams.lora_r, lora_alpha=self.hparams.lora_alpha,
                          lora_dropout=self.hparams.lora_dropout, target_modules="all-linear",
                          init_lora_weights="gaussian", task_type="CAUSAL_LM")
        self.backbone = get_peft_model(model, lora).to(self.device).train()
        self.tokenizer = tokenizer
        self.answer_ids = torch.tensor([self.token_id("No"), self.token_id("Yes")])

    def token_id(self, word: str) -> int:
        ids = self.tokenizer(word, add_special_tokens=False).input_ids
        if not ids:
            raise ValueError(f"the tokenizer of {self.hparams.recommender_model!r} cannot encode {word!r}")
        return ids[0]

    # ----- prompts ---------------------------------------------------------------------------------------------------
    def user_text(self, history: list[int]) -> str:
        raise NotImplementedError

    def prompts(self, batch) -> list[str]:
        """B * C prompts, row-major (user, candidate)."""
        histories = [[int(i) for i in row if i != B.PAD] for row in batch[B.HISTORY].tolist()]
        out = []
        for history, candidates in zip(histories, batch[B.CANDIDATES].tolist()):  # strings: no tensor path
            about = self.user_text(history)
            for c in candidates:
                text = f"{about}\n{QUESTION.format(candidate=self.texts[c])}"
                if getattr(self.tokenizer, "chat_template", None):
                    text = self.tokenizer.apply_chat_template([{"role": "user", "content": text}], tokenize=False,
                                                              add_generation_prompt=True)
                else:
                    text += "\nAnswer:"
                out.append(text)
        return out

    def answer_logits(self, batch) -> torch.Tensor:
        """[B, C, vocab] next-token logits at the answer position."""
        encoded = self.tokenizer(self.prompts(batch), return_tensors="pt", padding=True, truncation=True,
                                 max_length=self.hparams.max_length).to(self.device)
        logits = self.backbone(**encoded).logits[:, -1]
        return logits.view(*batch[B.CANDIDATES].shape, -1)

    def score(self, batch):
        logits = self.answer_logits(batch).float()
        no, yes = self.answer_ids.tolist()
        return logits[..., yes] - logits[..., no]

    def training_step(self, batch, batch_idx):
        logits = self.answer_logits(batch).float()
        target = torch.full(batch[B.CANDIDATES].shape, int(self.answer_ids[0]), device=logits.device)
        target[:, B.POSITIVE_COLUMN] = int(self.answer_ids[1])
        loss = F.cross_entropy(logits.flatten(0, 1), target.flatten())
        self.log("train/loss", loss, prog_bar=True, batch_size=target.shape[0])
        return loss

    def configure_optimizers(self):
        params = [p for p in self.parameters() if p.requires_grad]
        return torch.optim.AdamW(params, lr=self.lr, weight_decay=self.weight_decay)

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        trainable = {n for n, p in self.named_parameters() if p.requires_grad}
        buffers = {n for n, _ in self.named_buffers() if not n.startswith("backbone.")}
        checkpoint["state_dict"] = {k: v for k, v in checkpoint["state_dict"].items() if k in trainable | buffers}

    @staticmethod
    def search_space(trial: optuna.Trial) -> dict:
        return {"lr": trial.suggest_float("lr", 1e-5, 2e-4, log=True)}


@register_model("mllm_msr_llm", family="mllmrec")
class MLLMMSRPipeline(LLMYesNoRecommender):
    def __init__(self, num_items: int, max_history: int = 10, text_dim: int = 0, llm: str = "",
                 recommender_model: str = "", summary_cache_dir: str = "", image_dir: str = "",
                 block_size: int = 3, recurrent: bool = True, summary_max_tokens: int = 256,
                 item_max_tokens: int = 200, temperature: float = 0.0, lora_r: int = 8, lora_alpha: int = 32,
                 lora_dropout: float = 0.1, max_length: int = 512, lr: float = 2e-5, weight_decay: float = 0.0,
                 eval_ks: tuple[int, ...] = DEFAULT_KS):
        super().__init__(**base_arguments(LLMYesNoRecommender, locals()))
        self.save_hyperparameters()
        self.client = None  # the summarisation LLM: built from `llm` in setup, or set before fitting
        self.summariser = None

    def setup(self, stage: str) -> None:
        super().setup(stage)
        if self.summariser is not None:
            return
        from lightning_modules.mllmrec.pipeline import (DirectPreferenceSummariser, ItemSummariser,
                                                        RecurrentPreferenceSummariser, SummaryCache)

        if self.client is None:
            _, make_client = llm_api()
            self.client = make_client(self.hparams.llm or None)
        hp = self.hparams
        self.cache = SummaryCache(self.client, hp.summary_cache_dir or default_cache_dir())
        items = ItemSummariser(self.cache, self.texts, hp.image_dir or None, hp.item_max_tokens, hp.temperature)
        kind = RecurrentPreferenceSummariser if hp.recurrent else DirectPreferenceSummariser
        self.summariser = kind(self.cache, items, hp.block_size, hp.summary_max_tokens, hp.temperature)

    def user_text(self, history: list[int]) -> str:
        return f"User preference: {self.summariser(history)}"


@register_model("tallrec", family="mllmrec")
class TALLRec(LLMYesNoRecommender):
    """TALLRec (Bao et al., RecSys 2023): instruction-tuned yes/no answers from the listed history, LoRA."""

    def __init__(self, num_items: int, max_history: int = 10, text_dim: int = 0, recommender_model: str = "",
                 lora_r: int = 8, lora_alpha: int = 16, lora_dropout: float = 0.05, max_length: int = 512,
                 lr: float = 3e-4, weight_decay: float = 0.0, eval_ks: tuple[int, ...] = DEFAULT_KS):
        super().__init__(**base_arguments(LLMYesNoRecommender, locals()))
        self.save_hyperparameters()

    def user_text(self, history: list[int]) -> str:
        listed = "; ".join(self.texts[i] for i in history)
        return f"The user interacted with these items, oldest first: {listed}."
