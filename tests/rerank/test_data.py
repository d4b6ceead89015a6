"""The rerank lists: unseen candidates in GMF's order, the held-out item where it belongs, the force_target switch,
the fairness groups, and no list whose target was a GMF training example."""
import numpy as np
import pytest
import torch

from contracts.batch import rerank as B
from datamodules.rerank import SyntheticRerank

SIZES = dict(num_users=50, num_items=50, num_genres=4, sequence_len=10, num_candidates=10, history_len=4,
             ranker_epochs=2, train_lists=2)


def setup(**kwargs) -> SyntheticRerank:
    dm = SyntheticRerank(**{**SIZES, **kwargs})
    dm.prepare_data()
    dm.setup("fit")
    return dm


@pytest.fixture(scope="module")
def dm():
    return setup()


def test_lists_hold_unseen_items_in_ranker_order_and_mark_the_target(dm):
    cat = dm._catalogue
    seq = cat.items.reshape(50, 10)
    for split, back in (("test", 1), ("val", 2)):
        s = getattr(dm, f"{split}_set").__getitems__(list(range(50)))
        cand, pos = s[B.CANDIDATES], s[B.TARGET_POS]
        assert (s[B.SCORES][:, 1:] <= s[B.SCORES][:, :-1]).all()
        for u in range(50):
            before = set(seq[u, : 10 - back].tolist())
            assert not before & set(cand[u].tolist()), "a candidate the user has already seen"
            assert len(set(cand[u].tolist())) == 10
            target = int(seq[u, 10 - back])
            assert (int(pos[u]) >= 0) == (target in cand[u].tolist())
            if pos[u] >= 0:
                assert cand[u, pos[u]] == target and s[B.RELEVANCE][u].sum() == 1
            assert s[B.HISTORY][u, -1] == seq[u, 9 - back]  # most recent item last
    train = dm.train_set.__getitems__(list(range(len(dm.train_set))))
    assert len(dm.train_set) == 100 and (train[B.USER].bincount() == 2).all()


def test_force_target_puts_the_held_out_item_in_every_list():
    forced = setup(force_target=True)
    s = forced.test_set.__getitems__(list(range(50)))
    assert (s[B.TARGET_POS] >= 0).all()
    plain = setup()
    recall = plain.describe()["ranker_recall_at_n"]["test"]
    assert recall < 1.0  # otherwise the switch would not matter here
    # a forced target that GMF did not rank in its top N takes the last slot (its score is the lowest)
    missing = plain.test_set.__getitems__(list(range(50)))[B.TARGET_POS] < 0
    assert (s[B.TARGET_POS][missing] == 9).all()


def test_fairness_groups_by_year_and_by_popularity(dm):
    years = dm._catalogue.years
    s = dm.test_set.__getitems__(list(range(50)))
    expected = torch.as_tensor(years[s[B.CANDIDATES].numpy()] >= 1996).long()
    assert torch.equal(s[B.GROUP], expected)
    popular = setup(fairness_groups="popularity", popular_fraction=0.2)
    groups = popular._prepare()["item_group"]
    assert groups[1:].sum() == 10 and "popular" in popular.group_names[1]
    counts = popular._prepare()["train_counts"]
    assert counts[groups == 1].min() >= counts[1:][groups[1:] == 0].max()


def test_the_ranker_never_trains_on_a_list_target():
    # every held-out target (test, val, train lists) lies after the ranker's training part of its user
    dm = setup()
    seq = dm._catalogue.items.reshape(50, 10)
    train = dm.train_set.__getitems__(list(range(len(dm.train_set))))
    first_list_target = 10 - 2 - dm.train_lists
    hist = train[B.HISTORY].numpy()
    for row in range(len(dm.train_set)):
        u = int(train[B.USER][row])
        last_seen = hist[row][hist[row] > 0][-1]
        assert np.where(seq[u] == last_seen)[0][0] >= first_list_target - 1


def test_bad_arguments_are_clear_errors():
    with pytest.raises(ValueError, match="fairness_groups"):
        SyntheticRerank(fairness_groups="gender")
    with pytest.raises(ValueError, match="must not exceed num_items"):
        SyntheticRerank(num_items=20, sequence_len=10, num_candidates=20)
