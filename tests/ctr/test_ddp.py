"""AUC and logloss are identical under 1 and 2 processes: BinaryAUROC gathers every score and label, MeanMetric
syncs sums and counts, and the eval sampler neither duplicates nor drops a row. CPU `ddp_spawn` (gloo) stands in
for multi-GPU DDP."""
import pytest
import torch

from datamodules.ctr.synthetic import SyntheticCTR
from lightning_modules.ctr.xcrossnet import XCrossNet
from tests.conftest import fast_trainer

SMALL = dict(embed_dim=4, hidden_units=[16])


@pytest.mark.slow  # two process spawns: ~30-60 s on the shared 2-core box
@pytest.mark.timeout(300)
def test_two_process_evaluation_equals_one_process(tmp_path):
    # 1001 rows -> a 101-row test split: odd, so a padding sampler would count one row twice on the second rank.
    dm = SyntheticCTR(rows=1001, num_dense=3, num_sparse=4, cross_pairs=1, vocab_scale=0.1, max_vocab=20,
                      eval_batch_size=32, batch_size=128)
    dm.setup()
    assert len(dm.test_set) % 2 == 1
    torch.manual_seed(0)
    model = XCrossNet(**dm.model_kwargs(), **SMALL)
    trainer = fast_trainer(max_epochs=1, limit_val_batches=0)
    trainer.fit(model, datamodule=dm)
    checkpoint = tmp_path / "model.ckpt"
    trainer.save_checkpoint(checkpoint)

    single = fast_trainer().test(model, datamodule=dm, ckpt_path=str(checkpoint), verbose=False)[0]
    ddp = fast_trainer(devices=2, strategy="ddp_spawn").test(
        XCrossNet(**dm.model_kwargs(), **SMALL), datamodule=dm, ckpt_path=str(checkpoint), verbose=False)[0]
    assert set(single) == set(ddp) == {"test/auc", "test/logloss"}
    for key in single:
        assert abs(single[key] - ddp[key]) <= 1e-6, (key, single[key], ddp[key])
