"""The shared pre-norm layer and block stack (seqrec/layers.py) compute each model's equations exactly, under the
checkpoint keys the models have always had."""
import pytest
import torch

import lightning_modules  # noqa: F401
from contracts.batch.seqrec import PAD
from contracts.registry import MODELS
from lightning_modules.seqrec.layers import causal_padding_mask

# Keys of one block, as checkpoints of these models hold them.
BLOCK_KEYS = {
    "sasrec": ["attention_norm.weight", "attention_norm.bias", "attention.q.weight", "attention.q.bias",
               "attention.k.weight", "attention.k.bias", "attention.v.weight", "attention.v.bias",
               "attention.out.weight", "attention.out.bias", "ffn_norm.weight", "ffn_norm.bias", "ffn.net.0.weight",
               "ffn.net.0.bias", "ffn.net.3.weight", "ffn.net.3.bias"],
    "gpt_rec": ["attention_norm.weight", "attention_norm.bias", "attention.q.weight", "attention.q.bias",
                "attention.k.weight", "attention.k.bias", "attention.v.weight", "attention.v.bias",
                "attention.out.weight", "attention.out.bias", "mlp_norm.weight", "mlp_norm.bias", "mlp.0.weight",
                "mlp.0.bias", "mlp.2.weight", "mlp.2.bias"],
    "llama_rec": ["attention_norm.weight", "attention.q.weight", "attention.k.weight", "attention.v.weight",
                  "attention.out.weight", "ffn_norm.weight", "ffn.w1.weight", "ffn.w3.weight", "ffn.w2.weight"],
}
# SASRec's default block (the official code's residuals) is written out in test_protocols.py; here its two
# pre-norm forms: the paper's, and query-only LayerNorm with raw residuals.
CASES = [("sasrec", {"query_only_layernorm": False}),
         ("sasrec", {"query_only_layernorm": True, "residual_from_normalized": False}), ("gpt_rec", {}), ("llama_rec", {})]


def build(name, **extra):
    torch.manual_seed(0)
    return MODELS.get(name).cls(num_items=30, max_len=10, embed_dim=16, num_blocks=2, num_heads=2, **extra).eval()


def written_out(model, name, input_ids):
    """The pre-norm equations term by term: x += Attn(Norm(x)), x += FFN(Norm(x)), padded rows zeroed per block."""
    keep = (input_ids != PAD).unsqueeze(-1)
    mask = causal_padding_mask(input_ids)
    if name == "llama_rec":
        x, rotary = model.item_embedding(input_ids) * keep, model.rotary
    else:
        x, rotary = model.input(input_ids), None
    query_only = getattr(model.hparams, "query_only_layernorm", False)
    ffn_name = "mlp" if name == "gpt_rec" else "ffn"
    for block in model.blocks:
        h = block.attention_norm(x)
        x = x + block.attention(h, x if query_only else h, mask, rotary=rotary)
        x = x + getattr(block, ffn_name)(getattr(block, f"{ffn_name}_norm")(x))
        x = x * keep
    return model.final_norm(x)


@pytest.mark.parametrize("name,extra", CASES)
def test_prenorm_models_compute_their_equations_exactly(name, extra):
    model = build(name, **extra)
    torch.manual_seed(1)
    input_ids = torch.randint(1, 31, (3, 10))
    input_ids[0, :3] = PAD
    input_ids[1, :8] = PAD
    with torch.no_grad():
        assert torch.equal(model(input_ids), written_out(model, name, input_ids))


@pytest.mark.parametrize("name", sorted(BLOCK_KEYS))
def test_prenorm_models_keep_their_checkpoint_keys(name):
    keys = list(build(name).state_dict())
    assert [k[len("blocks.1."):] for k in keys if k.startswith("blocks.1.")] == BLOCK_KEYS[name]
