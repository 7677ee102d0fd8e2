r"""The paper's synthetic experiments (section 3), vectorised across trials.

* :func:`simulate_threshold`: section 3.3, Table 1 and Figure 1. A budget of B labels, examples
  arriving one after another, each asked of labelers drawn without replacement until strategy 1
  of section 2.3 stops it (GTX and SV: confidence >= tau or kappa labels; MV and WMV: a fixed k).
* :func:`simulate_uncertainty`: section 3.4, Table 2 and Figure 2. A fixed set of examples, each
  labeled once, then always the example of highest uncertainty (equation 5) next, until the
  budget is spent.

Every posterior comes from :func:`gtx_stream.core.models.aggregate`, the code the aggregator
runs; the simulator only decides which labels each example gets, for all trials at once.

Randomness. Everything random in a trial (the labelers' accuracies, the true labels, the order
in which labelers are asked, their answers, the assessment set, the tie-breaks) is drawn up front
by :func:`draw` from a generator seeded by ``(seed, experiment, cohort, trial)``. Trial t is the
same whatever the number of trials, and :mod:`tests.offline.simulate_reference`, a per-label Python
loop of the same experiments, can replay exactly the same labels.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from enum import IntEnum
from typing import TypeVar

import numpy as np
from numpy.typing import NDArray

from gtx_stream.core.accuracy import Estimator, estimate_accuracy
from gtx_stream.core.decision import uncertainty
from gtx_stream.core.models import FloatArray, IntArray, Method, Posterior, aggregate

Int8Array = NDArray[np.int8]
_T = TypeVar("_T")

PAPER_TAUS: tuple[float, ...] = tuple(round(0.85 + 0.01 * i, 2) for i in range(15))
"""Section 3.3: tau swept over 0.85, 0.86, ..., 0.99."""

TABLE_ORDER = (Method.MV, Method.WMV, Method.SV, Method.GTX)
"""Methods in the order of the paper's tables."""


class Experiment(IntEnum):
    """Which experiment a generator belongs to (part of its seed)."""

    THRESHOLD = 1
    UNCERTAINTY = 2


@dataclass(frozen=True)
class Cohort:
    """A labeler cohort of section 3.2: each alpha_j ~ U(low, high)."""

    name: str
    low: float
    high: float
    key: int
    """Part of the seed, so that the two cohorts draw independent trials."""

    @property
    def title(self) -> str:
        kind = "More" if self.name == "accurate" else "Less"
        return f"{kind} accurate labelers (alpha_j ~ U({self.low:g}, {self.high:g}))"


ACCURATE = Cohort("accurate", 0.8, 1.0, key=1)
LESS_ACCURATE = Cohort("less_accurate", 0.6, 0.9, key=2)
COHORTS = (ACCURATE, LESS_ACCURATE)


@dataclass(frozen=True)
class Draws:
    """Everything random in one cohort's trials. Arrays are indexed [trial, example, slot].

    ``labeler[t, i, s]`` is the labeler asked s-th about example i (a draw without replacement,
    so a row never repeats a labeler), ``label[t, i, s]`` the answer that labeler gives.
    """

    accuracy: FloatArray
    """(trials, labelers): the true alpha_j."""
    assess_correct: IntArray
    """(trials, labelers): gold items answered right out of ``assess_size``."""
    assess_size: int
    truth: Int8Array
    """(trials, examples): the true labels y_i."""
    labeler: Int8Array
    """(trials, examples, slots)."""
    label: Int8Array
    """(trials, examples, slots)."""
    tie: FloatArray
    """(trials, len(Method), steps): uniforms that break ties in uncertainty sampling."""

    @property
    def shape(self) -> tuple[int, int, int]:
        t, m, s = self.label.shape
        return int(t), int(m), int(s)

    def accuracies(self, estimator: Estimator | str) -> FloatArray:
        """The alpha_j the methods are given: true, or estimated from the assessment set."""
        estimator = Estimator(estimator)
        if estimator is Estimator.TRUE:
            return self.accuracy
        if self.assess_size <= 0:
            raise ValueError(f"--accuracy {estimator.value} needs an assessment set (assess-size)")
        return estimate_accuracy(self.assess_correct, self.assess_size, estimator)


def _trial_rng(
    seed: int, experiment: Experiment, cohort: Cohort, trial: int
) -> np.random.Generator:
    return np.random.default_rng([seed, int(experiment), cohort.key, trial])


