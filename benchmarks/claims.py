"""Claims and verdicts: a paper's headline statements written as data, checked against run records.

A claim is one of four kinds (plus `not_testable`, a claim we cannot check on this machine, with its reason):

- `beats`: the paper's method (`method`) is better than each of `baselines` on `metric` by more than `margin`
  (in the board's direction, or the claim's `direction`);
- `matches`: our `method` row reproduces a published number (`value`, else the board's `published` entry for that
  row and metric) within `tolerance` (else the board's tolerance for the metric);
- `ordering`: `metric` improves along `rows` (a trend, such as quality growing with the number of blocks);
- `property`: `metric` of `method` satisfies `op` (`<=` or `>=`) against `value` (realised FDR <= alpha, say).

The verdict comes from run records only, by one rule (`RULE`, printed on the claims page): per row, the board's
finished runs, per seed the one given the largest epoch cap (the newest among equals). A 95% Welch t-interval of
the difference of means over seeds (a one-sample t-interval for `matches` and `property`) decides: the interval
entirely on the claim's side of the margin or threshold is **reproduced**, entirely on the other side **not
reproduced**, and straddling it **inconclusive**. A check is inconclusive by rule when its rows were trained on
different preprocessed data (their data hashes differ), when a row has fewer than two seeds or fewer seeds than
its board asks, when a row has not learned (it does not beat the board's `trivial_model`), when a row was
stopped by its epoch cap while still improving, or when its runs were trained under arguments the board no longer
sets (`stale_arguments`). One exception: a `beats` claim whose method can decide is not
reproduced when it loses significantly to a baseline that can decide too, whatever keeps the other baselines from
deciding (not run, too few seeds, not learned, still improving): a claim to beat every baseline fails on the one it
loses to. A claim whose rows have no records says so (inconclusive: not
run); a claim on a metric the board does not record is not testable here until the board measures it. A straddling
interval's evidence estimates how many seeds per row would decide it (`seeds_to_decide`).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from benchmarks.boards import Board, Claim, ConfigError, load_board, published_metric
from benchmarks.records import (longest_budget_per_seed, md_table, record_value, settings_key, stale_arguments,
                                still_improving)

VERDICTS = ("reproduced", "not reproduced", "inconclusive", "not testable here")
CONFIDENCE = 0.95
RULE = (f"Verdicts are computed from run records only. Per row: the board's finished runs, per seed the one given "
        f"the largest epoch cap (newest among equals). `beats` and `ordering` use a {CONFIDENCE:.0%} Welch t-interval "
        f"of the difference of means over seeds; `matches` and `property` a {CONFIDENCE:.0%} t-interval of our mean. "
        f"Interval entirely on the claim's side of its margin, tolerance or threshold: reproduced; entirely on the "
        f"other side: not reproduced; straddling it: inconclusive. Inconclusive by rule: rows trained on different "
        f"preprocessed data (data hashes), a row with fewer than 2 seeds or fewer seeds than its board asks, a row "
        f"that does not beat the board's trivial model, a row stopped by its epoch cap while still improving, a row "
        f"whose runs were trained under arguments the board no longer sets (its model or dataset arguments changed "
        f"since); but a "
        f"`beats` claim is not reproduced when its method loses significantly to a baseline, both free of these "
        f"conditions, whatever keeps the other baselines from deciding (a claim to beat every baseline fails on the "
        f"one it loses to). `ordering` is reproduced when the last row beats the first "
        f"and no step of the sequence is a significant reversal; one significant reversal makes it not reproduced. "
        f"A straddling interval's evidence says how many seeds per row would decide it, and which way, were the "
        f"observed means and spreads the true ones (an estimate: a gap that is noise needs more).")


@dataclass
class RowStats:
    row: str
    values: list[float]
    seeds: list[int]
    still_improving: bool = False
    data_hashes: frozenset = frozenset()
    needs_llm: bool = False  # the row prompts a language model and ran without one
    stale: tuple[str, ...] = ()  # arguments the board now sets that its runs were not trained with

    @property
    def n(self) -> int:
        return len(self.values)

    @property
    def mean(self) -> float:
        return float(np.mean(self.values)) if self.values else math.nan

    @property
    def std(self) -> float:
        return float(np.std(self.values, ddof=1)) if self.n > 1 else math.nan

    def describe(self) -> str:
        if not self.values:
            return f"{self.row}: no finished runs"
        std = "" if math.isnan(self.std) else f" ± {self.std:.4f}"
        return f"{self.row} {self.mean:.4f}{std} (n={self.n})"


@dataclass
class Verdict:
    claim: Claim
    verdict: str
    why: str  # one line: the rule that decided
    evidence: list[str] = field(default_factory=list)  # rows' means, differences and intervals
    published: list[str] = field(default_factory=list)


# ----- statistics ----------------------------------------------------------------------------------------------
def _t_quantile(df: float) -> float:
    from scipy.stats import t

    return float(t.ppf(0.5 + CONFIDENCE / 2, df))


def mean_interval(values: list[float]) -> tuple[float, float]:
    """t-interval of the mean; needs at least two values."""
    x = np.asarray(values, dtype=float)
    half = _t_quantile(len(x) - 1) * x.std(ddof=1) / math.sqrt(len(x))
    return float(x.mean() - half), float(x.mean() + half)


def welch_interval(a: list[float], b: list[float]) -> tuple[float, float]:
    """Welch t-interval of mean(a) - mean(b); each side needs at least two values."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    va, vb = a.var(ddof=1) / len(a), b.var(ddof=1) / len(b)
    diff, se = a.mean() - b.mean(), math.sqrt(va + vb)
    if se == 0.0:
        return float(diff), float(diff)
    df = (va + vb) ** 2 / (va ** 2 / (len(a) - 1) + vb ** 2 / (len(b) - 1))
    half = _t_quantile(df) * se
    return float(diff - half), float(diff + half)


