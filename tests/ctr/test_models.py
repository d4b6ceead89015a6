"""Every registered ctr model: a forward/backward smoke test, and it beats LR on planted feature crosses."""
import lightning.pytorch as pl
import pytest
import torch

import lightning_modules  # noqa: F401
from contracts.batch import ctr as B
from contracts.registry import MODELS
from tests.conftest import fast_trainer
from tests.ctr.helpers import planted, small_kwargs

CTR_MODELS = MODELS.names(family="ctr")
EPOCHS = 6
# The shallow models (their embeddings start at N(0, 1e-4^2) as in FuxiCTR, so pairwise gradients start tiny)
# get the larger step LR gets too; everything else trains at the small-size default 3e-3.
EXTRA = {"fm": {"lr": 1e-2}, "autoint": {"num_layers": 1}}  # one interacting layer keeps AutoInt+ fast


def test_the_issue_zoo_is_registered():
    assert set(CTR_MODELS) >= {"lr", "fm", "wide_deep", "deepfm", "dcn", "dcnv2", "xdeepfm", "autoint", "ipnn",
                               "finalmlp", "xcrossnet"}


@pytest.fixture(scope="module")
def data():
    return planted()


def train_and_test(name, dm, **extra):
    pl.seed_everything(0, verbose=False)
    cls = MODELS.get(name).cls
    model = cls(**dm.model_kwargs(), **small_kwargs(cls, **extra))
    trainer = fast_trainer(max_epochs=EPOCHS, limit_val_batches=0)
    trainer.fit(model, datamodule=dm)
    return trainer.test(model, datamodule=dm, verbose=False)[0]


@pytest.fixture(scope="module")
def lr_auc(data):
    return train_and_test("lr", data, lr=1e-2)["test/auc"]


@pytest.mark.parametrize("name", CTR_MODELS)
def test_smoke_forward_backward_and_search_space(name):
    import optuna

    cls = MODELS.get(name).cls
    model = cls(field_dims=[4, 6, 3], num_dense=2, **small_kwargs(cls))
    batch = {B.DENSE: torch.randn(7, 2), B.SPARSE: torch.randint(0, 3, (7, 3)), B.LABEL: torch.randint(0, 2, (7,)).float()}
    logits = model(batch[B.DENSE], batch[B.SPARSE])
    assert logits.shape == (7,) and torch.isfinite(logits).all()
    torch.nn.functional.binary_cross_entropy_with_logits(logits, batch[B.LABEL]).backward()
    assert any(p.grad is not None for p in model.parameters())
    params = cls.search_space(optuna.trial.FixedTrial(_first_choices(cls)))
    assert isinstance(params, dict) and params
    cls(field_dims=[4, 6, 3], num_dense=2, **{**small_kwargs(cls), **{k: v for k, v in params.items()
                                                                        if k not in ("num_heads",)}})


def _first_choices(cls):
    """Record the first suggestion of each parameter by running the space once on a throwaway study."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study()
    trial = study.ask()
    cls.search_space(trial)
    return trial.params


@pytest.mark.parametrize("name", [n for n in CTR_MODELS if n != "lr"])
def test_beats_lr_on_planted_crosses(name, data, lr_auc):
    auc = train_and_test(name, data, **EXTRA.get(name, {}))["test/auc"]
    assert auc > lr_auc + 0.03, f"{name}: test AUC {auc:.4f} vs LR {lr_auc:.4f}"


def test_xdeepfm_cin_fields_choose_what_the_cin_reads():
    """cin_fields="categorical" (DeepCTR-Torch's CIN) reads only the categorical embeddings: changing the numeric
    inputs leaves the CIN's logit alone and still moves the DNN's; "all" feeds the numeric fields to the CIN too."""
    from lightning_modules.ctr.xdeepfm import XDeepFM

    torch.manual_seed(0)
    kwargs = dict(field_dims=[5, 7, 3], num_dense=2, embed_dim=4, cin_layer_units=[4, 4], hidden_units=[8])
    sparse = torch.randint(0, 3, (6, 3))
    dense, moved = torch.randn(6, 2), torch.randn(6, 2)
    for cin_fields, cin_moves in (("categorical", False), ("all", True)):
        model = XDeepFM(**kwargs, cin_fields=cin_fields)
        assert model.interaction.cin.convs[0].in_channels == (9 if cin_fields == "categorical" else 25)
        before = model.interaction(dense, model.fields(dense, sparse))
        after = model.interaction(moved, model.fields(moved, sparse))
        assert torch.allclose(before[:, 0], after[:, 0]) != cin_moves  # column 0: the CIN's logit
        assert not torch.allclose(before[:, 1], after[:, 1])  # column 1: the DNN's
    with pytest.raises(ValueError, match="cin_fields"):
        XDeepFM(**kwargs, cin_fields="dense")
