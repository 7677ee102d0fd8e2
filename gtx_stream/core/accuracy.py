r"""Labeler accuracy from an assessment set (section 2.2 of the paper).

The paper's estimate is the plug-in MLE of equation (4), the share of gold items a labeler got
right. On a small assessment set it says 1.0 for a labeler who happened to be right every time,
and equation (3) then treats one label from that labeler as certain. The Beta estimate is the
posterior mean under a Beta(a, b) prior,

.. math::
    \hat\alpha_j = \frac{c_j + a}{n_j + a + b},

with an equal-tailed credible interval from the Beta(c_j + a, n_j - c_j + b) posterior. It is the
default wherever gtx-stream estimates accuracies. The MLE comes with the exact binomial
(Clopper-Pearson) interval, which always contains c_j / n_j.

:func:`assess` is the one place that turns an assessment set (each labeler's answers to gold
items) into estimates: ``gtx-stream labelers assess`` stores its result in Redis
(:func:`gtx_stream.store.params.assess`) and ``gtx-stream replay`` scores with it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum

import numpy as np
from numpy.typing import ArrayLike
from scipy.special import betaincinv

from gtx_stream.core.models import FloatArray

DEFAULT_PRIOR = (1.0, 1.0)
"""Beta(1, 1): uniform. With n gold items all correct the estimate is (n + 1) / (n + 2)."""


class Estimator(StrEnum):
    """How accuracies are obtained: the true value (simulation only), the MLE, or the Beta mean."""

    TRUE = "true"
    MLE = "mle"
    BETA = "beta"


@dataclass(frozen=True)
class AccuracyEstimate:
    """Point estimate and credible interval per labeler, with the counts they came from."""

    accuracy: FloatArray
    lower: FloatArray
    upper: FloatArray
    correct: FloatArray
    total: FloatArray


def mle_accuracy(correct: ArrayLike, total: ArrayLike) -> FloatArray:
    """Equation (4): the share of assessment items labeler j got right (0.5 when it saw none)."""
    c = np.asarray(correct, dtype=np.float64)
    n = np.asarray(total, dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        out: FloatArray = np.where(n > 0, c / n, 0.5)
    return out


def beta_accuracy(
    correct: ArrayLike,
    total: ArrayLike,
    prior: tuple[float, float] = DEFAULT_PRIOR,
    level: float = 0.95,
) -> AccuracyEstimate:
    """Posterior mean of alpha_j under a Beta(a, b) prior, and an equal-tailed credible interval."""
    a, b = prior
    if a <= 0 or b <= 0:
        raise ValueError(f"Beta prior parameters must be positive, got {prior}")
    if not 0.0 < level < 1.0:
        raise ValueError(f"credible level must be in (0, 1), got {level}")
    c = np.asarray(correct, dtype=np.float64)
    n = np.asarray(total, dtype=np.float64)
    if np.any(c < 0) or np.any(c > n):
        raise ValueError("need 0 <= correct <= total for every labeler")
    pa, pb = c + a, n - c + b
    tail = (1.0 - level) / 2.0
    return AccuracyEstimate(
        accuracy=pa / (pa + pb),
        lower=np.asarray(betaincinv(pa, pb, tail), dtype=np.float64),
        upper=np.asarray(betaincinv(pa, pb, 1.0 - tail), dtype=np.float64),
        correct=c,
        total=n,
    )


def clopper_pearson(
    correct: ArrayLike, total: ArrayLike, level: float = 0.95
) -> tuple[FloatArray, FloatArray]:
    """Exact binomial interval for the MLE, per labeler; (0, 1) for a labeler with no item.

    The bounds are Beta quantiles: lower = B(tail; c, n - c + 1), upper = B(1 - tail; c + 1, n - c),
    and 0 (1) where c = 0 (c = n), where those Beta distributions do not exist.
    """
    if not 0.0 < level < 1.0:
        raise ValueError(f"confidence level must be in (0, 1), got {level}")
    c = np.asarray(correct, dtype=np.float64)
    n = np.asarray(total, dtype=np.float64)
    tail = (1.0 - level) / 2.0
    # betaincinv needs positive shape parameters: feed 1 where the bound is fixed anyway
    lower = np.where(c > 0, betaincinv(np.where(c > 0, c, 1.0), n - c + 1, tail), 0.0)
    upper = np.where(c < n, betaincinv(c + 1, np.where(c < n, n - c, 1.0), 1.0 - tail), 1.0)
    return np.asarray(lower, dtype=np.float64), np.asarray(upper, dtype=np.float64)


def estimate(
    correct: ArrayLike,
    total: ArrayLike,
    estimator: Estimator | str = Estimator.BETA,
    prior: tuple[float, float] = DEFAULT_PRIOR,
    level: float = 0.95,
) -> AccuracyEstimate:
    """Point estimate and interval per labeler.

    ``beta``: the posterior mean with its equal-tailed credible interval; ``mle``: equation (4)
    with its Clopper-Pearson interval.
    """
    estimator = Estimator(estimator)
    if estimator is Estimator.BETA:
        return beta_accuracy(correct, total, prior, level)
    if estimator is Estimator.MLE:
        c = np.asarray(correct, dtype=np.float64)
        n = np.asarray(total, dtype=np.float64)
        lower, upper = clopper_pearson(c, n, level)
        return AccuracyEstimate(mle_accuracy(c, n), lower, upper, c, n)
    raise ValueError("the true accuracy is not an estimate; use beta or mle")


def estimate_accuracy(
    correct: ArrayLike,
    total: ArrayLike,
    estimator: Estimator | str = Estimator.BETA,
    prior: tuple[float, float] = DEFAULT_PRIOR,
) -> FloatArray:
    """Point estimate of each labeler's accuracy with the chosen estimator (``mle`` or ``beta``)."""
    estimator = Estimator(estimator)
    if estimator is Estimator.MLE:
        return mle_accuracy(correct, total)
    if estimator is Estimator.BETA:
        return beta_accuracy(correct, total, prior).accuracy
    raise ValueError("the true accuracy is not an estimate; only a simulation knows it")