def seeds_to_decide(a: list[float], b: list[float] | None, threshold: float, most: int = 100) -> int | None:
    """Seeds per row at which the interval would clear `threshold`, were the observed gap and spreads the true ones
    (a plug-in estimate: the gap is itself noisy): the Welch interval of mean(a) - mean(b) against a margin, or with
    `b` None the t-interval of mean(a) against a tolerance edge. None beyond `most` seeds or with no gap."""
    a = np.asarray(a, dtype=float)
    va, vb = a.var(ddof=1), (np.var(b, ddof=1) if b is not None else 0.0)
    gap = abs(a.mean() - (np.mean(b) if b is not None else 0.0) - threshold)
    if gap == 0.0:
        return None
    for n in range(2, most + 1):
        df = (n - 1) * (va + vb) ** 2 / (va ** 2 + vb ** 2) if va + vb else n - 1
        if _t_quantile(df) * math.sqrt((va + vb) / n) < gap:
            return n
    return None


SEEDS_TO_DECIDE = "seeds per row that would decide, were the observed means and spreads the true ones"


def _seeds_and_way(n: int | None, for_the_claim: bool) -> str:
    return f"{n} ({'for' if for_the_claim else 'against'})" if n else "more than 100"


def side(interval: tuple[float, float], threshold: float) -> str:
    """'above' when the whole interval is above threshold, 'below' when below, else 'straddles'."""
    lo, hi = interval
    if lo > threshold:
        return "above"
    if hi < threshold:
        return "below"
    return "straddles"


# ----- records -> rows -----------------------------------------------------------------------------------------
def row_stats(board: Board, records: list[dict], row: str, metric: str) -> RowStats:
    """The row's default-configuration runs; a claim on tuned rows passes only tuned records (`evaluate`)."""
    runs = longest_budget_per_seed([r for r in records if r.get("board") == board.name and r.get("model") == row
                                    and r.get("status") == "ok"])
    # one configuration per row (epoch caps aside, see longest_budget_per_seed): a row re-run under other settings
    # is the group trained under the board's current arguments, then the one with the most seeds, the newest among
    # equals, never a mix of groups
    groups: dict[str, list[dict]] = {}
    for r in runs:
        groups.setdefault(settings_key(r), []).append(r)
    stale = {key: tuple(dict.fromkeys(a for r in g for a in stale_arguments(board, r))) for key, g in groups.items()}
    chosen = max(groups, key=lambda k: (not stale[k], len(groups[k]), max(r["created_at"] for r in groups[k])),
                 default=None)
    runs = sorted(groups.get(chosen, []), key=lambda r: r["seed"])
    values = [record_value(r, metric) for r in runs]
    keep = [i for i, v in enumerate(values) if not math.isnan(v)]
    return RowStats(row=row, values=[values[i] for i in keep], seeds=[runs[i]["seed"] for i in keep],
                    still_improving=any(still_improving(board, r) for r in runs),
                    data_hashes=frozenset(runs[i].get("data_hash") for i in keep if runs[i].get("data_hash")),
                    stale=stale.get(chosen, ()),
                    needs_llm=any(r.get("board") == board.name and r.get("model") == row
                                  and r.get("status") == "needs_llm" for r in records))


