"""Negative samplers for two-tower retrieval, each a proposal distribution with its log expected counts.

Every draw comes with `log_q`, the log of how many times the proposal is expected to draw that item for this
batch (for a batch-shared draw of m items with probability q_i each: log(m q_i)). Sampled softmax subtracts it from
the logits (logQ correction; Bengio & Senecal 2008, Yi et al. 2019), which makes the sampled loss's gradient an
estimate of the full softmax's; `log_q` is None for negatives that no proposal describes (mined or synthetic).

Samplers:
- `uniform` (UNS): m items uniformly from the catalogue, shared by the batch.
- `popularity` (PNS): m items with probability proportional to count^alpha (word2vec's unigram^0.75), shared.
- `in_batch`: the batch's own positives as negatives for every other row (Covington et al. 2016; Yi et al.
  2019); their proposal is the training-target frequency.
- `mixed` (MNS; Yang et al., WWW 2020 companion): the in-batch positives plus m uniform items; each draw is
  corrected by the mixture's expected count B p_i + m / N.
- `hard`: uniform negatives plus, per row, `num_hard` items drawn from ranks [hard_skip, hard_pool) of the user's
  scores against an item index refreshed every epoch (a stale-index miner in the manner of ANCE/DNS).
- `esans_msac`: ESANS's semantic-aware sampling over the MSAC codebooks, per positive: `m_c` items of the same
  primary cluster but another secondary cell ("close": semantically near, rarely the same item), and `m_o` items of
  other primary clusters, the cluster drawn with probability proportional to exp(-||c_i - c_j||^2 / tau) over
  primary centroids and the item uniformly within it. The exact distribution of the paper is not public (see the
  model's docstring); these are the reconstruction's definitions, and `log_q` is exact for them.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from lightning_modules.retrieval.clustering import Codebooks


@dataclass
class Negatives:
    ids: torch.Tensor  # [m] shared by the batch, or [B, m] per row
    log_q: torch.Tensor | None  # same shape, or None: not corrected

    @property
    def shared(self) -> bool:
        return self.ids.dim() == 1


def uniform(num_items: int, m: int, device=None) -> Negatives:
    ids = torch.randint(1, num_items + 1, (m,), device=device)
    return Negatives(ids, torch.full((m,), float(torch.log(torch.tensor(m / num_items))), device=device))


def popularity_probs(count: torch.Tensor, alpha: float) -> torch.Tensor:
    """[N+1] the popularity proposal: count^alpha normalised, padding 0. Items never seen in training get the
    smallest observed count's weight, so every item can be drawn (and its logQ stays finite)."""
    c = count.double().clone()
    c[0] = 0
    floor = c[1:][c[1:] > 0].min() if (c[1:] > 0).any() else torch.tensor(1.0, dtype=torch.double)
    c[1:] = torch.where(c[1:] > 0, c[1:], floor)
    w = c.pow(alpha)
    w[0] = 0
    return (w / w.sum()).float()


def popularity(probs: torch.Tensor, m: int) -> Negatives:
    ids = torch.multinomial(probs, m, replacement=True)
    return Negatives(ids, torch.log(m * probs[ids]))


def in_batch(targets: torch.Tensor, frequency: torch.Tensor) -> Negatives:
    """The batch's positives, shared; `frequency` [N+1] is each item's share of training targets."""
    return Negatives(targets, torch.log(targets.shape[0] * frequency[targets]).clamp_min(-30.0))


def mixed(targets: torch.Tensor, frequency: torch.Tensor, num_items: int, m: int) -> Negatives:
    ids = torch.cat([targets, torch.randint(1, num_items + 1, (m,), device=targets.device)])
    expected = targets.shape[0] * frequency[ids] + m / num_items
    return Negatives(ids, torch.log(expected))


def hard_from_index(user: torch.Tensor, index: torch.Tensor, targets: torch.Tensor, num_hard: int, pool: int,
                    skip: int) -> Negatives:
    """Per row, `num_hard` items drawn uniformly from ranks [skip, pool) of user @ index^T (the positive and the
    padding id excluded). `index` [N+1, d] is the item table of the last refresh."""
    scores = user @ index.T
    scores[:, 0] = float("-inf")
    scores.scatter_(1, targets.unsqueeze(1), float("-inf"))
    pool = min(pool, scores.shape[1] - 1)
    skip = min(skip, pool - 1)
    top = scores.topk(pool, dim=1).indices[:, skip:]
    pick = torch.randint(0, top.shape[1], (top.shape[0], num_hard), device=top.device)
    return Negatives(top.gather(1, pick), None)


