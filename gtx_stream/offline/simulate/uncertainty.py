"""Section 3.4 of the paper, Table 2 and Figure 2: strategy 2, uncertainty sampling, vectorised.

A fixed set of examples, each labeled once, then always the example of highest uncertainty
(equation 5, :func:`gtx_stream.core.decision.uncertainty`) next, until the budget is spent; for
every cohort, trial and method at once. Under the two-coin model GTX weighs each label with its
labeler's sensitivity or specificity (:class:`.Coins`); the other methods stay one-coin.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from gtx_stream.core.accuracy import Estimator
from gtx_stream.core.decision import uncertainty
from gtx_stream.core.models import FloatArray, IntArray, Method, ModelName
from gtx_stream.offline.simulate.cohorts import COHORTS, Cohort, Coins, Draws, Experiment, draw
from gtx_stream.offline.simulate.em_stream import Accuracy
from gtx_stream.offline.simulate.results import TABLE_ORDER, Outcome
from gtx_stream.offline.simulate.sweep import LabelerArrays, label_posterior


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
    coins: Sequence[Coins] | None = None,
) -> list[Curves]:
    """Section 3.4: uncertainty sampling (strategy 2) for every cohort, trial and method at once.

    Each example is labeled once; then, until ``budget`` labels are spent, the example with the
    highest uncertainty u_i = 1 - max_y P(Y_i = y | L(i)) (equation 5) gets its next labeler
    (labelers without replacement; an example asked of every labeler is out of the running).
    Ties go to a uniformly random one of the tied examples; with ``fewest_first``, to a random
    one of the tied examples that have the fewest labels. All methods of a trial see the same
    examples, labelers and answers. With ``coins`` (one per cohort), GTX's posterior is the
    two-coin model's with them.
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
    gtx_weights: LabelerArrays = acc
    if coins is not None:
        if len(coins) != len(cohorts):
            raise ValueError("need one set of coins per cohort")
        pairs = list(zip(coins, (d for _, d, _ in cohorts), strict=True))
        gtx_weights = Coins(
            np.concatenate([c.sensitivity[rows, d.labeler] for c, d in pairs]),
            np.concatenate([c.specificity[rows, d.labeler] for c, d in pairs]),
        )
    weights = {m: gtx_weights if m is Method.GTX else acc for m in methods}
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
        post = label_posterior(
            method,
            label[:, :, :1].reshape(-1, 1),
            weights[method][:, :, :1].reshape(-1, 1),
            prior=prior,
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
            post = label_posterior(
                method,
                label[data[part], e],
                weights[method][data[part], e],
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


def run_uncertainty(
    *,
    trials: int = 10,
    seed: int = 0,
    examples: int = 5000,
    budget: int = 15000,
    labelers: int = 10,
    estimators: Sequence[Estimator | Accuracy | str] = (Estimator.TRUE,),
    assess_size: int = 0,
    cohorts: Sequence[Cohort] = COHORTS,
    fewest_first: bool = False,
    model: ModelName | str = ModelName.ONE_COIN,
) -> dict[Accuracy, list[Curves]]:
    """Section 3.4 for each cohort and source of accuracies, all on the same trials.

    ``model`` is GTX's labeler model. Parameters learned by EM (``em``) are not simulated here.
    """
    if trials < 1:
        raise ValueError("need at least one trial")
    sources = [Accuracy(e) for e in estimators]
    if Accuracy.EM in sources:
        raise ValueError("--accuracy em is simulated for the threshold experiment only")
    two_coin = ModelName(model) is ModelName.TWO_COIN
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
            [(c, d, d.accuracies(e.estimator)) for c, d in zip(cohorts, draws, strict=True)],
            budget=budget,
            fewest_first=fewest_first,
            coins=[d.coins(e.estimator) for d in draws] if two_coin else None,
        )
        for e in sources
    }
