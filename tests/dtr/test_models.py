"""dtr models: a smoke test over every registered model, SAFER's causal attention, and SAFER learning
a signal planted in the notes (notes-on beats notes-off)."""
import inspect
import math

import lightning.pytorch as pl
import numpy as np
import pytest
import torch

from contracts.batch import dtr as B
from contracts.registry import MODELS
from datamodules.dtr.icu_sepsis import ICUSepsisDataModule
from lightning_modules.dtr.safer import SAFER, TransformerLayer, causal_mask
from tests.conftest import fast_trainer

TINY = {"d_model": 16, "num_heads": 2, "num_layers": 1, "ffn_dim": 16, "hidden_dim": 16, "embed_dim": 16,
        "stage1_epochs": 1, "refine_epochs": 1, "conformal_repetitions": 3}
BOARD_METRICS = ("micro_auc", "macro_auc", "hr@3", "mrr@3", "mrr@3_hits", "survival", "est_mort_reduction")


@pytest.fixture(scope="module")
def tiny():
    dm = ICUSepsisDataModule(num_patients=150, text_encoder="tfidf", tfidf_dim=16, batch_size=128)
    dm.prepare_data()
    dm.setup("fit")
    return dm


def build(name, dm, **extra):
    entry = MODELS.get(name)
    params = inspect.signature(entry.cls.__init__).parameters
    kwargs = {k: v for k, v in {**TINY, **extra}.items() if k in params}
    return entry.build(**dm.model_kwargs(), **kwargs)


@pytest.mark.parametrize("name", MODELS.names(family="dtr"))
def test_every_dtr_model_trains_and_reports_the_board_metrics(name, tiny):
    pl.seed_everything(0, verbose=False)
    model = build(name, tiny)
    assert hasattr(type(model), "search_space")
    trainer = fast_trainer(max_epochs=1, limit_train_batches=2)
    trainer.fit(model, datamodule=tiny)
    metrics = trainer.test(model, datamodule=tiny, verbose=False)[0]
    for metric in BOARD_METRICS:
        assert math.isfinite(metrics[f"test/{metric}"]), (name, metric)
    assert 0 <= metrics["test/hr@3"] <= 1 and metrics["test/mrr@3"] <= metrics["test/hr@3"]
    if name.startswith("safer"):
        assert 0 <= metrics["test/fdr"] <= 1 and 0 <= metrics["test/power"] <= 1
        assert "test/curve_power_a0.5_c0.2" in metrics


def test_a_run_reports_its_validation_learning_curve_at_test(tiny):
    pl.seed_everything(0, verbose=False)
    model = build("cql", tiny)
    seen = []  # val/survival as logged after each epoch (validation runs before the epoch ends)
    trainer = fast_trainer(max_epochs=3, limit_train_batches=2, callbacks=[pl.Callback()])
    trainer.callbacks[0].on_train_epoch_end = lambda tr, m: seen.append(float(tr.callback_metrics["val/survival"]))
    trainer.fit(model, datamodule=tiny)
    metrics = trainer.test(model, datamodule=tiny, verbose=False)[0]
    curve = {k: v for k, v in metrics.items() if k.startswith("test/val_curve_survival_")}
    assert sorted(curve) == [f"test/val_curve_survival_{s:09d}" for s in (2, 4, 6)]  # optimizer steps
    assert [curve[k] for k in sorted(curve)] == pytest.approx(seen)
    assert len([k for k in metrics if k.startswith("test/val_curve_mrr@3_")]) == 3


def test_safer_attention_is_causal():
    torch.manual_seed(0)
    layer = TransformerLayer(16, 2, 16, 0.0, use_notes=True, residual=True).eval()
    x = [torch.randn(2, 8, 16) for _ in range(3)]
    mask = torch.ones(2, 8, dtype=torch.bool)
    mask[0, :3] = False
    before = layer(*x, causal_mask(mask))
    changed = [t.clone() for t in x]
    for t in changed:
        t[:, 5:] += 10.0  # perturb the future of position 4
    after = layer(*changed, causal_mask(mask))
    for b, a in zip(before, after):
        torch.testing.assert_close(b[:, :5], a[:, :5])
        assert not torch.allclose(b[:, 5:], a[:, 5:])


