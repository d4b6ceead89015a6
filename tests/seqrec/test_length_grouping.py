"""`length_grouped`: batches of like-length rows trimmed of their all-padding columns. The trim must not change
any model's output, and grouping must still visit every row once per epoch."""
import pytest
import torch

import lightning_modules  # noqa: F401
from contracts.batch import seqrec as B
from contracts.registry import MODELS
from datamodules.seqrec.base import LengthGroupedBatchSampler, trim_left_padding
from datamodules.seqrec.synthetic import SyntheticAttributeSeqRec, SyntheticSeqRec
from tests.seqrec.test_models import LEARNERS, small_kwargs


@pytest.fixture(scope="module")
def attrs():
    dm = SyntheticAttributeSeqRec(num_users=200, max_len=20, min_length=4, max_length=20, seed=1, text_dim=8)
    dm.setup()
    return dm


def short_rows(split, n=16):
    """A batch of the shortest rows, so that most columns are padding in every row."""
    ids = split.tensors[B.INPUT_IDS]
    order = torch.argsort((ids != B.PAD).sum(1))[:n]
    return split.__getitems__(order.tolist())


@pytest.mark.parametrize("name", LEARNERS)
def test_trimming_leading_padding_leaves_every_model_output_unchanged(name, attrs):
    cls = MODELS.get(name).cls
    torch.manual_seed(0)
    kwargs = small_kwargs(cls, attrs.num_items, attrs.max_len)
    if "item_features" in cls.__init__.__code__.co_varnames:
        kwargs["item_features"] = True
    model = cls(**kwargs).eval()
    if getattr(model, "side_information", None) is not None:
        model.side.attach(attrs.item_features())
    batch = short_rows(attrs.train_set)
    trimmed = trim_left_padding(batch)
    dropped = batch[B.INPUT_IDS].shape[1] - trimmed[B.INPUT_IDS].shape[1]
    assert dropped > 5 and (batch[B.INPUT_IDS][:, :dropped] == B.PAD).all()
    with torch.no_grad():
        full, short = model.user_vectors(batch), model.user_vectors(trimmed)
        torch.testing.assert_close(full[:, dropped:], short, rtol=1e-4, atol=1e-5)
        evaluation = short_rows(attrs.val_set)
        assert trim_left_padding(evaluation)[B.INPUT_IDS].shape[1] < attrs.max_len
        torch.testing.assert_close(model.score_all(evaluation), model.score_all(trim_left_padding(evaluation)),
                                   rtol=1e-4, atol=1e-5)


def test_trim_keeps_one_column_of_an_all_padding_batch_and_leaves_a_full_batch_alone():
    empty = {B.INPUT_IDS: torch.zeros(3, 6, dtype=torch.long), B.TARGET: torch.ones(3, dtype=torch.long)}
    assert trim_left_padding(empty)[B.INPUT_IDS].shape == (3, 1)
    full = {B.INPUT_IDS: torch.ones(3, 6, dtype=torch.long)}
    assert trim_left_padding(full) is full


def test_grouped_batches_cover_every_row_once_and_are_homogeneous_in_length():
    lengths = torch.randint(1, 50, (1000,))
    sampler = LengthGroupedBatchSampler(range(1000), batch_size=32, drop_last=False, lengths=lengths,
                                        group_batches=8)
    batches = list(sampler)
    assert len(batches) == len(sampler) == 32
    assert sorted(i for b in batches for i in b) == list(range(1000))
    spread = torch.tensor([float(lengths[b].max() - lengths[b].min()) for b in batches]).mean()
    assert spread < 8  # a batch of 32 uniformly drawn rows spans about 45


