"""A large-model transformer (HSTU, with its time bias) trains under 2-process CPU DDP (`ddp_spawn`, gloo), and its
evaluation under 2 processes equals 1 process within 1e-6."""
import pytest
import torch

from datamodules.seqrec.synthetic import SyntheticSeqRec
from lightning_modules.seqrec.hstu import HSTU
from tests.conftest import fast_trainer

KWARGS = dict(embed_dim=16, qk_dim=8, v_dim=8, num_blocks=2, num_heads=2, num_negatives=16, eval_ks=(10, 50))


@pytest.mark.slow  # two process spawns: ~1 min idle, 4 min on the shared 2-core box
@pytest.mark.timeout(600)
def test_hstu_trains_under_ddp_spawn_and_evaluates_as_one_process():
    dm = SyntheticSeqRec(num_users=301, num_items=60, max_len=12, seed=5, batch_size=64, eval_batch_size=64)
    dm.setup()
    torch.manual_seed(0)
    model = HSTU(num_items=dm.num_items, max_len=dm.max_len, **KWARGS)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    fast_trainer(max_epochs=1, devices=2, strategy="ddp_spawn").fit(model, datamodule=dm)
    trained = model.state_dict()  # ddp_spawn hands rank 0's weights back to this process
    assert any(not torch.equal(before[k], trained[k]) for k in before)

    single = fast_trainer().test(model, datamodule=dm, verbose=False)[0]
    copy = HSTU(num_items=dm.num_items, max_len=dm.max_len, **KWARGS)
    copy.load_state_dict(trained)
    ddp = fast_trainer(devices=2, strategy="ddp_spawn").test(copy, datamodule=dm, verbose=False)[0]
    assert single.keys() == ddp.keys() and "test/ndcg@10" in single
    for key in single:
        assert abs(single[key] - ddp[key]) <= 1e-6, (key, single[key], ddp[key])
