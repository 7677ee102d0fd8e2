"""What one trial of an experiment is made of: a labeler cohort and everything drawn up front.

Everything random in a trial (the labelers' accuracies, the true labels, the order in which
labelers are asked, their answers, the assessment set, the tie-breaks) is drawn by :func:`draw`
from a generator seeded by ``(seed, experiment, cohort, trial)``. Trial t is the same whatever
the number of trials, and :mod:`tests.offline.simulate_reference`, a per-label Python loop of
the same experiments, can replay exactly the same labels.

The paper's cohorts are one-coin: a labeler is right with probability alpha_j whatever the
class, so its two coins (sensitivity and specificity) both equal alpha_j. The class-conditional
cohorts (:data:`TWO_COIN_COHORTS`) draw the two coins apart, so that errors depend on the true
class as on real crowds; the two-coin model (``--model two_coin``) has something to win there.
The assessment set is split by class as well (:attr:`Draws.assess_two_coin`), drawn after
everything else of a trial, so that the paper's cohorts draw exactly what they drew before.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from enum import IntEnum

import numpy as np
from numpy.typing import NDArray

from gtx_stream.core.accuracy import Estimator, estimate_accuracy, estimate_two_coin
from gtx_stream.core.models import FloatArray, IntArray, Method

Int8Array = NDArray[np.int8]


class Experiment(IntEnum):
    """Which experiment a generator belongs to (part of its seed)."""

    THRESHOLD = 1
    UNCERTAINTY = 2


@dataclass(frozen=True)
class Cohort:
    """A labeler cohort of section 3.2: each alpha_j ~ U(low, high).

    With ``specificity`` = (low_t, high_t) the cohort is class-conditional: sensitivity
    s_j = P(label 1 | y = 1) ~ U(low, high) and specificity t_j = P(label 0 | y = 0) ~
    U(low_t, high_t), drawn independently.
    """

    name: str
    low: float
    high: float
    key: int
    """Part of the seed, so that the cohorts draw independent trials."""
    specificity: tuple[float, float] | None = None

    @property
    def symmetric(self) -> bool:
        """One coin per labeler (the paper's cohorts): sensitivity = specificity = alpha_j."""
        return self.specificity is None

    @property
    def title(self) -> str:
        if self.specificity is not None:
            lo, hi = self.specificity
            return (
                f"Class-conditional labelers (s_j ~ U({self.low:g}, {self.high:g}), "
                f"t_j ~ U({lo:g}, {hi:g}))"
            )
        kind = "More" if self.name == "accurate" else "Less"
        return f"{kind} accurate labelers (alpha_j ~ U({self.low:g}, {self.high:g}))"


ACCURATE = Cohort("accurate", 0.8, 1.0, key=1)
LESS_ACCURATE = Cohort("less_accurate", 0.6, 0.9, key=2)
COHORTS = (ACCURATE, LESS_ACCURATE)
"""The paper's two cohorts (section 3.2)."""
CLASS_CONDITIONAL = Cohort("class_conditional", 0.42, 0.62, key=3, specificity=(0.63, 0.83))
"""Errors that depend on the true class, with the means measured on the bluebirds crowd:
P(label 0 | y = 1) = 0.48 and P(label 1 | y = 0) = 0.27, so s_j averages 0.52 and t_j 0.73."""
MISSES_POSITIVES = Cohort("misses_positives", 0.6, 0.85, key=4, specificity=(0.9, 1.0))
"""Accurate labelers who miss positives (a defect, a drill hole out of place) far more often
than they raise a false alarm: s_j ~ U(0.6, 0.85), t_j ~ U(0.9, 1)."""
TWO_COIN_COHORTS = (CLASS_CONDITIONAL, MISSES_POSITIVES)
ALL_COHORTS = (*COHORTS, *TWO_COIN_COHORTS)


@dataclass(frozen=True)
class Draws:
    """Everything random in one cohort's trials. Arrays are indexed [trial, example, slot].

    ``labeler[t, i, s]`` is the labeler asked s-th about example i (a draw without replacement,
    so a row never repeats a labeler), ``label[t, i, s]`` the answer that labeler gives.
    """

    accuracy: FloatArray
    """(trials, labelers): the true alpha_j; for a class-conditional cohort the balanced
    accuracy (s_j + t_j) / 2, the share right at P(y = 1) = 1/2."""
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
    sensitivity: FloatArray
    """(trials, labelers): the true s_j = P(label 1 | y = 1) (``accuracy`` in one-coin cohorts)."""
    specificity: FloatArray
    """(trials, labelers): the true t_j = P(label 0 | y = 0)."""
    assess_two_coin: IntArray
    """(trials, labelers, 4): the same gold items by class, (tp, positives, tn, negatives), the
    counts :func:`~gtx_stream.core.accuracy.estimate_two_coin` reads; tp + tn is
    ``assess_correct``."""

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

    def coins(self, estimator: Estimator | str) -> Coins:
        """The sensitivities and specificities the two-coin model is given: true, or
        estimated from each labeler's gold items per class (equation (4) per class)."""
        estimator = Estimator(estimator)
        if estimator is Estimator.TRUE:
            return Coins(self.sensitivity, self.specificity)
        if self.assess_size <= 0:
            raise ValueError(f"--accuracy {estimator.value} needs an assessment set (assess-size)")
        est = estimate_two_coin(self.assess_two_coin.reshape(-1, 4), estimator)
        shape = self.sensitivity.shape
        return Coins(
            est.sensitivity.accuracy.reshape(shape), est.specificity.accuracy.reshape(shape)
        )


@dataclass(frozen=True)
class Coins:
    """Two-coin labeler parameters of every trial: ``sensitivity[t, j]``, ``specificity[t, j]``.

    Indexed and reshaped like the (trials, labelers) array of accuracies it stands in for, so
    that the simulator gathers each label's parameters the same way under either model.
    """

    sensitivity: FloatArray
    specificity: FloatArray

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.sensitivity.shape)

    def __getitem__(self, index: object) -> Coins:
        return Coins(self.sensitivity[index], self.specificity[index])  # type: ignore[call-overload]

    def reshape(self, *shape: int) -> Coins:
        return Coins(self.sensitivity.reshape(*shape), self.specificity.reshape(*shape))

    def params(self) -> dict[str, FloatArray]:
        """The arrays by the names the two-coin model reads."""
        return {"sensitivity": self.sensitivity, "specificity": self.specificity}


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
    truth: Int8Array | None = None,
) -> Draws:
    """Draw ``trials`` independent trials of a cohort: labelers, examples, answers, gold items.

    ``truth`` ((examples,) or (trials, examples)) gives the true labels instead of drawing
    them, as for real images whose truth is known (section 4). The generator still draws the
    labels it replaces, so everything else in trial t (accuracies, who is asked, whether each
    answer is right, the gold items) is what the simulator draws for trial t with this seed.
    """
    if not 1 <= slots <= labelers:
        raise ValueError(f"need 1 <= slots <= labelers, got {slots} slots for {labelers} labelers")
    if labelers > 127:
        raise ValueError("at most 127 labelers")
    acc = np.empty((trials, labelers))
    sens = np.empty((trials, labelers))
    spec = np.empty((trials, labelers))
    gold = np.empty((trials, labelers), dtype=np.int64)
    by_class = np.zeros((trials, labelers, 4), dtype=np.int64)
    who = np.empty((trials, examples, slots), dtype=np.int8)
    said = np.empty((trials, examples, slots), dtype=np.int8)
    tie = np.empty((trials, len(Method), tie_steps))
    given = None if truth is None else np.broadcast_to(np.asarray(truth), (trials, examples))
    if given is not None and not np.isin(given, (0, 1)).all():
        raise ValueError("truth must hold 0 and 1 only")
    out_truth = np.empty((trials, examples), dtype=np.int8)
    for t in range(trials):
        rng = _trial_rng(seed, experiment, cohort, t)
        sens[t] = rng.uniform(cohort.low, cohort.high, size=labelers)
        if cohort.specificity is None:
            spec[t] = acc[t] = sens[t]
        else:
            spec[t] = rng.uniform(*cohort.specificity, size=labelers)
            acc[t] = (sens[t] + spec[t]) / 2.0
        y = (rng.random(examples) < positive_rate).astype(np.int8)
        if given is not None:
            y = given[t].astype(np.int8)
        out_truth[t] = y
        who[t] = _without_replacement(rng, labelers, (examples, slots))
        if cohort.symmetric:
            p_right = acc[t][who[t]]
        else:  # the coin of the example's true class
            p_right = np.where(y[:, None] == 1, sens[t][who[t]], spec[t][who[t]])
        right = rng.random((examples, slots)) < p_right
        said[t] = np.where(right, y[:, None], 1 - y[:, None])
        if cohort.symmetric:
            gold[t] = rng.binomial(assess_size, acc[t])
        tie[t] = rng.random((len(Method), tie_steps))
        # drawn last, so that everything above is what the paper's cohorts always drew
        by_class[t] = _gold_by_class(
            rng, cohort, assess_size, positive_rate, gold[t], sens[t], spec[t]
        )
        gold[t] = by_class[t, :, 0] + by_class[t, :, 2]
    return Draws(acc, gold, assess_size, out_truth, who, said, tie, sens, spec, by_class)


def _gold_by_class(
    rng: np.random.Generator,
    cohort: Cohort,
    size: int,
    positive_rate: float,
    correct: IntArray,
    sens: FloatArray,
    spec: FloatArray,
) -> IntArray:
    """Each labeler's ``size`` gold items by class: (tp, positives, tn, negatives).

    A gold item is positive with probability ``positive_rate``. In a one-coin cohort the
    ``correct`` answers are already drawn, and each item is right with the same probability
    whatever its class, so the positives among the right answers are hypergeometric: the split
    is distributed as if drawn per item, and tp + tn stays ``correct``. A class-conditional
    labeler is right on a positive with probability s_j, on a negative with t_j.
    """
    out = np.zeros((len(sens), 4), dtype=np.int64)
    if size <= 0:
        return out
    pos = rng.binomial(size, positive_rate, size=len(sens))
    neg = size - pos
    if cohort.symmetric:
        tp = rng.hypergeometric(pos, neg, correct)
        tn = correct - tp
    else:
        tp = rng.binomial(pos, sens)
        tn = rng.binomial(neg, spec)
    out[:, 0], out[:, 1], out[:, 2], out[:, 3] = tp, pos, tn, neg
    return out
