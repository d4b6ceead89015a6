"""Evaluation is identical under 1 and 2 processes: no sample is duplicated or dropped by the distributed sampler,
and the MeanMetric aggregators sync sums and counts. CPU `ddp_spawn` (gloo) stands in for multi-GPU DDP."""
import pytest
import torch

from datamodules.seqrec.synthetic import SyntheticSeqRec
from lightning_modules.seqrec.sasrec import SASRec
from tests.conftest import fast_trainer


@pytest.mark.timeout(300)
def test_two_process_evaluation_equals_one_process(tmp_path):
    # 301 users: an odd count, so a padding sampler would duplicate one user on the second rank.
    dm = SyntheticSeqRec(num_users=301, num_items=60, max_len=12, seed=5, eval_batch_size=64)
    dm.setup()
    torch.manual_seed(0)
    model = SASRec(num_items=dm.num_items, max_len=dm.max_len, embed_dim=16, loss="ce")
    trainer = fast_trainer(max_epochs=2)
    trainer.fit(model, datamodule=dm)
    checkpoint = tmp_path / "model.ckpt"
    trainer.save_checkpoint(checkpoint)

    single = fast_trainer().test(model, datamodule=dm, ckpt_path=str(checkpoint), verbose=False)[0]
    ddp = fast_trainer(devices=2, strategy="ddp_spawn").test(
        SASRec(num_items=dm.num_items, max_len=dm.max_len, embed_dim=16, loss="ce"), datamodule=dm,
        ckpt_path=str(checkpoint), verbose=False)[0]
    assert single.keys() == ddp.keys()
    for key in single:
        assert abs(single[key] - ddp[key]) <= 1e-6, (key, single[key], ddp[key])


def test_unpadded_sampler_covers_every_sample_once():
    from datamodules.base import UnpaddedDistributedSampler

    class Sized(torch.utils.data.Dataset):
        def __len__(self):
            return 11

    seen = []
    for rank in range(3):
        sampler = UnpaddedDistributedSampler(Sized(), num_replicas=3, rank=rank)
        seen += list(sampler)
        assert len(sampler) == len(list(sampler))
    assert sorted(seen) == list(range(11))