def cluster_transition(centroids: torch.Tensor, tau: float) -> torch.Tensor:
    """[K1, K1] P(other cluster j | cluster i) proportional to exp(-||c_i - c_j||^2 / tau), zero on the diagonal."""
    logits = -torch.cdist(centroids, centroids).pow(2) / tau
    logits.fill_diagonal_(float("-inf"))
    if centroids.shape[0] == 1:
        return torch.ones(1, 1)  # a single cluster: "other" falls back to itself
    return torch.softmax(logits, dim=1)


def esans_msac(targets: torch.Tensor, books: Codebooks, transition: torch.Tensor, m_c: int,
               m_o: int) -> tuple[Negatives, Negatives]:
    """(close [B, m_c], other [B, m_o]) negatives per positive, with exact log expected counts.

    A positive whose primary cluster has a single cell has no "close" items; its close draws come from the whole
    primary cluster instead (its own cell included, the positive masked later as an accidental hit)."""
    B = targets.shape[0]
    device = targets.device
    p = books.primary[targets]
    c = books.cell[targets]
    p_start, p_size = books.primary_start[p], books.primary_size[p]
    c_start, c_size = books.cell_start[c], books.cell_size[c]
    outside = p_size - c_size  # items of the primary cluster outside the positive's cell
    has_close = outside > 0
    span = torch.where(has_close, outside, p_size).unsqueeze(1)
    r = (torch.rand(B, m_c, device=device) * span).long().clamp_max(span - 1)
    pos_in_order = p_start.unsqueeze(1) + r
    skip_cell = has_close.unsqueeze(1) & (pos_in_order >= c_start.unsqueeze(1))
    pos_in_order = pos_in_order + torch.where(skip_cell, c_size.unsqueeze(1), torch.zeros_like(pos_in_order))
    close_ids = books.order[pos_in_order]
    close = Negatives(close_ids, torch.log(m_c / span.float()).expand(B, m_c))

    j = torch.multinomial(transition[p], m_o, replacement=True)  # [B, m_o] other clusters
    j_start, j_size = books.primary_start[j], books.primary_size[j]
    r = (torch.rand(B, m_o, device=device) * j_size).long().clamp_max(j_size - 1)
    other_ids = books.order[j_start + r]
    log_q = torch.log(m_o * transition[p.unsqueeze(1), j] / j_size.float())
    return close, Negatives(other_ids, log_q)


def interpolate_negatives(neg: torch.Tensor, m_o: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """EDIS simple interpolation: for each k in 2..m_o, k virtual negatives, each a convex combination (flat
    Dirichlet weights) of k distinct negatives of the row. neg [B, m, d] -> [B, (m_o + 2)(m_o - 1) / 2, d]."""
    B, m, _ = neg.shape
    out = []
    for k in range(2, m_o + 1):
        k_eff = min(k, m)
        keys = torch.rand(B, k, m, device=neg.device, generator=generator)
        pick = keys.argsort(dim=-1)[..., :k_eff]  # [B, k, k_eff] distinct negatives per virtual one
        weights = -torch.log(torch.rand(B, k, k_eff, device=neg.device, generator=generator).clamp_min(1e-12))
        weights = weights / weights.sum(-1, keepdim=True)
        chosen = neg.gather(1, pick.reshape(B, -1, 1).expand(-1, -1, neg.shape[-1])).reshape(B, k, k_eff, -1)
        out.append((weights.unsqueeze(-1) * chosen).sum(2))
    return torch.cat(out, dim=1)


def interpolate_with_positive(neg: torch.Tensor, pos: torch.Tensor, lam: float) -> torch.Tensor:
    """EDIS hard interpolation: n + lam (e_pos - n) for each negative n [B, m, d] of positive pos [B, d]; lam > 0
    moves a negative towards the positive (harder), lam < 0 away from it."""
    return neg + lam * (pos.unsqueeze(1) - neg)
