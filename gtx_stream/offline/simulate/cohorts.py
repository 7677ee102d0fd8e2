"""What one trial of an experiment is made of: a labeler cohort and everything drawn up front.

Everything random in a trial (the labelers' accuracies, the true labels, the order in which
labelers are asked, their answers, the assessment set, the tie-breaks) is drawn by :func:`draw`
from a generator seeded by ``(seed, experiment, cohort, trial)``. Trial t is the same whatever
the number of trials, and :mod:`tests.offline.simulate_reference`, a per-label Python loop of
the same experiments, can replay exactly the same labels.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from enum import IntEnum

import numpy as np
from numpy.typing import NDArray

from gtx_stream.core.accuracy import Estimator, estimate_accuracy
from gtx_stream.core.models import FloatArray, IntArray, Method

Int8Array = NDArray[np.int8]


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
    gold = np.empty((trials, labelers), dtype=np.int64)
    who = np.empty((trials, examples, slots), dtype=np.int8)
    said = np.empty((trials, examples, slots), dtype=np.int8)
    tie = np.empty((trials, len(Method), tie_steps))
    given = None if truth is None else np.broadcast_to(np.asarray(truth), (trials, examples))
    if given is not None and not np.isin(given, (0, 1)).all():
        raise ValueError("truth must hold 0 and 1 only")
    out_truth = np.empty((trials, examples), dtype=np.int8)
    for t in range(trials):
        rng = _trial_rng(seed, experiment, cohort, t)
        acc[t] = rng.uniform(cohort.low, cohort.high, size=labelers)
        y = (rng.random(examples) < positive_rate).astype(np.int8)
        if given is not None:
            y = given[t].astype(np.int8)
        out_truth[t] = y
        who[t] = _without_replacement(rng, labelers, (examples, slots))
        right = rng.random((examples, slots)) < acc[t][who[t]]
        said[t] = np.where(right, y[:, None], 1 - y[:, None])
        gold[t] = rng.binomial(assess_size, acc[t])
        tie[t] = rng.random((len(Method), tie_steps))
    return Draws(acc, gold, assess_size, out_truth, who, said, tie)
