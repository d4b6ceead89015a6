"""The classic rerankers against brute force, and every reranker's output is a permutation of the same candidates."""
import itertools

import pytest
import torch

import lightning_modules  # noqa: F401
from contracts.batch import rerank as B
from contracts.registry import MODELS
from lightning_modules.rerank.base import alpha_ndcg_at_k, list_relevance, mad
from lightning_modules.rerank.dpp import dpp_kernel, fast_greedy_map
from lightning_modules.rerank.mmr import genre_cosine, mmr_order

CLASSIC = ["gmf", "random_order", "mmr", "dpp", "fairrec", "prm", "dlcm"]
DIMS = dict(num_users=7, num_items=40, num_genres=5, num_candidates=8, history_len=4, eval_k=5)


def random_batch(batch=6, n=8, items=40, genres=5, history=4, seed=0) -> dict:
    g = torch.Generator().manual_seed(seed)
    candidates = torch.stack([torch.randperm(items, generator=g)[:n] + 1 for _ in range(batch)])
    scores = torch.randn(batch, n, generator=g).sort(-1, descending=True).values
    item_genres = (torch.rand(items + 1, genres, generator=g) < 0.35).float()
    item_genres[1:, 0] += (item_genres[1:].sum(-1) == 0).float()  # every item has a genre
    item_genres[0] = 0
    hist = torch.randint(0, items + 1, (batch, history), generator=g)
    target = torch.randint(-1, n, (batch,), generator=g)
    relevance = torch.zeros(batch, n)
    relevance[target >= 0, target[target >= 0]] = 1.0
    return {B.USER: torch.arange(batch), B.HISTORY: hist, B.HISTORY_GENRES: item_genres[hist],
            B.CANDIDATES: candidates, B.SCORES: scores, B.GENRES: item_genres[candidates],
            B.GROUP: torch.randint(0, 2, (batch, n), generator=g), B.TARGET_POS: target, B.RELEVANCE: relevance}


def brute_force_mmr(rel: list[float], sim: list[list[float]], lam: float) -> list[int]:
    placed: list[int] = []
    while len(placed) < len(rel):
        best, best_value = None, None
        for i in range(len(rel)):
            if i in placed:
                continue
            value = lam * rel[i] - (1 - lam) * max([sim[i][j] for j in placed], default=0.0)
            if best_value is None or value > best_value + 1e-12:
                best, best_value = i, value
        placed.append(best)
    return placed


@pytest.mark.parametrize("lam", [0.0, 0.3, 0.7, 1.0])
def test_mmr_matches_brute_force(lam):
    batch = random_batch(seed=1)
    rel, sim = list_relevance(batch[B.SCORES]), genre_cosine(batch[B.GENRES])
    ours = mmr_order(rel, sim, lam)
    for b in range(rel.shape[0]):
        assert ours[b].tolist() == brute_force_mmr(rel[b].tolist(), sim[b].tolist(), lam)
    if lam == 1.0:  # relevance only: the ranker's order
        assert torch.equal(ours, torch.arange(8).expand_as(ours))


def brute_force_greedy_logdet(kernel: torch.Tensor) -> list[int]:
    """Greedy MAP by determinants: each step the item whose addition gives the largest log det."""
    L = kernel.double()
    placed: list[int] = []
    for _ in range(L.shape[0]):
        values = {i: torch.linalg.slogdet(L[placed + [i]][:, placed + [i]]) for i in range(L.shape[0])
                  if i not in placed}
        values = {i: (v.logabsdet.item() if v.sign > 0 else -float("inf")) for i, v in values.items()}
        best = max(values, key=lambda i: (values[i], -i))
        if values[best] == -float("inf"):
            break
        placed.append(best)
    return placed


@pytest.mark.parametrize("theta", [0.3, 0.7, 0.9])
def test_fast_greedy_dpp_matches_greedy_by_determinants(theta):
    g = torch.Generator().manual_seed(2)
    n, d = 7, 10  # feature rank above n: the kernel stays positive definite, every step is a determinant step
    relevance = torch.rand(3, n, generator=g)
    features = torch.rand(3, n, d, generator=g)
    kernel = dpp_kernel(relevance, features, theta)
    ours = fast_greedy_map(kernel, relevance)
    for b in range(3):
        assert ours[b].tolist() == brute_force_greedy_logdet(kernel[b])