def count_correct(
    labeler_ids: ArrayLike, labels: ArrayLike, truths: ArrayLike
) -> dict[str, tuple[int, int]]:
    """(correct, total) per labeler from parallel arrays of assessment answers and gold labels."""
    ids = np.asarray(labeler_ids).astype(str)
    right = np.asarray(labels) == np.asarray(truths)
    out: dict[str, tuple[int, int]] = {}
    uniq, inv = np.unique(ids, return_inverse=True)
    totals = np.bincount(inv, minlength=len(uniq))
    corrects = np.bincount(inv, weights=right.astype(np.float64), minlength=len(uniq))
    for u, c, n in zip(uniq, corrects, totals, strict=True):
        out[str(u)] = (int(c), int(n))
    return out


@dataclass(frozen=True)
class LabelerEstimate:
    """One labeler's estimated accuracy, its interval, and the gold items it rests on."""

    accuracy: float
    lower: float
    upper: float
    correct: int
    total: int


def assess(
    answers: Mapping[str, Mapping[str, int]],
    truth: Mapping[str, int],
    estimator: Estimator | str = Estimator.BETA,
    *,
    labelers: Iterable[str] | None = None,
    prior: tuple[float, float] = DEFAULT_PRIOR,
    level: float = 0.95,
) -> dict[str, LabelerEstimate]:
    """Each labeler's accuracy from its answers (task -> {labeler: label}) to gold tasks.

    Only answers to tasks of ``truth`` count. By default every labeler with at least one such
    answer is reported, sorted by id; with ``labelers``, exactly those, and one without a gold
    answer gets the estimator's value for zero items (0.5 for both ``beta`` and ``mle``).
    """
    ids, labels, gold = [], [], []
    for task, by_labeler in answers.items():
        if task not in truth:
            continue
        for labeler, label in by_labeler.items():
            ids.append(labeler)
            labels.append(label)
            gold.append(truth[task])
    counts = count_correct(ids, labels, gold) if ids else {}
    who = sorted(counts) if labelers is None else list(labelers)
    correct = [counts.get(w, (0, 0))[0] for w in who]
    total = [counts.get(w, (0, 0))[1] for w in who]
    est = estimate(correct, total, estimator, prior, level)
    return {
        w: LabelerEstimate(
            float(est.accuracy[j]), float(est.lower[j]), float(est.upper[j]), correct[j], total[j]
        )
        for j, w in enumerate(who)
    }