def _without_replacement(
    rng: np.random.Generator, labelers: int, shape: tuple[int, int]
) -> Int8Array:
    """For each of ``shape[0]`` examples, the first ``shape[1]`` labelers of a random order.

    Slot s draws r uniformly among the ``labelers - s`` labelers not asked yet and takes the
    r-th of them in increasing order.
    """
    n, slots = shape
    # floor(u * m) is uniform on 0..m-1 (u has 53 random bits), and cheaper than integers()
    nth = (rng.random((n, slots)) * (labelers - np.arange(slots))).astype(np.int64)
    picks = np.empty((n, slots), dtype=np.int64)
    if labelers <= _TABLE_LABELERS:
        table = _nth_free(labelers)
        asked = np.zeros(n, dtype=np.int64)  # bit j set: labeler j was asked
        for s in range(slots):
            picks[:, s] = table[asked, nth[:, s]]
            asked |= 1 << picks[:, s]
    else:
        for s in range(slots):
            x = nth[:, s].copy()
            for earlier in np.sort(picks[:, :s], axis=1).T:  # shift past earlier picks <= x
                x += earlier <= x
            picks[:, s] = x
    return picks.astype(np.int8)


_TABLE_LABELERS = 12


@functools.cache
def _nth_free(labelers: int) -> IntArray:
    """``table[asked, r]``: the r-th labeler (in increasing order) whose bit is not set in asked."""
    bits = (np.arange(1 << labelers)[:, None] >> np.arange(labelers)) & 1
    free_rank = np.cumsum(1 - bits, axis=1) - 1  # rank of each free labeler among the free
    table = np.zeros((1 << labelers, labelers), dtype=np.int64)
    mask, who = np.nonzero(bits == 0)
    table[mask, free_rank[mask, who]] = who
    return table


def draw(
    cohort: Cohort,
    *,
    trials: int,
    examples: int,
    slots: int,
    labelers: int = 10,
    seed: int = 0,
    assess_size: int = 0,
    tie_steps: int = 0,
    experiment: Experiment = Experiment.THRESHOLD,
    positive_rate: float = 0.5,
) -> Draws:
    """Draw ``trials`` independent trials of a cohort: labelers, examples, answers, gold items."""
    if not 1 <= slots <= labelers:
        raise ValueError(f"need 1 <= slots <= labelers, got {slots} slots for {labelers} labelers")
    if labelers > 127:
        raise ValueError("at most 127 labelers")
    acc = np.empty((trials, labelers))
    gold = np.empty((trials, labelers), dtype=np.int64)
    truth = np.empty((trials, examples), dtype=np.int8)
    who = np.empty((trials, examples, slots), dtype=np.int8)
    said = np.empty((trials, examples, slots), dtype=np.int8)
    tie = np.empty((trials, len(Method), tie_steps))
    for t in range(trials):
        rng = _trial_rng(seed, experiment, cohort, t)
        acc[t] = rng.uniform(cohort.low, cohort.high, size=labelers)
        y = (rng.random(examples) < positive_rate).astype(np.int8)
        truth[t] = y
        who[t] = _without_replacement(rng, labelers, (examples, slots))
        right = rng.random((examples, slots)) < acc[t][who[t]]
        said[t] = np.where(right, y[:, None], 1 - y[:, None])
        gold[t] = rng.binomial(assess_size, acc[t])
        tie[t] = rng.random((len(Method), tie_steps))
    return Draws(acc, gold, assess_size, truth, who, said, tie)


# ---------------------------------------------------------------------------------------------
# Results


def _mean_se(values: NDArray[np.float64]) -> tuple[float, float]:
    n = len(values)
    mean = float(values.mean())
    se = float(values.std(ddof=1) / np.sqrt(n)) if n > 1 else float("nan")
    return mean, se


