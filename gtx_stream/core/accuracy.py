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
(:func:`gtx_stream.store.param_files.assess`) and ``gtx-stream replay`` scores with it.

Two-coin labelers (:mod:`gtx_stream.core.models.two_coin`) generalise equation (4) per true
class: sensitivity from a labeler's gold items of truth 1, specificity from those of truth 0,
each with the same estimators and intervals (:func:`estimate_two_coin`, :func:`assess_two_coin`),
and the class prior from the gold truths (:func:`class_prior`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum

import numpy as np
from numpy.typing import ArrayLike
from scipy.special import betaincinv

from gtx_stream.core.models import FloatArray, TwoCoin

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


def gold_answers(
    answers: Mapping[str, Mapping[str, int]], truth: Mapping[str, int]
) -> tuple[list[str], list[int], list[int]]:
    """Every answer to a task of ``truth``, flat: (labeler ids, labels, their tasks' truths)."""
    ids, labels, gold = [], [], []
    for task, by_labeler in answers.items():
        if task not in truth:
            continue
        for labeler, label in by_labeler.items():
            ids.append(labeler)
            labels.append(label)
            gold.append(truth[task])
    return ids, labels, gold


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
    ids, labels, gold = gold_answers(answers, truth)
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


# --- two-coin labelers: equation (4) per true class ---------------------------------------


@dataclass(frozen=True)
class TwoCoinEstimate:
    """Sensitivity from each labeler's gold items of truth 1, specificity from those of truth 0.

    Each is an :class:`AccuracyEstimate` of its own class's items: ``sensitivity.correct`` counts
    the 1s given to truth-1 items, ``sensitivity.total`` the truth-1 items answered.
    """

    sensitivity: AccuracyEstimate
    specificity: AccuracyEstimate


def estimate_two_coin(
    counts: ArrayLike,
    estimator: Estimator | str = Estimator.BETA,
    prior: tuple[float, float] = DEFAULT_PRIOR,
    level: float = 0.95,
) -> TwoCoinEstimate:
    r"""Equation (4) once per true class, with intervals, from ``counts[j] = (tp, pos, tn, neg)``.

    .. math::
        \hat s_j = \frac{tp_j + a}{pos_j + a + b}, \qquad \hat t_j = \frac{tn_j + a}{neg_j + a + b}

    for ``beta`` (the same Beta(a, b) prior on both), or tp/pos and tn/neg for ``mle``, each
    with the interval :func:`estimate` gives it. A labeler with no gold item of a class gets the
    estimator's value for zero items (0.5) for that class's parameter.
    """
    c = np.asarray(counts, dtype=np.float64).reshape(-1, 4)
    return TwoCoinEstimate(
        sensitivity=estimate(c[:, 0], c[:, 1], estimator, prior, level),
        specificity=estimate(c[:, 2], c[:, 3], estimator, prior, level),
    )


def count_two_coin(
    labeler_ids: ArrayLike, labels: ArrayLike, truths: ArrayLike
) -> dict[str, tuple[int, int, int, int]]:
    """(true positives, positives, true negatives, negatives) per labeler from gold answers."""
    ids = np.asarray(labeler_ids).astype(str)
    lab = np.asarray(labels)
    truth = np.asarray(truths)
    uniq, inv = np.unique(ids, return_inverse=True)
    k = len(uniq)
    pos = np.bincount(inv, weights=(truth == 1).astype(np.float64), minlength=k)
    tp = np.bincount(inv, weights=((truth == 1) & (lab == 1)).astype(np.float64), minlength=k)
    neg = np.bincount(inv, weights=(truth == 0).astype(np.float64), minlength=k)
    tn = np.bincount(inv, weights=((truth == 0) & (lab == 0)).astype(np.float64), minlength=k)
    return {str(u): (int(tp[j]), int(pos[j]), int(tn[j]), int(neg[j])) for j, u in enumerate(uniq)}


def class_prior(truths: ArrayLike, prior: tuple[float, float] = DEFAULT_PRIOR) -> float:
    """pi = P(y=1) from gold truths, the Beta(a, b) posterior mean: (n_1 + a) / (n + a + b).

    Never 0 or 1, which the posterior refuses: a gold set with no positives gives a / (n + a + b).
    """
    a, b = prior
    if a <= 0 or b <= 0:
        raise ValueError(f"Beta prior parameters must be positive, got {prior}")
    t = np.asarray(truths, dtype=np.float64).ravel()
    return float((t.sum() + a) / (t.size + a + b))


@dataclass(frozen=True)
class TwoCoinLabelerEstimate:
    """One labeler's two-coin estimate: a :class:`LabelerEstimate` per class."""

    sensitivity: LabelerEstimate
    specificity: LabelerEstimate

    def params(self) -> TwoCoin:
        """The point estimates as the two-coin model's labeler parameters."""
        return TwoCoin(self.sensitivity.accuracy, self.specificity.accuracy)


def assess_two_coin(
    answers: Mapping[str, Mapping[str, int]],
    truth: Mapping[str, int],
    estimator: Estimator | str = Estimator.BETA,
    *,
    labelers: Iterable[str] | None = None,
    prior: tuple[float, float] = DEFAULT_PRIOR,
    level: float = 0.95,
) -> dict[str, TwoCoinLabelerEstimate]:
    """:func:`assess` for two-coin labelers: each one's sensitivity and specificity from gold.

    Which labelers are reported follows :func:`assess`. The class prior of the same gold set is
    ``class_prior(list(truth.values()))``.
    """
    ids, labels, gold = gold_answers(answers, truth)
    counts = count_two_coin(ids, labels, gold) if ids else {}
    who = sorted(counts) if labelers is None else list(labelers)
    rows = [counts.get(w, (0, 0, 0, 0)) for w in who]
    est = estimate_two_coin(np.asarray(rows).reshape(-1, 4), estimator, prior, level)

    def one(e: AccuracyEstimate, j: int) -> LabelerEstimate:
        return LabelerEstimate(
            float(e.accuracy[j]),
            float(e.lower[j]),
            float(e.upper[j]),
            int(e.correct[j]),
            int(e.total[j]),
        )

    return {
        w: TwoCoinLabelerEstimate(one(est.sensitivity, j), one(est.specificity, j))
        for j, w in enumerate(who)
    }