def test_dpp_beyond_the_kernel_rank_falls_back_to_relevance():
    # two genres -> the similarity has rank <= 3: after that the order continues by relevance, still a permutation
    relevance = torch.tensor([[0.9, 0.8, 0.7, 0.6, 0.5, 0.4]])
    genres = torch.tensor([[[1, 0], [1, 0], [0, 1], [0, 1], [1, 0], [0, 1]]], dtype=torch.float32)
    order = fast_greedy_map(dpp_kernel(relevance, genres, 0.5), relevance)
    assert sorted(order[0].tolist()) == list(range(6))
    head = order[0, :2].tolist()
    assert head[0] == 0 and genres[0, head[1], 1] == 1  # the second pick switches genre
    assert order[0, 3:].tolist() == sorted(order[0, 3:].tolist())  # the rest in relevance order


def test_every_subset_shows_dpp_greedy_picks_a_diverse_pair():
    # a brute-force check of what greedy MAP aims at: its first two items have the largest det among the pairs
    # that contain its first item
    relevance = torch.tensor([[1.0, 0.95, 0.9, 0.2]])
    genres = torch.tensor([[[1, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1]]], dtype=torch.float32)
    kernel = dpp_kernel(relevance, genres, 0.6)[0].double()
    order = fast_greedy_map(kernel.unsqueeze(0), relevance)[0].tolist()
    first = order[0]
    dets = {j: torch.linalg.det(kernel[[first, j]][:, [first, j]]).item()
            for j in range(4) if j != first}
    assert order[1] == max(dets, key=dets.get) and order[1] == 2
    assert all(len(set(p)) == 2 for p in itertools.combinations(order[:2], 2))


@pytest.mark.parametrize("name", CLASSIC)
def test_every_reranker_returns_a_permutation_of_the_same_candidates(name):
    torch.manual_seed(0)
    model = MODELS.get(name).build(**DIMS).eval()
    batch = random_batch()
    order = model.rerank(batch)
    assert order.shape == batch[B.CANDIDATES].shape and order.dtype == torch.long
    assert torch.equal(order.sort(-1).values, torch.arange(8).expand_as(order))
    reranked = batch[B.CANDIDATES].gather(1, order)
    assert torch.equal(reranked.sort(-1).values, batch[B.CANDIDATES].sort(-1).values)


def test_each_classic_reranker_moves_its_own_metric():
    batch = random_batch(batch=64, seed=3)
    batch[B.GENRES] = torch.nn.functional.one_hot(torch.randint(0, 3, (64, 8)), 3).float()  # one genre per item
    identity = torch.arange(8).expand(64, 8)
    build = lambda name, **kw: MODELS.get(name).build(**DIMS, **kw)  # noqa: E731
    div = lambda order: alpha_ndcg_at_k(order, batch[B.GENRES], 5)[0].mean()  # noqa: E731
    unfair = lambda order: mad(order, batch[B.GROUP])[0][mad(order, batch[B.GROUP])[1]].mean()  # noqa: E731
    assert div(build("mmr", trade_off=0.3).rerank(batch)) > div(identity) + 0.02
    assert div(build("dpp", theta=0.3).rerank(batch)) > div(identity) + 0.02
    assert unfair(build("fairrec", fairness_weight=1.0).rerank(batch)) < 0.5 * unfair(identity)
    assert torch.equal(build("fairrec", fairness_weight=0.0).rerank(batch), identity)


def test_bad_trade_offs_are_clear_errors():
    with pytest.raises(ValueError, match="trade_off"):
        MODELS.get("mmr").build(**DIMS, trade_off=1.5)
    with pytest.raises(ValueError, match="theta"):
        MODELS.get("dpp").build(**DIMS, theta=1.0)
    with pytest.raises(ValueError, match="eval_k"):
        MODELS.get("gmf").build(**{**DIMS, "eval_k": 9})


def test_random_order_is_the_floor_below_the_rankers_order():
    """The rerank boards' trivial model: a fresh uniform permutation per list, so a ranker whose order puts the
    target first loses its accuracy under it, while diversity does not collapse to the ranker's."""
    batch = random_batch(batch=256, seed=4)
    batch[B.TARGET_POS] = torch.zeros(256, dtype=torch.long)  # the ranker's first candidate is the target
    torch.manual_seed(0)
    order = MODELS.get("random_order").build(**DIMS).rerank(batch)
    first_is_target = (order[:, 0] == 0).float().mean().item()
    assert 0.06 < first_is_target < 0.2  # about 1/8, where the ranker's own order gets 1
    assert len({tuple(o) for o in order.tolist()}) > 250  # lists are shuffled independently
