r"""The one-coin naive-Bayes model of GTX and the three voting baselines.

Everything here is pure numpy and vectorised over examples: a batch of examples is a pair of
2-D arrays ``labels[i, j]`` and ``accuracies[i, j]`` (the j-th label of example i and the
accuracy of the labeler who gave it) plus an optional boolean ``mask[i, j]`` saying which
slots hold a label. Rows may have different numbers of labels; masked-out slots are ignored.

Paper: Kumar, Sandler, Varshavskaya, "Fine-tuning Vision Classifiers On A Budget"
(``shared/spec/gtx-paper.md``), sections 2.1, 2.3 and 3.1.

Tie-break: whenever a method's posterior of label 1 is exactly 0.5 (an even split of votes, or
no labels at all) its confidence is 0.5 and its hard label is :data:`TIE_LABEL` (1). Flagging a
frame as positive on a tie is the conservative choice on a production line ("is something
wrong?"), and a fixed rule keeps every run reproducible.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

import numpy as np
from numpy.typing import ArrayLike, NDArray

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]
BoolArray = NDArray[np.bool_]

TIE_LABEL = 1
"""Hard label given when a method's posterior of label 1 is exactly 0.5."""

# Accuracies of exactly 0 or 1 would make a single label infinitely strong, and two such
# labelers who disagree would give inf - inf. Clipping to [EPS, 1 - EPS] keeps every log-odds
# finite (|logit| <= 27.6) while a "perfect" labeler still dominates any realistic cohort.
ACCURACY_EPS = 1e-12


class Method(StrEnum):
    """Label aggregation methods of section 3.1 of the paper."""

    GTX = "gtx"
    MV = "mv"
    WMV = "wmv"
    SV = "sv"

    @property
    def uses_threshold(self) -> bool:
        """GTX and SV stop on a confidence threshold; MV and WMV take a fixed number k of labels.

        MV and WMV give confidence 1.0 after a single label, so a threshold means nothing to them
        (section 3.3): the paper collects a constant k labels per example instead.
        """
        return self in (Method.GTX, Method.SV)


@dataclass(frozen=True)
class Posterior:
    """Aggregate of each example's labels: ``p1`` = P(y=1 | labels) under the method's model."""

    p1: FloatArray
    label: IntArray
    confidence: FloatArray

    @property
    def uncertainty(self) -> FloatArray:
        """Equation (5): u_i = 1 - max_y P(Y_i = y | L(i))."""
        return 1.0 - self.confidence


def _sum_labels(x: FloatArray) -> FloatArray:
    """Sum over each row's labels in arrival order.

    A strictly sequential sum (the last column of cumsum), unlike ``sum``, whose pairwise
    blocking depends on the row width: the same labels then give bit-for-bit the same
    posterior however much padding a batch has, in the aggregator and in the simulator alike.
    """
    if x.shape[1] == 0:
        return np.zeros(x.shape[0])
    out: FloatArray = np.cumsum(x, axis=1)[:, -1]
    return out


def _as_batch(
    labels: ArrayLike, accuracies: ArrayLike | None, mask: ArrayLike | None
) -> tuple[FloatArray, FloatArray, BoolArray]:
    lab = np.atleast_2d(np.asarray(labels, dtype=np.float64))
    acc = (
        np.ones_like(lab)
        if accuracies is None
        else np.broadcast_to(np.atleast_2d(np.asarray(accuracies, dtype=np.float64)), lab.shape)
    )
    m = (
        np.ones(lab.shape, dtype=bool)
        if mask is None
        else np.broadcast_to(np.atleast_2d(np.asarray(mask, dtype=bool)), lab.shape)
    )
    return lab, acc, m


def logit(p: ArrayLike) -> FloatArray:
    """log(p / (1 - p)), elementwise."""
    p = np.asarray(p, dtype=np.float64)
    return np.log(p) - np.log1p(-p)


def sigmoid(x: ArrayLike) -> FloatArray:
    """1 / (1 + exp(-x)) without overflow for large |x|.

    For x below about -745 the true value is below the smallest float64 and rounds to 0.0.
    """
    x = np.asarray(x, dtype=np.float64)
    with np.errstate(under="ignore"):
        out: FloatArray = np.exp(-np.logaddexp(0.0, -x))
    return out


def log_odds(
    labels: ArrayLike,
    accuracies: ArrayLike,
    mask: ArrayLike | None = None,
    prior: float = 0.5,
) -> FloatArray:
    r"""Posterior log-odds of label 1 under the one-coin naive-Bayes model, equation (3).

    .. math::
        \log\frac{P(Y_i=1\mid\mathcal L(i))}{P(Y_i=0\mid\mathcal L(i))}
        = \log\frac{\pi_1}{\pi_0}
          + \sum_{j\in\mathcal J(i)} (2y_i^j - 1)\log\frac{\alpha_j}{1-\alpha_j}

    Equation (3) multiplies one factor per label, and such products shrink towards zero
    exponentially fast; the ratio of the two classes' products is a sum of logs, which neither
    overflows nor underflows with many labels or with accuracies close to 0 or 1.
    A labeler with accuracy 0.5 contributes exactly nothing.
    """
    lab, acc, m = _as_batch(labels, accuracies, mask)
    if not 0.0 < prior < 1.0:
        raise ValueError(f"class prior must be in (0, 1), got {prior}")
    weight = logit(np.clip(acc, ACCURACY_EPS, 1.0 - ACCURACY_EPS))
    votes = np.where(m, (2.0 * lab - 1.0) * weight, 0.0)
    out: FloatArray = float(logit(prior)) + _sum_labels(votes)
    return out