def _metric_recorded(board: Board, records: list[dict], metric: str) -> bool:
    return any(not math.isnan(record_value(r, metric)) for r in records
               if r.get("board") == board.name and r.get("status") == "ok")


def _readiness(board: Board, rows: list[RowStats], trivial: RowStats | None, records: list[dict],
               quality: bool = True) -> str | None:
    """Why these rows cannot decide the claim yet (None when they can). The epoch-cap check applies to quality
    metrics, not to cost fields such as seconds per epoch. Whether a row has learned is judged on the board's
    primary metric against the trivial model, whatever the claim's metric (area or runtime included)."""
    asked = len(board.seeds)
    for s in rows:
        if s.n == 0 and s.needs_llm:
            return (f"needs an LLM: {s.row} prompts a language model and ran without one on {board.name} "
                    f"(`paperboard run {board.name} --llm SPEC`)")
        if s.n == 0:
            return f"not run: {s.row} has no finished runs on {board.name}"
    for s in rows:
        if s.stale:
            return (f"{s.row}'s runs were trained under arguments the board no longer sets ({'; '.join(s.stale)}): "
                    f"`paperboard run {board.name} --models {s.row}` trains the current ones")
    hashes = frozenset().union(*(s.data_hashes for s in rows))
    if len(hashes) > 1:
        return (f"not comparable: the rows were trained on different preprocessed data (data hashes "
                f"{', '.join(sorted(hashes))})")
    for s in rows:
        if s.n < 2 or s.n < asked:
            return (f"too few seeds: {s.row} has {s.n}; a verdict needs {max(2, asked)} (every seed the board asks, "
                    f"and at least 2)")
    if quality:
        for s in rows:
            if s.still_improving:
                return f"{s.row} was stopped by its epoch cap while still improving (`paperboard run --extend`)"
    if trivial is not None:
        for s in rows:
            why = _not_learned(board, records, s.row, trivial)
            if why:
                return why
    return None


def _not_learned(board: Board, records: list[dict], row: str, trivial: RowStats | None) -> str | None:
    """Why `row` has not learned (it does not beat the trivial model on the board's primary metric), else None."""
    means = _means_if_not_learned(board, records, row, trivial)
    if means is None:
        return None
    return (f"{row} has not learned: it does not beat the trivial model {trivial.row} on "
            f"{board.primary_metric} ({means[0]:.4f} vs {means[1]:.4f})")


def _means_if_not_learned(board: Board, records: list[dict], row: str,
                          trivial: RowStats | None) -> tuple[float, float] | None:
    """(row mean, trivial mean) on the primary metric when `row` does not beat the trivial model, else None."""
    if trivial is None or not trivial.n or row == trivial.row:
        return None
    sign = 1.0 if board.direction == "maximize" else -1.0
    primary = row_stats(board, records, row, board.primary_metric)
    if primary.n and sign * (primary.mean - trivial.mean) <= 0:
        return primary.mean, trivial.mean
    return None


def trivial_floor(board: Board, records: list[dict], tuned: bool) -> RowStats | None:
    """The trivial model's row a default (or tuned) row must beat to count as having learned: the tuned trivial
    row where a sweep tuned it, else the default one (a trivial model often has nothing to tune)."""
    if not board.trivial_model:
        return None
    stats = None
    for subset in ([r for r in records if bool(r.get("tuned")) == tuned], [r for r in records if not r.get("tuned")]):
        stats = row_stats(board, subset, board.trivial_model, board.primary_metric)
        if stats.n:
            break
    return stats


def rows_not_learned(board: Board, records: list[dict]) -> list[str]:
    """Every row (default and tuned) that does not beat the trivial model, as claims judge it, with both means."""
    sign = 1.0 if board.direction == "maximize" else -1.0
    out = []
    for tuned in (False, True):
        subset = [r for r in records if bool(r.get("tuned")) == tuned]
        trivial = trivial_floor(board, records, tuned)
        rows = dict.fromkeys(r["model"] for r in subset if r.get("board") == board.name and r.get("status") == "ok")
        gaps = [(row, means) for row in rows if (means := _means_if_not_learned(board, subset, row, trivial))]
        out += [f"{row} ({m:.4f} vs {t:.4f})" for row, (m, t) in sorted(gaps, key=lambda g: -sign * g[1][0])]
    return out