@dataclass(frozen=True)
class Outcome:
    """One method at one setting (a tau or a fixed k), per trial."""

    cohort: str
    method: Method
    tau: float | None
    k: int | None
    n_labeled: IntArray
    """Examples that got at least one label."""
    labels_used: IntArray
    errors: IntArray
    """Labeled examples whose hard label is wrong."""
    abs_error: FloatArray
    """Sum over labeled examples of |y_i - P(y_i = 1 | L(i))|."""

    @property
    def avg_k(self) -> FloatArray:
        out: FloatArray = self.labels_used / self.n_labeled
        return out

    @property
    def error(self) -> FloatArray:
        out: FloatArray = self.errors / self.n_labeled
        return out

    @property
    def mae(self) -> FloatArray:
        out: FloatArray = self.abs_error / self.n_labeled
        return out

    def row(self, **extra: object) -> dict[str, object]:
        """Means over trials with their standard errors.

        ``avg_k`` is all labels over all labeled examples, B / mean(N) as in the paper's
        Table 1 (the mean of the per-trial ratios is a little larger); its standard error is
        the delta-method one of a ratio of means. ``n_labeled_se`` is what the paper prints
        after N.
        """
        err, err_se = _mean_se(self.error)
        mae, mae_se = _mean_se(self.mae)
        n = self.n_labeled.astype(np.float64)
        used = self.labels_used.astype(np.float64)
        trials = len(n)
        avg_k = float(used.sum() / n.sum())
        if trials > 1:
            cov = np.cov(used, n)  # delta method for mean(used) / mean(n)
            var = (cov[0, 0] - 2 * avg_k * cov[0, 1] + avg_k**2 * cov[1, 1]) / n.mean() ** 2
            avg_k_se = float(np.sqrt(max(var, 0.0) / trials))
            n_sd = float(n.std(ddof=1))
        else:
            avg_k_se = n_sd = float("nan")
        return {
            "cohort": self.cohort,
            "method": self.method.value,
            "tau": self.tau,
            "k": self.k,
            "avg_k": avg_k,
            "avg_k_se": avg_k_se,
            "n_labeled": float(n.mean()),
            "n_labeled_se": n_sd / np.sqrt(trials),
            "n_labeled_sd": n_sd,
            "error": err,
            "error_se": err_se,
            "mae": mae,
            "mae_se": mae_se,
            "trials": trials,
            **extra,
        }


def best_outcomes(outcomes: Iterable[Outcome]) -> dict[tuple[str, Method], Outcome]:
    """Per cohort and method, the setting with the lowest mean error (Table 1's rule).

    Equal errors go to the setting with fewer labels per example.
    """
    best: dict[tuple[str, Method], Outcome] = {}
    for o in outcomes:
        key = (o.cohort, o.method)
        cur = best.get(key)
        mine = (float(o.error.mean()), float(o.avg_k.mean()))
        if cur is None or mine < (float(cur.error.mean()), float(cur.avg_k.mean())):
            best[key] = o
    return best


# ---------------------------------------------------------------------------------------------
# Section 3.3: confidence threshold