def _from_p1(p1: FloatArray) -> Posterior:
    label = np.where(p1 > 0.5, 1, np.where(p1 < 0.5, 0, TIE_LABEL)).astype(np.int64)
    return Posterior(p1=p1, label=label, confidence=np.maximum(p1, 1.0 - p1))


def gtx_posterior(
    labels: ArrayLike,
    accuracies: ArrayLike,
    mask: ArrayLike | None = None,
    prior: float = 0.5,
) -> Posterior:
    """GTX: hard label, P(y=1) and confidence max(p, 1-p) of equation (3), via :func:`log_odds`."""
    lo = log_odds(labels, accuracies, mask, prior)
    label = np.where(lo > 0, 1, np.where(lo < 0, 0, TIE_LABEL)).astype(np.int64)
    # sigmoid(|lo|) keeps full precision of a confidence close to 1, where 1 - p would not.
    return Posterior(p1=sigmoid(lo), label=label, confidence=sigmoid(np.abs(lo)))


def majority_vote(labels: ArrayLike, mask: ArrayLike | None = None) -> Posterior:
    """MV: confidence is the share of votes for the winning label (section 3.1)."""
    lab, _, m = _as_batch(labels, None, mask)
    n = m.sum(axis=1)
    ones = _sum_labels(np.where(m, lab, 0.0))
    with np.errstate(invalid="ignore", divide="ignore"):
        p1 = np.where(n > 0, ones / n, 0.5)
    return _from_p1(p1)


def weighted_majority_vote(
    labels: ArrayLike, accuracies: ArrayLike, mask: ArrayLike | None = None
) -> Posterior:
    """WMV: each vote weighs alpha_j; confidence is the winning weight over the total weight."""
    lab, acc, m = _as_batch(labels, accuracies, mask)
    w = np.where(m, acc, 0.0)
    total = _sum_labels(w)
    ones = _sum_labels(w * lab)
    with np.errstate(invalid="ignore", divide="ignore"):
        p1 = np.where(total > 0, ones / total, 0.5)
    return _from_p1(p1)


def soft_vote(labels: ArrayLike, accuracies: ArrayLike, mask: ArrayLike | None = None) -> Posterior:
    """SV: labeler j puts alpha_j on its label and 1 - alpha_j on the other one.

    Confidence is the winning label's weight over the sum of both labels' weights; since each
    labeler spreads a weight of exactly 1, that sum is the number of labels.
    """
    lab, acc, m = _as_batch(labels, accuracies, mask)
    n = m.sum(axis=1)
    to_one = _sum_labels(np.where(m, np.where(lab == 1.0, acc, 1.0 - acc), 0.0))
    with np.errstate(invalid="ignore", divide="ignore"):
        p1 = np.where(n > 0, to_one / n, 0.5)
    return _from_p1(p1)


def aggregate(
    method: Method | str,
    labels: ArrayLike,
    accuracies: ArrayLike,
    mask: ArrayLike | None = None,
    prior: float = 0.5,
) -> Posterior:
    """Posterior of any method of section 3.1, by name (``gtx``, ``mv``, ``wmv``, ``sv``)."""
    method = Method(method)
    if method is Method.GTX:
        return gtx_posterior(labels, accuracies, mask, prior)
    if method is Method.MV:
        return majority_vote(labels, mask)
    if method is Method.WMV:
        return weighted_majority_vote(labels, accuracies, mask)
    return soft_vote(labels, accuracies, mask)


@dataclass(frozen=True)
class OneCoin:
    """One-coin labeler parameters: the probability ``accuracy`` that a label is right."""

    accuracy: float

    def weight(self) -> float:
        """What equation (3) and the baselines weigh this labeler's label with."""
        return self.accuracy


LabelerParams = OneCoin
"""The parameters a label model reads for one labeler (a two-coin model adds its own type)."""

UNKNOWN_LABELER = OneCoin(0.5)
"""Parameters of a labeler nothing is known about: its labels carry no weight in GTX."""


def posterior_of(
    method: Method | str,
    rows: Sequence[Sequence[tuple[int, LabelerParams]]],
    prior: float = 0.5,
) -> Posterior:
    """The posterior of each example from its ``(label, labeler parameters)`` in arrival order.

    The aggregator's entry point: it pads the rows into the batch arrays the models take, so
    the caller never deals with the parameter layout of a model.
    """
    width = max([1, *(len(r) for r in rows)])
    labels = np.zeros((len(rows), width))
    weights = np.full((len(rows), width), 0.5)
    mask = np.zeros((len(rows), width), dtype=bool)
    for i, row in enumerate(rows):
        for j, (label, params) in enumerate(row):
            labels[i, j] = label
            weights[i, j] = params.weight()
            mask[i, j] = True
    return aggregate(method, labels, weights, mask, prior)