def _fmt_interval(iv: tuple[float, float]) -> str:
    return f"[{iv[0]:+.4f}, {iv[1]:+.4f}]"


# ----- evaluation ----------------------------------------------------------------------------------------------
def evaluate(claim: Claim, records: list[dict]) -> Verdict:
    if claim.kind == "not_testable":
        return Verdict(claim, "not testable here", claim.reason)
    board = load_board(claim.board)
    trivial = trivial_floor(board, records, claim.tuned)
    records = [r for r in records if bool(r.get("tuned")) == claim.tuned]  # default rows, or the tuned ones
    if not _metric_recorded(board, records, claim.metric):
        has_runs = any(r.get("board") == board.name and r.get("status") == "ok" for r in records)
        if has_runs:
            return Verdict(claim, "not testable here",
                           f"board {board.name} does not record {claim.metric!r} yet, so it cannot measure this claim")
        if claim.tuned:
            return Verdict(claim, "inconclusive", f"not run: board {board.name} has no finished tuned runs "
                           f"(`paperboard sweep {board.name} --all-models`, then `paperboard run {board.name} --tuned`)")
        return Verdict(claim, "inconclusive", f"not run: board {board.name} has no finished runs")
    direction = claim.direction or board.direction
    sign = 1.0 if direction == "maximize" else -1.0
    # a row that does not beat the trivial model has not learned; skipped when the claim is against that model
    if claim.kind not in ("beats", "ordering") or board.trivial_model in claim.baselines:
        trivial = None
    return {"beats": _beats, "matches": _matches, "ordering": _ordering, "property": _property}[claim.kind](
        claim, board, records, sign, trivial)


def _beats(claim, board, records, sign, trivial) -> Verdict:
    method = row_stats(board, records, claim.method, claim.metric)
    baselines = [row_stats(board, records, b, claim.metric) for b in claim.baselines]
    evidence, outcomes = [method.describe()], []
    for base in baselines:
        evidence.append(base.describe())
    quality = claim.metric in board.metrics
    blocked = _readiness(board, [method, *baselines], trivial, records, quality=quality)
    for base in baselines:
        if method.n and base.n:
            diff = sign * (method.mean - base.mean)
            # written so that a positive difference favours the method, whichever the metric's direction
            first, second = (claim.method, base.row) if sign > 0 else (base.row, claim.method)
            line = f"{first} - {second}: {diff:+.4f}"
            if method.n > 1 and base.n > 1:
                lo, hi = welch_interval(method.values, base.values)
                iv = (sign * lo, sign * hi) if sign > 0 else (sign * hi, sign * lo)
                line += f", {CONFIDENCE:.0%} interval {_fmt_interval(iv)}"
                outcomes.append((base.row, side(iv, claim.margin)))
            evidence.append(line)
    if trivial is not None and trivial.n:
        evidence.append(f"trivial model on {board.primary_metric}: {trivial.describe()}")
    if blocked:
        # "beats every baseline" is already refuted by one baseline that can decide (run at every seed, learned,
        # same data as the method) and is significantly better, whatever keeps the others from deciding
        why_not = {b.row: _readiness(board, [method, b], trivial, records, quality=quality) for b in baselines}
        lost = [b for b, s in outcomes if s == "below" and not why_not[b]]
        if lost:
            waiting = "; ".join(f"{row}: {why}" for row, why in why_not.items() if why)
            return Verdict(claim, "not reproduced",
                           f"{claim.method} is significantly not better than {', '.join(lost)} on {claim.metric} "
                           f"(the other rows cannot decide yet: {waiting})", evidence)
        return Verdict(claim, "inconclusive", blocked, evidence)
    lost = [b for b, s in outcomes if s == "below"]
    open_ = [b for b, s in outcomes if s == "straddles"]
    margin = f" by more than {claim.margin:g}" if claim.margin else ""
    if lost:
        return Verdict(claim, "not reproduced",
                       f"{claim.method} is significantly not better{margin} than {', '.join(lost)} on {claim.metric}",
                       evidence)
    if open_:
        needed = [(b.row, seeds_to_decide(method.values, b.values, sign * claim.margin),
                   sign * (method.mean - b.mean) > claim.margin) for b in baselines if b.row in open_]
        evidence.append(f"{SEEDS_TO_DECIDE}: " + "; ".join(f"{row} {_seeds_and_way(n, way)}" for row, n, way in needed))
        return Verdict(claim, "inconclusive",
                       f"the interval straddles the margin {claim.margin:g} against {', '.join(open_)}", evidence)
    return Verdict(claim, "reproduced", f"{claim.method} beats {', '.join(claim.baselines)}{margin} on "
                                        f"{claim.metric} (every interval above the margin)", evidence)