def _posteriors(
    method: Method,
    labels: Int8Array,
    labelers: Int8Array,
    trial: IntArray,
    accuracies: FloatArray,
    prior: float,
    grid: FloatArray | None = None,
) -> tuple[Posterior, Int8Array | None]:
    """:func:`aggregate` of rows of t labels, each from a labeler of the row's trial.

    With ``grid`` (increasing taus), also how many of those taus each row's confidence
    reaches. A trial has only 2J possible (labeler, label) pairs, so for short rows it is
    cheaper to aggregate every possible sequence of t pairs once per trial and look rows up.
    """
    rows, t = labels.shape
    trials, n_labelers = accuracies.shape
    sequences = (2 * n_labelers) ** t
    if t == 0 or 4 * trials * sequences > rows:
        post = aggregate(method, labels, accuracies[trial[:, None], labelers], prior=prior)
        return post, _hits(grid, post.confidence)
    pair = np.indices((2 * n_labelers,) * t).reshape(t, -1).T  # every sequence of t pairs
    table = aggregate(
        method,
        np.broadcast_to(pair % 2, (trials, sequences, t)).reshape(-1, t),
        accuracies[:, pair // 2].reshape(-1, t),
        prior=prior,
    )
    code = trial * sequences
    for s in range(t):
        code += (2 * labelers[:, s].astype(np.int64) + labels[:, s]) * (2 * n_labelers) ** (
            t - 1 - s
        )
    hits = _hits(grid, table.confidence)
    post = Posterior(table.p1.take(code), table.label.take(code), table.confidence.take(code))
    return post, None if hits is None else hits.take(code)


def _hits(grid: FloatArray | None, confidence: FloatArray) -> Int8Array | None:
    """How many taus of ``grid`` each confidence reaches (confidence >= tau)."""
    if grid is None:
        return None
    out: Int8Array = np.searchsorted(grid, confidence, side="right").astype(np.int8)
    return out


def _fixed_k(
    cohort: str,
    method: Method,
    draws: Draws,
    accuracies: FloatArray,
    k: int,
    budget: int,
    prior: float,
) -> Outcome:
    """MV and WMV in section 3.3: every example takes exactly k labels until the budget ends.

    When k does not divide the budget, the last example gets what is left (the decision
    rule's ``budget`` stop).
    """
    trials = draws.shape[0]
    full, rest = divmod(budget, k)
    wrong = np.zeros(trials, dtype=np.int64)
    absum = np.zeros(trials)
    for first, n, width in ((0, full, k), (full, int(rest > 0), rest)):
        if n == 0:
            continue
        part = slice(first, first + n)
        who = draws.labeler[:, part, :width].reshape(trials * n, width)
        acc = accuracies
        if method is Method.MV:  # one vote each, whoever the labeler: 2^k label sequences
            who, acc = np.zeros_like(who), accuracies[:, :1]
        post, _ = _posteriors(
            method,
            draws.label[:, part, :width].reshape(trials * n, width),
            who,
            np.repeat(np.arange(trials), n),
            acc,
            prior,
        )
        truth = draws.truth[:, part]
        wrong += (post.label.reshape(trials, n) != truth).sum(axis=1)
        absum += np.abs(truth - post.p1.reshape(trials, n)).sum(axis=1)
    return Outcome(
        cohort,
        method,
        None,
        k,
        n_labeled=np.full(trials, full + int(rest > 0), dtype=np.int64),
        labels_used=np.full(trials, budget, dtype=np.int64),
        errors=wrong,
        abs_error=absum,
    )


_REACH_EVERY = 3


_BLOCK = 64


def _serve(stop: NDArray[np.int16], budget: int) -> tuple[IntArray, IntArray, NDArray[np.bool_]]:
    """Examples take ``stop[trial, i]`` labels each, in order, until the budget is spent.

    Per trial: the example on which the budget ends (the last to get a label), the labels
    spent before it, and whether the budget ended at all (if not, all examples were served
    and the first two refer to the last example). A cumulative sum adds one number at a time,
    so it runs over sums of blocks of examples, then inside the one block where the budget ends.
    """
    trials, width = stop.shape
    n_blocks = -(-width // _BLOCK)
    padded = np.zeros((trials, n_blocks * _BLOCK), dtype=np.int32)
    padded[:, :width] = stop
    blocks = padded.reshape(trials, n_blocks, _BLOCK)
    sums = blocks.sum(axis=2)
    after = np.cumsum(sums, axis=1)
    k = (after < budget).sum(axis=1)
    ended = k < n_blocks
    tr = np.arange(trials)
    k = np.minimum(k, n_blocks - 1)
    inner = np.cumsum(blocks[tr, k], axis=1) + (after[tr, k] - sums[tr, k])[:, None]
    pos = np.minimum((inner < budget).sum(axis=1), _BLOCK - 1)
    last = np.where(ended, k * _BLOCK + pos, width - 1)
    before = np.where(ended, inner[tr, pos], after[:, -1]) - stop[tr, last]
    return last, before, ended


def _threshold_method(
    cohort: str,
    method: Method,
    draws: Draws,
    accuracies: FloatArray,
    taus: Sequence[float],
    kappa: int,
    budget: int,
    prior: float,
) -> list[Outcome]:
    """GTX or SV under strategy 1, for every tau of the sweep in one pass over the labels.

    Level t computes the posterior after t labels of every example still in play, and
    ``reached`` counts the taus of the sweep that the example's confidence has reached so far:
    the example stops at tau_q at the first level where q < reached (at kappa if none).
    Examples are served in order until the budget is spent, so an example leaves play once it
    has stopped at every tau, or once it lies beyond the budget's reach at the lowest tau it
    has not stopped at (at a higher tau examples take more labels and the budget reaches less
    far). The reach is worked out every few taus, from lower bounds on the stops.
    """
    trials, pool, _ = draws.shape
    grid = np.asarray(taus, dtype=np.float64)
    n_tau = len(grid)
    flat_label = draws.label.reshape(trials * pool, -1)
    flat_who = draws.labeler.reshape(trials * pool, -1)
    # only entries of examples in play are written, and only those are read
    p1 = np.empty((kappa, trials, pool))
    hard = np.empty((kappa, trials, pool), dtype=np.int8)
    reached = np.zeros((trials, pool), dtype=np.int8)
    history = np.zeros((kappa - 1, trials, pool), dtype=np.int8)  # reached after level 1, 2, ..
    starts = list(range(0, n_tau, _REACH_EVERY))
    anchor_of = np.arange(n_tau) // _REACH_EVERY  # the closest start at or below each tau
    bound = np.ones((len(starts), trials, pool), dtype=np.int16)  # stop at tau, or lower bound
    reach = np.full((len(starts), trials), pool)
    flat_reached = reached.reshape(-1)
    rows = np.arange(trials * pool)  # examples in play
    width = pool
    for t in range(1, kappa + 1):
        trial = rows // pool
        post, hit = _posteriors(
            method,
            flat_label[rows, :t],
            flat_who[rows, :t],
            trial,
            accuracies,
            prior,
            grid if t < kappa else None,
        )
        p1[t - 1].reshape(-1)[rows] = post.p1
        hard[t - 1].reshape(-1)[rows] = post.label
        if hit is None:
            break
        flat_reached[rows] = np.maximum(flat_reached[rows], hit)
        history[t - 1] = reached
        for a, q in enumerate(starts):
            bound[a, :, :width] += reached[:, :width] <= q
            last, _, ended = _serve(bound[a, :, :width], budget)
            reach[a] = np.where(ended, last + 1, width)
        width = int(reach[0].max())
        now = flat_reached[rows]
        example = rows - trial * pool
        open_anchor = anchor_of[np.minimum(now, n_tau - 1)]
        rows = rows[(now < n_tau) & (example < reach[open_anchor, trial])]
    return _sweep_outcomes(
        cohort,
        method,
        grid,
        draws.truth[:, :width],
        history[:, :, :width],
        p1[:, :, :width],
        hard[:, :, :width],
        budget,
    )


def _sweep_outcomes(
    cohort: str,
    method: Method,
    grid: FloatArray,
    truth: Int8Array,
    history: Int8Array,
    p1: FloatArray,
    hard: Int8Array,
    budget: int,
) -> list[Outcome]:
    """Count labeled examples, errors and absolute errors at every tau of the sweep.

    At tau_q an example stops at level s = 1 + #{levels that left it below tau_q}; as q grows,
    that level steps up at the ``history`` values. So its contribution to the totals is a
    step function of q, cut off where the budget no longer reaches it; the steps are added up
    for all examples at once with ``bincount`` and a cumulative sum over q, rather than by
    gathering every example's posterior once per tau.
    """
    kappa, trials, width = p1.shape
    n_tau = len(grid)
    tr = np.arange(trials)
    n_labeled = np.empty((n_tau, trials), dtype=np.int64)
    last = np.empty((n_tau, trials), dtype=np.int64)  # the last example labeled ...
    last_stop = np.empty((n_tau, trials), dtype=np.int64)  # ... where it would stop ...
    last_used = np.empty((n_tau, trials), dtype=np.int64)  # ... and the labels it got
    w = width  # at a higher tau fewer examples get labels: look no further than the last tau
    for q in range(n_tau):
        stop = np.ones((trials, w), dtype=np.int16)
        for level in history[:, :, :w]:
            stop += level <= q
        j, before, ended = _serve(stop, budget)
        if not ended.all():
            raise ValueError("the pool of examples ran out before the budget")  # pool >= budget
        n_labeled[q], last[q], last_stop[q] = j + 1, j, stop[tr, j]
        last_used[q] = budget - before
        w = int(j.max()) + 1

    # At tau_q the example stops at level s for q in [history[s-1], history[s]), and counts
    # while q < counted (the taus whose budget reaches it): one piece of a step function each.
    counted = np.zeros((trials, width), dtype=np.int8)
    for n in n_labeled:
        counted += np.arange(width)[None, :] < n[:, None]
    lo = np.concatenate([np.zeros((1, trials, width), np.int8), history])
    hi = np.minimum(np.concatenate([history, np.full((1, trials, width), n_tau, np.int8)]), counted)
    piece = np.flatnonzero(lo < hi)
    row = piece % (trials * width)
    trial = row // width
    start = trial * (n_tau + 1) + lo.reshape(-1)[piece]
    end = trial * (n_tau + 1) + hi.reshape(-1)[piece]
    y = truth.reshape(-1)[row]
    values = {
        "errors": (hard.reshape(-1)[piece] != y).astype(np.float64),
        "abs": np.abs(y - p1.reshape(-1)[piece]),
    }
    size = trials * (n_tau + 1)
    totals = {}
    for name, v in values.items():
        diff = np.bincount(start, v, size) - np.bincount(end, v, size)
        total = np.cumsum(diff.reshape(trials, n_tau + 1), axis=1)[:, :n_tau].T.copy()
        totals[name] = total
    # the budget may end on an example before its stop: it keeps the labels it got
    y_last = truth[tr, last].astype(np.float64)
    for name, level in (("errors", hard), ("abs", p1)):
        at_used, at_stop = level[last_used - 1, tr, last], level[last_stop - 1, tr, last]
        if name == "errors":
            totals[name] += (at_used != y_last).astype(float) - (at_stop != y_last)
        else:
            totals[name] += np.abs(y_last - at_used) - np.abs(y_last - at_stop)
    return [
        Outcome(
            cohort,
            method,
            float(tau),
            None,
            n_labeled=n_labeled[q],
            labels_used=np.full(trials, budget, dtype=np.int64),
            errors=np.rint(totals["errors"][q]).astype(np.int64),
            abs_error=totals["abs"][q],
        )
        for q, tau in enumerate(grid)
    ]


def simulate_threshold(
    cohort: Cohort,
    draws: Draws,
    accuracies: FloatArray,
    *,
    taus: Sequence[float] = PAPER_TAUS,
    kappa: int = 5,
    budget: int = 15000,
    methods: Sequence[Method] = TABLE_ORDER,
    prior: float = 0.5,
) -> list[Outcome]:
    """Section 3.3 for one cohort: every method at every setting, per trial.

    GTX and SV: one outcome per tau (strategy 1, kappa labels at most). MV and WMV give
    confidence 1.0 after one label, so, as in the paper, they take a fixed k = 1 .. kappa.
    ``draws`` needs ``budget`` examples (each example takes at least one label) and ``kappa``
    slots.
    """
    trials, pool, slots = draws.shape
    if pool < budget:
        raise ValueError(f"draws hold {pool} examples per trial, the budget needs {budget}")
    if slots < kappa:
        raise ValueError(f"draws hold {slots} labels per example, kappa is {kappa}")
    if list(taus) != sorted(taus) or not all(0.5 < t < 1.0 for t in taus):
        raise ValueError("taus must be increasing and in (0.5, 1)")
    out: list[Outcome] = []
    for method in methods:
        if method.uses_threshold:
            out += _threshold_method(
                cohort.name, method, draws, accuracies, taus, kappa, budget, prior
            )
        else:
            out += [
                _fixed_k(cohort.name, method, draws, accuracies, k, budget, prior)
                for k in range(1, kappa + 1)
            ]
    return out


# ---------------------------------------------------------------------------------------------
# Section 3.4: uncertainty sampling


@dataclass(frozen=True)
class Curves:
    """Error rate and MAE over the whole dataset after each label, from label M to label B."""

    cohort: str
    method: Method
    labels: IntArray
    """(steps + 1,): labels collected so far, M .. B."""
    error: FloatArray
    """(trials, steps + 1)"""
    mae: FloatArray
    """(trials, steps + 1)"""
    examples: int

    @property
    def final(self) -> Outcome:
        trials = self.error.shape[0]
        m = self.examples
        return Outcome(
            self.cohort,
            self.method,
            None,
            None,
            n_labeled=np.full(trials, m, dtype=np.int64),
            labels_used=np.full(trials, int(self.labels[-1]), dtype=np.int64),
            errors=np.rint(self.error[:, -1] * m).astype(np.int64),
            abs_error=self.mae[:, -1] * m,
        )


@dataclass
class _Blocks:
    """Selection keys in blocks, with a summary of each block.

    The winner has the highest key, then (among equal keys) the lowest rank; the summary is
    each block's highest key, the lowest rank among its entries with that key, and how many
    entries have both. Picking one of M examples then costs O(sqrt M) per step instead of
    O(M): a step changes one example, so only its block is summarised again.
    """

    keys: FloatArray  # (S, n_blocks, size); -1 marks padding and examples out of labelers
    rank: IntArray  # (S, n_blocks, size)
    top: FloatArray = field(init=False)
    low: IntArray = field(init=False)
    count: IntArray = field(init=False)

    def __post_init__(self) -> None:
        self.top = self.keys.max(axis=2)
        self.low = self._low(self.keys, self.rank, self.top)
        self.count = self._count(self.keys, self.rank, self.top, self.low)

    @staticmethod
    def _low(keys: FloatArray, rank: IntArray, top: FloatArray) -> IntArray:
        out: IntArray = np.where(keys == top[..., None], rank, _NO_RANK).min(axis=-1)
        return out

    @staticmethod
    def _count(keys: FloatArray, rank: IntArray, top: FloatArray, low: IntArray) -> IntArray:
        out: IntArray = ((keys == top[..., None]) & (rank == low[..., None])).sum(axis=-1)
        return out

    def pick(self, u: FloatArray) -> IntArray:
        """Per sequence, the winner; a tie goes to the floor(u * ties)-th tied entry in order."""
        seq = np.arange(len(u))
        best = self.top.max(axis=1)
        low = np.where(self.top == best[:, None], self.low, _NO_RANK).min(axis=1)
        tied = np.where((self.top == best[:, None]) & (self.low == low[:, None]), self.count, 0)
        total = tied.sum(axis=1)
        nth = np.minimum((u * total).astype(np.int64), total - 1)
        upto = np.cumsum(tied, axis=1)
        block = (upto <= nth[:, None]).sum(axis=1)
        within = nth - (upto[seq, block] - tied[seq, block])
        same = (self.keys[seq, block] == best[:, None]) & (self.rank[seq, block] == low[:, None])
        pos = (np.cumsum(same, axis=1) <= within[:, None]).sum(axis=1)
        out: IntArray = block * self.keys.shape[2] + pos
        return out

    def set(self, example: IntArray, key: FloatArray, rank: IntArray) -> None:
        seq = np.arange(len(example))
        size = self.keys.shape[2]
        block, pos = example // size, example % size
        self.keys[seq, block, pos] = key
        self.rank[seq, block, pos] = rank
        keys, ranks = self.keys[seq, block], self.rank[seq, block]
        top = keys.max(axis=1)
        low = self._low(keys, ranks, top)
        self.top[seq, block], self.low[seq, block] = top, low
        self.count[seq, block] = self._count(keys, ranks, top, low)


_NO_RANK = np.iinfo(np.int64).max


def simulate_uncertainty(
    cohorts: Sequence[tuple[Cohort, Draws, FloatArray]],
    *,
    budget: int = 15000,
    methods: Sequence[Method] = TABLE_ORDER,
    prior: float = 0.5,
    fewest_first: bool = False,
) -> list[Curves]:
    """Section 3.4: uncertainty sampling (strategy 2) for every cohort, trial and method at once.

    Each example is labeled once; then, until ``budget`` labels are spent, the example with the
    highest uncertainty u_i = 1 - max_y P(Y_i = y | L(i)) (equation 5) gets its next labeler
    (labelers without replacement; an example asked of every labeler is out of the running).
    Ties go to a uniformly random one of the tied examples; with ``fewest_first``, to a random
    one of the tied examples that have the fewest labels. All methods of a trial see the same
    examples, labelers and answers.
    """
    draws0 = cohorts[0][1]
    trials, n_ex, n_lab = draws0.shape
    if any(d.shape != draws0.shape for _, d, _ in cohorts):
        raise ValueError("all cohorts need draws of the same shape")
    steps = budget - n_ex
    if steps < 0 or budget > n_ex * n_lab:
        raise ValueError(f"budget must be in [{n_ex}, {n_ex * n_lab}], got {budget}")
    if draws0.tie.shape[2] < steps:
        raise ValueError("draws hold too few tie-breaks for this budget")
    n_data = len(cohorts) * trials
    truth = np.concatenate([d.truth for _, d, _ in cohorts]).astype(np.float64)
    label = np.concatenate([d.label for _, d, _ in cohorts])
    rows = np.arange(trials)[:, None, None]
    acc = np.concatenate([a[rows, d.labeler] for _, d, a in cohorts])
    method_slot = {m: list(Method).index(m) for m in methods}
    tie = np.concatenate(
        [np.concatenate([d.tie[:, method_slot[m], :steps] for _, d, _ in cohorts]) for m in methods]
    )
    n_seq = len(methods) * n_data
    data = np.tile(np.arange(n_data), len(methods))
    seq = np.arange(n_seq)

    # first label of every example
    p1 = np.empty((n_seq, n_ex))
    hard = np.empty((n_seq, n_ex), dtype=np.int64)
    unc = np.empty((n_seq, n_ex))
    for g, method in enumerate(methods):
        post = aggregate(
            method, label[:, :, :1].reshape(-1, 1), acc[:, :, :1].reshape(-1, 1), prior=prior
        )
        part = slice(g * n_data, (g + 1) * n_data)
        p1[part] = post.p1.reshape(n_data, n_ex)
        hard[part] = post.label.reshape(n_data, n_ex)
        unc[part] = uncertainty(post).reshape(n_data, n_ex)
    count = np.ones((n_seq, n_ex), dtype=np.int64)
    y = truth[data]
    wrong = (hard != y).sum(axis=1)
    absum = np.abs(y - p1).sum(axis=1)

    size = max(1, int(np.ceil(np.sqrt(n_ex))))
    n_blocks = -(-n_ex // size)
    keys = np.full((n_seq, n_blocks * size), -1.0)
    keys[:, :n_ex] = np.where(count < n_lab, unc, -1.0)
    rank = np.zeros((n_seq, n_blocks * size), dtype=np.int64)
    if fewest_first:
        rank[:, :n_ex] = count
    blocks = _Blocks(keys.reshape(n_seq, n_blocks, size), rank.reshape(n_seq, n_blocks, size))

    err_curve = np.empty((n_seq, steps + 1))
    mae_curve = np.empty((n_seq, steps + 1))
    err_curve[:, 0] = wrong
    mae_curve[:, 0] = absum
    slots = np.arange(n_lab)
    for step in range(steps):
        ex = blocks.pick(tie[:, step])
        count[seq, ex] += 1
        n_now = count[seq, ex]
        new_p1 = np.empty(n_seq)
        new_hard = np.empty(n_seq, dtype=np.int64)
        new_unc = np.empty(n_seq)
        for g, method in enumerate(methods):
            part = slice(g * n_data, (g + 1) * n_data)
            e = ex[part]
            post = aggregate(
                method,
                label[data[part], e],
                acc[data[part], e],
                slots[None, :] < n_now[part, None],
                prior,
            )
            new_p1[part], new_hard[part], new_unc[part] = post.p1, post.label, uncertainty(post)
        y_ex = y[seq, ex]
        wrong += (new_hard != y_ex).astype(np.int64) - (hard[seq, ex] != y_ex)
        absum += np.abs(y_ex - new_p1) - np.abs(y_ex - p1[seq, ex])
        p1[seq, ex], hard[seq, ex], unc[seq, ex] = new_p1, new_hard, new_unc
        blocks.set(ex, np.where(n_now < n_lab, new_unc, -1.0), n_now * fewest_first)
        err_curve[:, step + 1] = wrong
        mae_curve[:, step + 1] = absum

    labels = np.arange(n_ex, budget + 1)
    out = []
    for g, method in enumerate(methods):
        for c, (cohort, _, _) in enumerate(cohorts):
            part = slice(g * n_data + c * trials, g * n_data + (c + 1) * trials)
            out.append(
                Curves(
                    cohort.name,
                    method,
                    labels,
                    err_curve[part] / n_ex,
                    mae_curve[part] / n_ex,
                    n_ex,
                )
            )
    return out


# ---------------------------------------------------------------------------------------------
# Whole experiments, as the command line runs them


def run_threshold(
    *,
    trials: int = 100,
    seed: int = 0,
    budget: int = 15000,
    kappa: int = 5,
    labelers: int = 10,
    taus: Sequence[float] = PAPER_TAUS,
    estimators: Sequence[Estimator] = (Estimator.TRUE,),
    assess_size: int = 0,
    cohorts: Sequence[Cohort] = COHORTS,
    jobs: int = 1,
) -> dict[Estimator, list[Outcome]]:
    """Section 3.3 for each cohort and accuracy estimator; cohorts run in ``jobs`` threads.

    All estimators of a cohort see the same trials (labelers, examples, answers, gold items).
    """
    if trials < 1:
        raise ValueError("need at least one trial")

    def one(cohort: Cohort) -> dict[Estimator, list[Outcome]]:
        draws = draw(
            cohort,
            trials=trials,
            examples=budget,
            slots=kappa,
            labelers=labelers,
            seed=seed,
            assess_size=assess_size,
        )
        return {
            e: simulate_threshold(
                cohort, draws, draws.accuracies(e), taus=taus, kappa=kappa, budget=budget
            )
            for e in estimators
        }

    results = _map(one, cohorts, jobs)
    return {e: [o for r in results for o in r[e]] for e in estimators}


def run_uncertainty(
    *,
    trials: int = 10,
    seed: int = 0,
    examples: int = 5000,
    budget: int = 15000,
    labelers: int = 10,
    estimators: Sequence[Estimator] = (Estimator.TRUE,),
    assess_size: int = 0,
    cohorts: Sequence[Cohort] = COHORTS,
    fewest_first: bool = False,
) -> dict[Estimator, list[Curves]]:
    """Section 3.4 for each cohort and accuracy estimator, all on the same trials."""
    if trials < 1:
        raise ValueError("need at least one trial")
    draws = [
        draw(
            cohort,
            trials=trials,
            examples=examples,
            slots=labelers,
            labelers=labelers,
            seed=seed,
            assess_size=assess_size,
            tie_steps=max(budget - examples, 0),
            experiment=Experiment.UNCERTAINTY,
        )
        for cohort in cohorts
    ]
    return {
        e: simulate_uncertainty(
            [(c, d, d.accuracies(e)) for c, d in zip(cohorts, draws, strict=True)],
            budget=budget,
            fewest_first=fewest_first,
        )
        for e in estimators
    }


def _map(fn: Callable[[Cohort], _T], items: Sequence[Cohort], jobs: int) -> list[_T]:
    if jobs <= 1 or len(items) <= 1:
        return [fn(i) for i in items]
    # numpy releases the GIL in its loops, so threads use both cores of a small machine
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        return list(pool.map(fn, items))
