"""Small shared pieces of the ctr tests: a planted-cross synthetic datamodule and small model sizes."""
from __future__ import annotations

import inspect

from datamodules.ctr.synthetic import SyntheticCTR

# Sizes that keep every model fast on a 2-core CPU; each applies only where the model takes that argument.
SMALL = dict(embed_dim=8, hidden_units=[64, 64], cin_layer_units=[16, 16], mlp1_hidden_units=[64, 64],
             mlp2_hidden_units=[64], fs_hidden_units=[32], num_heads=2, attention_dim=16, num_layers=2,
             mlp1_dropout=0.0, mlp2_dropout=0.0, dropout=0.0, lr=3e-3)


def small_kwargs(cls, **extra) -> dict:
    params = inspect.signature(cls.__init__).parameters
    return {k: v for k, v in {**SMALL, **extra}.items() if k in params}


def planted(rows: int = 12000, batch_size: int = 256) -> SyntheticCTR:
    """4 numeric + 6 categorical fields, two categorical crosses, a numeric cross and a numeric x categorical one."""
    dm = SyntheticCTR(rows=rows, num_dense=4, num_sparse=6, cross_pairs=2, cross_strength=2.0,
                      dense_cross_strength=1.5, linear_strength=0.3, vocab_scale=0.2, max_vocab=40, seed=3,
                      batch_size=batch_size, eval_batch_size=4096)
    dm.setup()
    return dm