def _published_value(claim: Claim, board: Board) -> tuple[float | None, str]:
    if claim.value is not None:
        return claim.value, claim.source
    for p in board.published:
        if p.model == claim.method and p.metric == published_metric(claim.metric):
            return p.value, f"{p.source}" + (f"; paper's protocol: {p.protocol}" if p.protocol else "")
    return None, ""


def _matches(claim, board, records, sign, trivial) -> Verdict:
    value, source = _published_value(claim, board)
    tol = claim.tolerance if claim.tolerance is not None else board.tolerance.get(published_metric(claim.metric))
    if value is None or tol is None:
        raise ConfigError(f"claim {claim.id!r}: no published value or tolerance for {claim.method} {claim.metric} "
                          f"(give value/tolerance, or list it under the board's published/tolerance)")
    ours = row_stats(board, records, claim.method, claim.metric)
    published = [f"{claim.method} {claim.metric} = {value:.4f} ({source}); tolerance ±{tol:g}"]
    evidence = [ours.describe()]
    if ours.n:
        evidence.append(f"ours - published: {ours.mean - value:+.4f}"
                        + ("" if abs(ours.mean - value) <= tol else " (outside the tolerance)"))
    blocked = _readiness(board, [ours], None, records)
    if blocked:
        return Verdict(claim, "inconclusive", blocked, evidence, published)
    lo, hi = mean_interval(ours.values)
    lo, hi = lo - value, hi - value
    evidence.append(f"{CONFIDENCE:.0%} interval of ours - published: {_fmt_interval((lo, hi))}")
    if -tol <= lo and hi <= tol:
        return Verdict(claim, "reproduced", f"the whole interval lies within ±{tol:g} of the published number",
                       evidence, published)
    if lo > tol or hi < -tol:
        return Verdict(claim, "not reproduced", f"the whole interval lies outside ±{tol:g} of the published number",
                       evidence, published)
    edge = min((-tol, tol), key=lambda e: abs(ours.mean - value - e))  # the tolerance edge nearer the mean
    n = seeds_to_decide([v - value for v in ours.values], None, edge)
    evidence.append(f"{SEEDS_TO_DECIDE}: {_seeds_and_way(n, abs(ours.mean - value) <= tol)}")
    return Verdict(claim, "inconclusive", f"the interval straddles the tolerance ±{tol:g}", evidence, published)


def _ordering(claim, board, records, sign, trivial) -> Verdict:
    stats = [row_stats(board, records, r, claim.metric) for r in claim.rows]
    evidence = [" -> ".join(s.describe() for s in stats)]
    blocked = _readiness(board, stats, trivial, records)
    if blocked:
        return Verdict(claim, "inconclusive", blocked, evidence)

    def step(a: RowStats, b: RowStats) -> tuple[tuple[float, float], str]:
        lo, hi = welch_interval(b.values, a.values)
        iv = (lo, hi) if sign > 0 else (-hi, -lo)
        return iv, side(iv, claim.margin)

    reversals = []
    for a, b in zip(stats, stats[1:]):
        iv, s = step(a, b)
        evidence.append(f"{b.row} - {a.row}: {_fmt_interval(iv)}")
        if iv[1] < 0:
            reversals.append(f"{a.row} -> {b.row}")
    iv, overall = step(stats[0], stats[-1])
    evidence.append(f"{stats[-1].row} - {stats[0].row}: {_fmt_interval(iv)}")
    if reversals:
        return Verdict(claim, "not reproduced", f"significant reversal(s): {', '.join(reversals)}", evidence)
    if overall == "above":
        return Verdict(claim, "reproduced", f"{stats[-1].row} beats {stats[0].row} and no step reverses", evidence)
    if overall == "below":
        return Verdict(claim, "not reproduced", f"{stats[-1].row} is not better than {stats[0].row}", evidence)
    n = seeds_to_decide(stats[-1].values, stats[0].values, sign * claim.margin)
    way = sign * (stats[-1].mean - stats[0].mean) > claim.margin
    evidence.append(f"{SEEDS_TO_DECIDE}: {_seeds_and_way(n, way)}")
    return Verdict(claim, "inconclusive", f"{stats[-1].row} vs {stats[0].row}: the interval straddles the margin",
                   evidence)