class PlantedNoteICU(ICUSepsisDataModule):
    """ICU-Sepsis steps whose action is a fixed linear read-out of the step's note embedding (one of 5 actions):
    the tables see at most the state the note was written from, not its wording. The plain stand-in's notes add too
    little to test on a tiny cohort: at 400 patients, table noise 2 and note noise 0.2, a logistic regression
    predicts the action with accuracy 0.29 from the tables, 0.32 with the notes, and 0.35 from the true state."""

    def cache_key(self) -> str:
        return super().cache_key() + "|planted-note-action"

    def build_steps(self):
        a = super().build_steps()
        readout = np.random.default_rng(7).normal(size=(a["note_table"].shape[1], 5))
        planted = (a["note_table"] @ readout).argmax(1)[a["note"]] * 5  # actions 0, 5, ..., 20
        return {**a, "action": planted.astype(np.int64)}


def test_safer_reads_a_planted_signal_from_the_notes():
    """The note pathway carries what only the notes know: with notes SAFER predicts the note-planted action far
    better than without them (SAFER-N, which sees only the tables)."""
    dm = PlantedNoteICU(num_patients=300, text_encoder="tfidf", tfidf_dim=16, outcome_model=False, batch_size=128)
    dm.prepare_data()
    dm.setup("fit")
    scores = {}
    for use_notes in (True, False):
        pl.seed_everything(0, verbose=False)
        model = SAFER(**dm.model_kwargs(), d_model=32, num_heads=2, num_layers=1, ffn_dim=32, use_notes=use_notes,
                      stage1_epochs=6, refine_epochs=1, stage1_lr=3e-3, finetune=False, conformal_repetitions=2)
        trainer = fast_trainer(max_epochs=1)
        trainer.fit(model, datamodule=dm)
        scores[use_notes] = trainer.test(model, datamodule=dm, verbose=False)[0]["test/mrr@3"]
    assert scores[True] > scores[False] + 0.2, scores


def test_safer_stages_run_under_trainers_with_the_outer_precision(tiny, monkeypatch):
    """Stage 1 and the refinement are Lightning fits of their own whose Trainer inherits the outer run's
    accelerator and precision; the module points back at the outer Trainer afterwards."""
    from lightning_modules.dtr import safer as S

    seen = []
    real = S.run_stage

    def spy(stage, outer, max_epochs, device):
        result = real(stage, outer, max_epochs, device)
        seen.append((type(stage).__name__, stage.trainer.precision, max_epochs))
        return result

    monkeypatch.setattr(S, "run_stage", spy)
    pl.seed_everything(0, verbose=False)
    model = build("safer", tiny, stage1_epochs=2, refine_epochs=2, finetune_epochs=1)
    trainer = fast_trainer(max_epochs=1, limit_train_batches=1, precision="bf16-mixed")
    trainer.fit(model, datamodule=tiny)
    assert seen == [("Stage1", "bf16-mixed", 2), ("RefineStage", "bf16-mixed", 2)]
    assert model.trainer is trainer and len(model.stage_log["stage1"]["val_loss"]) == 2


def test_acil_imitates_the_survivors_and_avoids_the_deceased_patients_actions():
    """At the same states survivors were given action 0 and deceased patients action 1 (a third of the time):
    cloning every patient puts a third of the mass on action 1, ACIL moves it to action 0."""
    from torch.utils.data import DataLoader

    g = torch.Generator().manual_seed(0)
    n, steps = 256, 4
    died = (torch.rand(n, generator=g) < 1 / 3).long()
    batch = {B.VITALS: torch.randn(n, steps, 3, generator=g), B.MEDS: torch.zeros(n, steps, 2),
             B.NOTES: torch.zeros(n, steps, 2), B.MASK: torch.ones(n, steps), B.DEMO: torch.zeros(n, 1),
             B.ACTION: died.clone(), B.DIED: died}
    loader = DataLoader([batch] * 150, batch_size=None)
    pl.seed_everything(0, verbose=False)
    model = MODELS.get("acil").build(vitals_dim=3, meds_dim=2, notes_dim=2, demo_dim=1, history_len=steps,
                                     hidden_dim=32, lr=3e-3, disc_lr=3e-3)
    fast_trainer(max_epochs=1).fit(model, train_dataloaders=loader)
    with torch.no_grad():
        pi = torch.softmax(model(batch)["logits"], -1).mean(0)
    assert pi[0] > 0.8 and pi[1] < 0.1, pi[:2]
