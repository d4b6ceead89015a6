"""AUC and logloss of the ctr base against hand-computed cases (no sklearn), over one or many batches."""
import math

import pytest
import torch

from contracts.batch import ctr as B
from lightning_modules.ctr.base import CTRModule


class FixedScores(CTRModule):
    """A 'model' whose logits are the batch's first dense column, so the metrics see chosen scores."""

    def __init__(self):
        super().__init__(field_dims=[1], num_dense=1)

    def forward(self, dense, sparse):
        return dense[:, 0]


def evaluate(probabilities, labels, batch_size=None):
    model = FixedScores()
    p = torch.tensor(probabilities, dtype=torch.float64)
    logits = torch.log(p / (1 - p)).float()
    y = torch.tensor(labels, dtype=torch.float32)
    n = len(labels)
    step = batch_size or n
    model.log = lambda *a, **k: None  # outside a Trainer: update the metric objects only
    for start in range(0, n, step):
        batch = {B.DENSE: logits[start:start + step, None], B.SPARSE: torch.zeros(min(step, n - start), 1, dtype=torch.long),
                 B.LABEL: y[start:start + step]}
        model.validation_step(batch, 0)
    return model.val_auc.compute().item(), model.val_logloss.compute().item()


def test_auc_by_hand():
    # positives score 0.9 and 0.3; negatives 0.8, 0.6, 0.2. Pairs won: 0.9 beats 3, 0.3 beats 1 -> 4 of 6.
    auc, _ = evaluate([0.9, 0.8, 0.3, 0.6, 0.2], [1, 0, 1, 0, 0])
    assert auc == pytest.approx(4 / 6, abs=1e-6)


def test_auc_counts_ties_as_half():
    # positive 0.5 ties negative 0.5 (half) and beats 0.1 -> 1.5 of 2.
    auc, _ = evaluate([0.5, 0.5, 0.1], [1, 0, 0])
    assert auc == pytest.approx(0.75, abs=1e-6)


def test_perfect_and_reversed_ranking():
    assert evaluate([0.9, 0.8, 0.2, 0.1], [1, 1, 0, 0])[0] == pytest.approx(1.0)
    assert evaluate([0.1, 0.2, 0.8, 0.9], [1, 1, 0, 0])[0] == pytest.approx(0.0)


def test_logloss_by_hand():
    probs, labels = [0.9, 0.2, 0.6, 0.3], [1, 0, 0, 1]
    expected = -(math.log(0.9) + math.log(0.8) + math.log(0.4) + math.log(0.3)) / 4
    assert evaluate(probs, labels)[1] == pytest.approx(expected, rel=1e-5)


def test_metrics_are_exact_over_the_whole_set_not_averaged_per_batch():
    probs = [0.9, 0.8, 0.3, 0.6, 0.2, 0.7, 0.4]
    labels = [1, 0, 1, 0, 0, 1, 0]
    whole = evaluate(probs, labels)
    batched = evaluate(probs, labels, batch_size=2)  # batches [1,0] [1,0] [0,1] [0]: per-batch AUCs would differ
    assert batched[0] == pytest.approx(whole[0], abs=1e-7)
    assert batched[1] == pytest.approx(whole[1], rel=1e-6)
    # 0.9 beats 0.6, 0.4, 0.2, 0.8 (4); 0.3 beats 0.2 (1); 0.7 beats 0.6, 0.4, 0.2 (3) -> 8 of 12.
    assert whole[0] == pytest.approx(8 / 12, abs=1e-6)


def test_loss_adds_fuxictr_style_l2_on_whole_embedding_tables():
    model = FixedScores()
    model.embedding_l2 = 0.5
    table = model.embedding.table.weight
    expected = 0.5 / 2 * table.detach().pow(2).sum()
    assert model.regularization().item() == pytest.approx(expected.item(), rel=1e-6)


def test_a_nan_prediction_never_earns_a_good_auc():
    nan = float("nan")
    # an all-NaN model: every prediction is the worst for its label
    auc, logloss = evaluate([nan, nan, nan, nan], [1, 1, 0, 0])
    assert auc == pytest.approx(0.0) and logloss == math.inf
    # one NaN positive among perfect predictions loses all its pairs: 0.9 beats 0.2, 0.1 (2 of 4)
    auc, logloss = evaluate([0.9, nan, 0.2, 0.1], [1, 1, 0, 0])
    assert auc == pytest.approx(2 / 4) and logloss == math.inf
    # a NaN negative wins against every positive
    auc, _ = evaluate([0.9, 0.8, nan, 0.1], [1, 1, 0, 0])
    assert auc == pytest.approx(2 / 4)