def _property(claim, board, records, sign, trivial) -> Verdict:
    ours = row_stats(board, records, claim.method, claim.metric)
    evidence = [ours.describe() + f"; required {claim.metric} {claim.op} {claim.value:g}"]
    blocked = _readiness(board, [ours], None, records)
    if blocked:
        return Verdict(claim, "inconclusive", blocked, evidence)
    iv = mean_interval(ours.values)
    evidence.append(f"{CONFIDENCE:.0%} interval of the mean: {_fmt_interval(iv)}")
    s = side(iv, claim.value)
    holds, fails = ("below", "above") if claim.op == "<=" else ("above", "below")
    if s == holds:
        return Verdict(claim, "reproduced", f"the whole interval satisfies {claim.op} {claim.value:g}", evidence)
    if s == fails:
        return Verdict(claim, "not reproduced", f"the whole interval violates {claim.op} {claim.value:g}", evidence)
    n = seeds_to_decide(ours.values, None, claim.value)
    way = ours.mean <= claim.value if claim.op == "<=" else ours.mean >= claim.value
    evidence.append(f"{SEEDS_TO_DECIDE}: {_seeds_and_way(n, way)}")
    return Verdict(claim, "inconclusive", f"the interval straddles {claim.value:g}", evidence)


# ----- reports -------------------------------------------------------------------------------------------------
def paper_verdicts(paper, records: list[dict]) -> list[Verdict]:
    return [evaluate(c, records) for c in paper.claims]


def board_verdicts(board_name: str, records: list[dict]) -> list[tuple[str, Verdict]]:
    """(paper name, verdict) for every claim of every paper that is checked on this board."""
    from benchmarks.boards import load_paper, paper_names

    out = []
    for name in paper_names():
        for claim in load_paper(name).claims:
            if claim.board == board_name:
                out.append((name, evaluate(claim, records)))
    return out


def format_verdict(v: Verdict) -> str:
    c = v.claim
    where = f"board `{c.board}`" if c.board else "no board"
    rows = ", ".join(x for x in [c.method, *c.baselines, *c.rows] if x)
    lines = [f"[{v.verdict.upper()}] {c.id}: {c.text}",
             f"    source: {c.source}; checked on {where}" + (f", rows {rows}, metric {c.metric}" if rows else "")]
    lines += [f"    published: {p}" for p in v.published]
    lines += [f"    evidence: {e}" for e in v.evidence]
    lines += [f"    why: {v.why}"]
    if c.caveat:
        lines += [f"    caveat: {c.caveat}"]
    return "\n".join(lines)


def render_claims_markdown(papers: list, records: list[dict]) -> str:
    """The suite's headline page: every paper's claims with their verdicts, from the records."""
    results = [(p, paper_verdicts(p, records)) for p in papers]
    lines = ["# Claims and verdicts", "",
             "Does each paper's claim hold on our boards? Every verdict below is computed from the committed run "
             "records (`paperboard claims --records benchmarks/results/runs`), never typed in.", "",
             f"Rule: {RULE}", "", "## Summary", ""]
    header = ["paper", "claims", *VERDICTS]
    rows = []
    totals = dict.fromkeys(VERDICTS, 0)
    for paper, verdicts in results:
        counts = {k: sum(v.verdict == k for v in verdicts) for k in VERDICTS}
        for k in VERDICTS:
            totals[k] += counts[k]
        rows.append([f"[{paper.name}](#{paper.name})", str(len(verdicts)), *(str(counts[k]) for k in VERDICTS)])
    rows.append(["**all**", str(sum(len(v) for _, v in results)), *(f"**{totals[k]}**" for k in VERDICTS)])
    lines += [md_table(header, rows), ""]
    for paper, verdicts in results:
        lines += [f"## {paper.name}", "", f"{paper.title} ({paper.venue}, {paper.link})", ""]
        if not verdicts:
            lines += ["This paper lists no claims yet.", ""]
            continue
        lines += [md_table(["claim", "source", "board", "verdict", "evidence", "why"],
                           [[f"`{v.claim.id}`: {v.claim.text}" + (f" _Caveat: {v.claim.caveat}_" if v.claim.caveat else ""),
                             v.claim.source, f"`{v.claim.board}`" if v.claim.board else "-", f"**{v.verdict}**",
                             "; ".join(v.published + v.evidence) or "-", v.why] for v in verdicts]), ""]
    return "\n".join(lines)