def test_grouped_datamodule_trains_on_every_row_and_evaluates_every_user():
    dm = SyntheticSeqRec(num_users=300, num_items=60, max_len=20, min_length=3, max_length=25, seed=2,
                         batch_size=32, length_grouped=True)
    dm.setup()
    plain = SyntheticSeqRec(num_users=300, num_items=60, max_len=20, min_length=3, max_length=25, seed=2)
    plain.setup()
    assert dm.data_hash == plain.data_hash
    seen = sum(int((b[B.TARGET_IDS] != B.PAD).sum()) for b in dm.train_dataloader())
    assert seen == int((plain.train_set.tensors[B.TARGET_IDS] != B.PAD).sum())
    widths = [b[B.INPUT_IDS].shape[1] for b in dm.train_dataloader()]
    assert min(widths) < dm.max_len
    users = torch.cat([b[B.SAMPLE_IDX] for b in dm.test_dataloader()])
    assert sorted(users.tolist()) == list(range(dm.num_users))
    targets = torch.cat([b[B.TARGET] for b in dm.test_dataloader()])
    torch.testing.assert_close(targets, plain.test_set.tensors[B.TARGET][users])


def test_lightning_can_shard_the_grouped_batches_across_ranks():
    """Under DDP Lightning rebuilds a custom batch sampler around a DistributedSampler; each rank must still get
    like-length batches of its own shard."""
    from lightning.fabric.utilities.data import _replace_dunder_methods, _update_dataloader
    from torch.utils.data import BatchSampler, DataLoader, DistributedSampler, RandomSampler

    from datamodules.base import TensorBatchDataset

    data = TensorBatchDataset({B.INPUT_IDS: torch.randint(1, 5, (100, 10))})
    lengths = torch.randint(1, 10, (100,))
    with _replace_dunder_methods(DataLoader, "dataset"), _replace_dunder_methods(BatchSampler):
        loader = DataLoader(data, batch_sampler=LengthGroupedBatchSampler(RandomSampler(data), 8, False, lengths),
                            collate_fn=trim_left_padding)
    shards = [_update_dataloader(loader, DistributedSampler(data, num_replicas=2, rank=r, shuffle=False))
              for r in (0, 1)]
    rows = [sorted(i for b in shard.batch_sampler for i in b) for shard in shards]
    assert all(isinstance(s.batch_sampler, LengthGroupedBatchSampler) for s in shards)
    assert sorted(rows[0] + rows[1]) == list(range(100)) and not set(rows[0]) & set(rows[1])


def test_grouped_training_batches_weigh_each_target_as_plain_batches_do():
    """The loss scale is the batch's target count over the mean per batch: it averages 1 over an epoch, and a batch
    mean times it is the batch's loss sum over that mean."""
    dm = SyntheticSeqRec(num_users=300, num_items=60, max_len=20, min_length=3, max_length=25, seed=2,
                         batch_size=32, length_grouped=True)
    dm.setup()
    batches = list(dm.train_dataloader())
    scales = torch.stack([b[B.LOSS_SCALE] for b in batches])
    counts = torch.tensor([float((b[B.TARGET_IDS] != B.PAD).sum()) for b in batches])
    torch.testing.assert_close(scales.mean(), torch.tensor(1.0))
    torch.testing.assert_close(scales / scales.max(), counts / counts.max())
    assert scales.max() > 2 * scales.min()  # short and long batches do differ


@pytest.mark.parametrize("name", LEARNERS)
def test_every_model_multiplies_its_training_loss_by_the_batch_loss_scale(name, attrs):
    cls = MODELS.get(name).cls
    torch.manual_seed(0)
    model = cls(**small_kwargs(cls, attrs.num_items, attrs.max_len))
    model.log = lambda *args, **kwargs: None  # no Trainer attached
    batch = short_rows(attrs.train_set)
    losses = []
    for scale in (1.0, 2.5):
        torch.manual_seed(1)  # the same negatives, masks and dropout for both
        losses.append(model.training_step({**batch, B.LOSS_SCALE: torch.tensor(scale)}, 0))
    torch.testing.assert_close(losses[1], 2.5 * losses[0])
