r"""The paper's synthetic experiments (section 3), vectorised across trials.

* :func:`simulate_threshold`: section 3.3, Table 1 and Figure 1. A budget of B labels, examples
  arriving one after another, each asked of labelers drawn without replacement until strategy 1
  of section 2.3 stops it (GTX and SV: confidence >= tau or kappa labels; MV and WMV: a fixed k).
* :func:`simulate_uncertainty`: section 3.4, Table 2 and Figure 2. A fixed set of examples, each
  labeled once, then always the example of highest uncertainty (equation 5) next, until the
  budget is spent.

Every posterior comes from :func:`gtx_stream.model.aggregate`, the code the aggregator runs; the
simulator only decides which labels each example gets, for all trials at once.

Randomness. Everything random in a trial (the labelers' accuracies, the true labels, the order
in which labelers are asked, their answers, the assessment set, the tie-breaks) is drawn up front
by :func:`draw` from a generator seeded by ``(seed, experiment, cohort, trial)``. Trial t is the
same whatever the number of trials, and :mod:`gtx_stream.simulate_reference`, a per-label Python
loop of the same experiments, can replay exactly the same labels.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from enum import IntEnum

import numpy as np
from numpy.typing import NDArray

from gtx_stream.accuracy import Estimator, estimate_accuracy
from gtx_stream.model import FloatArray, IntArray, Method, aggregate

Int8Array = NDArray[np.int8]

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
    r-th of them: r is shifted past every earlier pick at or below it, in increasing order.
    """
    n, slots = shape
    picks = np.empty((n, slots), dtype=np.int64)
    for s in range(slots):
        x = rng.integers(0, labelers - s, size=n)
        for earlier in np.sort(picks[:, :s], axis=1).T:
            x += earlier <= x
        picks[:, s] = x
    return picks.astype(np.int8)


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
        """Means over trials, with standard errors (and the standard deviation of N)."""
        avg_k, avg_k_se = _mean_se(self.avg_k)
        err, err_se = _mean_se(self.error)
        mae, mae_se = _mean_se(self.mae)
        n = self.n_labeled.astype(np.float64)
        return {
            "cohort": self.cohort,
            "method": self.method.value,
            "tau": self.tau,
            "k": self.k,
            "avg_k": avg_k,
            "avg_k_se": avg_k_se,
            "n_labeled": float(n.mean()),
            "n_labeled_sd": float(n.std(ddof=1)) if len(n) > 1 else float("nan"),
            "error": err,
            "error_se": err_se,
            "mae": mae,
            "mae_se": mae_se,
            "trials": len(n),
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

    The last example takes what is left of the budget (the decision rule's ``budget`` stop).
    """
    trials = draws.shape[0]
    n = -(-budget // k)
    last = budget - (n - 1) * k
    lab = draws.label[:, :n, :k].reshape(trials * n, k)
    if method is Method.MV:
        acc: FloatArray = np.full((1, 1), 0.5)  # majority vote ignores accuracies
    else:
        acc = accuracies[np.arange(trials)[:, None, None], draws.labeler[:, :n, :k]]
        acc = acc.reshape(trials * n, k)
    mask = None
    if last < k:
        full = np.ones((trials, n, k), dtype=bool)
        full[:, n - 1, last:] = False
        mask = full.reshape(-1, k)
    post = aggregate(method, lab, acc, mask, prior)
    truth = draws.truth[:, :n].reshape(-1)
    wrong = (post.label != truth).reshape(trials, n).sum(axis=1)
    absum = np.abs(truth - post.p1).reshape(trials, n).sum(axis=1)
    return Outcome(
        cohort,
        method,
        None,
        k,
        n_labeled=np.full(trials, n, dtype=np.int64),
        labels_used=np.full(trials, budget, dtype=np.int64),
        errors=wrong.astype(np.int64),
        abs_error=absum,
    )


_REACH_EVERY = 3


def _reach(stop: NDArray[np.int16], budget: int) -> IntArray:
    """Per trial, how many examples get a label when each takes ``stop`` labels in order."""
    spent = np.cumsum(stop, axis=1, dtype=np.int32)
    out: IntArray = np.minimum((spent < budget).sum(axis=1) + 1, stop.shape[1])
    return out


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
    flat_label = draws.label.reshape(trials * pool, -1)[:, :kappa]
    slot_acc = accuracies[np.arange(trials)[:, None, None], draws.labeler[:, :, :kappa]]
    flat_acc = slot_acc.reshape(trials * pool, kappa)
    p1 = np.full((kappa, trials, pool), np.nan)
    hard = np.zeros((kappa, trials, pool), dtype=np.int8)
    reached = np.zeros((trials, pool), dtype=np.int8)
    history = np.zeros((kappa - 1, trials, pool), dtype=np.int8)  # reached after level 1, 2, ..
    starts = list(range(0, n_tau, _REACH_EVERY))
    anchor_of = np.arange(n_tau) // _REACH_EVERY  # the closest start at or below each tau
    bound = np.ones((len(starts), trials, pool), dtype=np.int16)  # stop at tau, or lower bound
    reach = np.full((len(starts), trials), pool)
    active = np.ones((trials, pool), dtype=bool)
    width = pool
    for t in range(1, kappa + 1):
        rows = np.flatnonzero(active)
        post = aggregate(method, flat_label[rows, :t], flat_acc[rows, :t], prior=prior)
        p1[t - 1].reshape(-1)[rows] = post.p1
        hard[t - 1].reshape(-1)[rows] = post.label
        if t == kappa:
            break
        hit = np.searchsorted(grid, post.confidence, side="right").astype(np.int8)
        flat_reached = reached.reshape(-1)
        flat_reached[rows] = np.maximum(flat_reached[rows], hit)
        history[t - 1] = reached
        for a, q in enumerate(starts):
            bound[a, :, :width] += reached[:, :width] <= q
            reach[a] = _reach(bound[a, :, :width], budget)
        width = int(reach[0].max())
        anchor = anchor_of[np.minimum(reached[:, :width], n_tau - 1)]
        within = np.arange(width)[None, :] < reach[anchor, np.arange(trials)[:, None]]
        active[:, width:] = False
        active[:, :width] &= (reached[:, :width] < n_tau) & within
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
        spent = np.cumsum(stop, axis=1, dtype=np.int32)
        n = np.minimum((spent < budget).sum(axis=1) + 1, w)
        j = n - 1
        before = spent[tr, j] - stop[tr, j]
        if np.any(before + stop[tr, j] < budget):
            raise ValueError("the pool of examples ran out before the budget")  # pool >= budget
        n_labeled[q], last[q], last_stop[q] = n, j, stop[tr, j]
        last_used[q] = np.minimum(stop[tr, j], budget - before)
        w = int(n.max())

    y = truth.astype(np.float64)
    values = {"errors": (hard != truth).astype(np.float64), "abs": np.abs(y - p1)}
    # the level at which an example stops is s for q in [history[s-1], history[s]), cut at R
    counted = np.zeros((trials, width), dtype=np.int8)  # how many taus label the example
    for n in n_labeled:
        counted += np.arange(width)[None, :] < n[:, None]
    lo = np.concatenate([np.zeros((1, trials, width), np.int8), history])
    hi = np.minimum(np.concatenate([history, np.full((1, trials, width), n_tau, np.int8)]), counted)
    step = lo < hi
    offset = (tr * (n_tau + 1))[None, :, None]
    start, end = (offset + lo).reshape(-1), (offset + hi).reshape(-1)
    totals = {}
    for name, v in values.items():
        w = np.where(step, v, 0.0).reshape(-1)
        size = trials * (n_tau + 1)
        diff = np.bincount(start, w, size) - np.bincount(end, w, size)
        total = np.cumsum(diff.reshape(trials, n_tau + 1), axis=1)[:, :n_tau].T.copy()
        # the last example may get fewer labels than its stop, when the budget ends on it
        total += v[last_used - 1, tr, last] - v[last_stop - 1, tr, last]
        totals[name] = total
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
    """Selection keys in blocks, with each block's maximum and how many keys equal it.

    Picking the most uncertain example out of M costs O(sqrt M) per step instead of O(M):
    a step changes one key, so only its block is looked at again.
    """

    keys: FloatArray  # (S, n_blocks, size); -1 marks padding and examples out of labelers
    top: FloatArray = field(init=False)
    count: IntArray = field(init=False)

    def __post_init__(self) -> None:
        self.top = self.keys.max(axis=2)
        self.count = (self.keys == self.top[:, :, None]).sum(axis=2)

    def pick(self, u: FloatArray) -> IntArray:
        """Per sequence, the example of highest key; ties: the floor(u * ties)-th in order."""
        seq = np.arange(len(u))
        best = self.top.max(axis=1)
        tied = np.where(self.top == best[:, None], self.count, 0)
        total = tied.sum(axis=1)
        nth = np.minimum((u * total).astype(np.int64), total - 1)
        upto = np.cumsum(tied, axis=1)
        block = (upto <= nth[:, None]).sum(axis=1)
        within = nth - (upto[seq, block] - tied[seq, block])
        same = self.keys[seq, block] == best[:, None]
        pos = (np.cumsum(same, axis=1) <= within[:, None]).sum(axis=1)
        out: IntArray = block * self.keys.shape[2] + pos
        return out

    def set(self, example: IntArray, value: FloatArray) -> None:
        seq = np.arange(len(example))
        size = self.keys.shape[2]
        block, pos = example // size, example % size
        self.keys[seq, block, pos] = value
        row = self.keys[seq, block]
        self.top[seq, block] = row.max(axis=1)
        self.count[seq, block] = (row == self.top[seq, block][:, None]).sum(axis=1)


def simulate_uncertainty(
    cohorts: Sequence[tuple[Cohort, Draws, FloatArray]],
    *,
    budget: int = 15000,
    methods: Sequence[Method] = TABLE_ORDER,
    prior: float = 0.5,
) -> list[Curves]:
    """Section 3.4: uncertainty sampling (strategy 2) for every cohort, trial and method at once.

    Each example is labeled once; then, until ``budget`` labels are spent, the example with the
    highest uncertainty u_i = 1 - max_y P(Y_i = y | L(i)) (equation 5) gets its next labeler
    (labelers without replacement; an example asked of every labeler is out of the running).
    Ties go to a uniformly random one of the tied examples. All methods of a trial see the same
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
        unc[part] = post.uncertainty.reshape(n_data, n_ex)
    count = np.ones((n_seq, n_ex), dtype=np.int64)
    y = truth[data]
    wrong = (hard != y).sum(axis=1)
    absum = np.abs(y - p1).sum(axis=1)

    size = max(1, int(np.ceil(np.sqrt(n_ex))))
    n_blocks = -(-n_ex // size)
    keys = np.full((n_seq, n_blocks * size), -1.0)
    keys[:, :n_ex] = np.where(count < n_lab, unc, -1.0)
    blocks = _Blocks(keys.reshape(n_seq, n_blocks, size))

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
            new_p1[part], new_hard[part], new_unc[part] = post.p1, post.label, post.uncertainty
        y_ex = y[seq, ex]
        wrong += (new_hard != y_ex).astype(np.int64) - (hard[seq, ex] != y_ex)
        absum += np.abs(y_ex - new_p1) - np.abs(y_ex - p1[seq, ex])
        p1[seq, ex], hard[seq, ex], unc[seq, ex] = new_p1, new_hard, new_unc
        blocks.set(ex, np.where(n_now < n_lab, new_unc, -1.0))
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
