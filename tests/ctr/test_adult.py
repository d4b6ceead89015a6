"""A model trained on the real Adult data reaches test AUC > 0.88 within its default budget."""
import lightning.pytorch as pl

from datamodules.ctr.adult import Adult
from lightning_modules.ctr.xcrossnet import XCrossNet
from tests.conftest import fast_trainer


def test_xcrossnet_on_adult_beats_0_88_auc(shared_data):
    pl.seed_everything(0, verbose=False)
    dm = Adult(data_dir=str(shared_data), batch_size=512)
    dm.setup()
    model = XCrossNet(**dm.model_kwargs())  # the paper's settings: embedding 20, MLP 400-400, L2 1e-4
    trainer = fast_trainer(max_epochs=2, limit_val_batches=0)
    trainer.fit(model, datamodule=dm)
    test = trainer.test(model, datamodule=dm, verbose=False)[0]
    assert test["test/auc"] > 0.88, test
    assert test["test/logloss"] < 0.36, test
